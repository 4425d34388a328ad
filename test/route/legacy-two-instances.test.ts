import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client, SSEClientTransport } from '../../lib/mcp/sdk.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { descendantsOf } from '../support/process-table.ts';
import { alive, until } from '../support/route-harness.ts';
import { startInstancePair, type Balancer, type InstancePair, type RouteInstance } from '../support/route-instances.ts';
import type { Count } from '../fixtures/counter-server.ts';

// The legacy HTTP+SSE transport (2024-11-05) on two instances of a route behind a round-robin
// balancer, as Cloud Run runs them: the instance holding a session's SSE stream owns it; a
// POST to /message landing on the other instance is relayed there. The session lives exactly
// as long as its stream: once that closes, its id is 404 everywhere.

const FIXTURE = 'test/fixtures/counter-server.ts';
const PATH = '/count';

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

describe.skipIf('skip' in emulator)('a legacy SSE session on two instances of a stdio route on Firestore', () => {
  let pair: InstancePair | undefined;
  let balancer: Balancer;
  let a: RouteInstance;
  let b: RouteInstance;

  beforeAll(async () => {
    if ('skip' in emulator) return;
    pair = await startInstancePair({ emulatorHost: emulator.host, path: PATH, route: `    type: stdio\n    command: [${process.execPath}, ${FIXTURE}]\n    timeout: 20s`, lease: '3s' });
    ({ balancer, a, b } = pair);
  }, 120_000);
  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(`instance a:\n${a?.output().slice(-6000)}\ninstance b:\n${b?.output().slice(-6000)}`);
  });
  afterAll(async () => {
    await pair?.stop();
  });

  /** The SDK's SSE client through the balancer, with a bearer token; the session id, from the endpoint its POSTs go to. */
  const connect = async () => {
    const authorization = `Bearer ${await balancer.token()}`;
    const posted: URL[] = [];
    const authorized = (url: string | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      headers.set('authorization', authorization);
      if (init?.method === 'POST') posted.push(new URL(url));
      return fetch(url, { ...init, headers });
    };
    const transport = new SSEClientTransport(new URL(`${balancer.issuer}${PATH}/sse`), { fetch: authorized, eventSourceInit: { fetch: authorized } });
    const client = new Client({ name: 'legacy-two-instances', version: '1' });
    await client.connect(transport);
    const count = async () => JSON.parse(((await client.callTool({ name: 'count', arguments: {} })) as { content: Array<{ text: string }> }).content[0]!.text) as Count;
    return { client, count, session: () => posted[0]!.searchParams.get('session')! };
  };

  /** A count call POSTed straight to one instance's /message for `session`, as `sub`: the status. */
  const post = async (target: string, session: string, sub?: string) => {
    const res = await fetch(`${target}${PATH}/message?session=${session}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await balancer.token(sub)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name: 'count', arguments: {} } }),
    });
    await res.text();
    return res.status;
  };

  const counters = (instance: RouteInstance) => descendantsOf(instance.pid()).map((p) => p.pid);

  it('calls POSTed through the alternating balancer are all answered by the one server holding the stream; once the client closes, the server ends and the id is 404 on both instances', async () => {
    const old = new Set([...counters(a), ...counters(b)]);
    const legacy = await connect();
    const counts: Count[] = [];
    for (let i = 0; i < 6; i++) counts.push(await legacy.count());
    expect(counts.map((c) => c.n)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(new Set(counts.map((c) => `${c.pid}/${c.server}`)).size).toBe(1);
    // The POSTs did alternate between the two instances.
    expect(new Set(balancer.sent.slice(-6))).toEqual(new Set([0, 1]));
    const pid = counts[0]!.pid;
    expect([...counters(a), ...counters(b)].filter((p) => !old.has(p))).toEqual([pid]);

    const session = legacy.session();
    await legacy.client.close();
    expect(await until(() => !alive(pid), 5000)).toBe(true);
    // The owner forgot it as the stream closed; the other instance finds no record, or an owner that no longer holds it.
    for (const instance of [a, b]) expect(await post(instance.url, session)).toBe(404);
  }, 60_000);

  it("another user's token gets 404 for the session on either instance, and nothing reaches its server", async () => {
    const legacy = await connect();
    expect((await legacy.count()).n).toBe(1);
    for (const instance of [a, b]) expect(await post(instance.url, legacy.session(), 'dev:mallory@example.com')).toBe(404);
    expect((await legacy.count()).n).toBe(2);
    await legacy.client.close();
  }, 60_000);
});
