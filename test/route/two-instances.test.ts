import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDevBackend, type DevBackend } from '../../cli/dev-backend.ts';
import type { HttpRouteConfig } from '../../lib/config/config.ts';
import type { JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import { silentLogger } from '../../lib/log.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { descendantsOf } from '../support/process-table.ts';
import { alive, until } from '../support/route-harness.ts';
import { startInstancePair, type Balancer, type InstancePair, type RouteInstance } from '../support/route-instances.ts';
import type { Count } from '../fixtures/counter-server.ts';

// One session, one owner, on any number of instances: two route instances (the Cloud Run
// entrypoint, as processes) on the Firestore emulator behind a round-robin balancer. Whichever
// instance a request lands on, ONE server runs the session (the other relays to it); DELETE
// anywhere ends it everywhere; the GET stream may be held by the instance that doesn't run it;
// and when the owner dies the survivor takes over, while the dead owner's return resurrects nothing.

const FIXTURE = 'test/fixtures/counter-server.ts';
const LEASE = '3s';

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

/** A session spoken over raw HTTP, each request to the URL given (the balancer, or one instance). */
async function openSession(balancer: Balancer, url: string) {
  const base = { authorization: `Bearer ${await balancer.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
  const path = new URL(balancer.url).pathname;
  const at = (target: string) => `${target}${path}`;
  const init = await fetch(at(url), { method: 'POST', headers: base, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'two-instances', version: '1' } } }) });
  if (init.status !== 200) throw new Error(`initialize answered ${init.status}: ${await init.text()}`);
  await init.text();
  const id = init.headers.get('mcp-session-id')!;
  const headers = { ...base, 'mcp-session-id': id };
  let next = 1;
  const session = {
    id,
    headers,
    async notify(target: string, method: string) {
      const res = await fetch(at(target), { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method }) });
      await res.text();
      return res.status;
    },
    /** Calls `count`; the answer (JSON or an event stream) read whole. */
    async count(target: string, notify = false): Promise<Count> {
      const res = await fetch(at(target), { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: next++, method: 'tools/call', params: { name: 'count', arguments: { notify } } }) });
      if (res.status !== 200) throw new Error(`count answered ${res.status}: ${await res.text()}`);
      const messages: JsonRpcMessage[] = [];
      if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
        for await (const event of readEvents(res.body!)) if (event.data) messages.push(JSON.parse(event.data) as JsonRpcMessage);
      } else messages.push((await res.json()) as JsonRpcMessage);
      const answer = messages.find((m) => 'result' in m || 'error' in m)!;
      if (answer.error) throw new Error(answer.error.message);
      return JSON.parse((answer.result as { content: Array<{ text: string }> }).content[0]!.text) as Count;
    },
    /** Opens the GET stream at `target`; collects what arrives on it. */
    listen(target: string) {
      const received: JsonRpcMessage[] = [];
      const abort = new AbortController();
      const opened = fetch(at(target), { headers: { ...headers, accept: 'text/event-stream' }, signal: abort.signal }).then(async (res) => {
        expect(res.status).toBe(200);
        for await (const event of readEvents(res.body!)) if (event.data) received.push(JSON.parse(event.data) as JsonRpcMessage);
      });
      opened.catch(() => undefined);
      return { received, close: () => abort.abort() };
    },
    async status(target: string) {
      const res = await fetch(at(target), { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: next++, method: 'tools/list' }) });
      await res.text();
      return res.status;
    },
    async delete(target: string) {
      const res = await fetch(at(target), { method: 'DELETE', headers });
      await res.text();
      return res.status;
    },
  };
  const initialized = await session.notify(url, 'notifications/initialized');
  if (initialized !== 202) throw new Error(`notifications/initialized answered ${initialized}`);
  return session;
}

async function eventually(condition: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return condition();
}

/** The counter servers (stdio children) an instance runs now, but those `ignore` lists (an earlier test's). */
const counters = (instance: RouteInstance, ignore: ReadonlySet<number> = new Set()) =>
  descendantsOf(instance.pid())
    .map((p) => p.pid)
    .filter((pid) => !ignore.has(pid));

describe.skipIf('skip' in emulator).each([
  { kind: 'stdio', http: false },
  { kind: 'http', http: true },
])('two instances of a $kind route on Firestore', ({ http }) => {
  let backend: DevBackend | undefined;
  let pair: InstancePair | undefined;
  let balancer: Balancer;
  let a: RouteInstance;
  let b: RouteInstance;
  const path = http ? '/count-http' : '/count';

  beforeAll(async () => {
    if ('skip' in emulator) return;
    if (http) backend = await startDevBackend({ path, devBackend: { command: ['node', FIXTURE, '--http'], path: '/mcp' } } as unknown as HttpRouteConfig, silentLogger);
    const route = http ? `    type: http\n    backend: ${backend!.url}` : `    type: stdio\n    command: [${process.execPath}, ${FIXTURE}]`;
    pair = await startInstancePair({ emulatorHost: emulator.host, path, route: `${route}\n    timeout: 20s`, lease: LEASE });
    ({ balancer, a, b } = pair);
  }, 120_000);
  afterEach((context) => {
    // What the instances said, when a test failed: the logs tell which one did what.
    if (context.task.result?.state === 'fail') console.log(`instance a:\n${a?.output().slice(-6000)}\ninstance b:\n${b?.output().slice(-6000)}`);
  });
  afterAll(async () => {
    await pair?.stop();
    await backend?.stop();
  });

  /** Children of earlier tests, still ending: each test counts only its own. */
  const earlier = () => new Set([...counters(a), ...counters(b)]);

  it('strictly alternating calls are answered by one server, counting 1..N', async () => {
    const old = earlier();
    const session = await openSession(balancer, balancer.issuer);
    const counts: Count[] = [];
    for (let i = 0; i < 6; i++) counts.push(await session.count(balancer.issuer));
    expect(counts.map((c) => c.n)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(new Set(counts.map((c) => `${c.pid}/${c.server}`)).size).toBe(1);
    // The requests did alternate between the two instances.
    expect(new Set(balancer.sent.slice(-6))).toEqual(new Set([0, 1]));
    if (!http) expect([...counters(a, old), ...counters(b, old)]).toEqual([counts[0]!.pid]);
    expect(await session.delete(balancer.issuer)).toBe(204);
  }, 60_000);

  it('a notification raised during a call reaches the GET stream held on the other instance', async () => {
    const session = await openSession(balancer, a.url); // a runs it
    const stream = session.listen(b.url);
    await new Promise((resolve) => setTimeout(resolve, 500)); // the GET reaches a through the relay
    const { n, pid } = await session.count(a.url, true);
    expect(n).toBe(1);
    expect(await until(() => stream.received.some((m) => m.method === 'notifications/tools/list_changed'), 10_000)).toBe(true);
    // And the other way round: a call relayed from b, its notification on a GET held by a.
    stream.close();
    const there = session.listen(a.url);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await session.count(b.url, true)).n).toBe(2);
    expect(await until(() => there.received.some((m) => m.method === 'notifications/tools/list_changed'), 10_000)).toBe(true);
    there.close();
    expect(await session.delete(a.url)).toBe(204);
    if (!http) expect(await until(() => !alive(pid), 1000)).toBe(true);
  }, 60_000);

  it.each(['owner', 'other'] as const)('DELETE through the %s instance ends the one server within 1 s, and the id is 404 on both', async (through) => {
    const old = earlier();
    const session = await openSession(balancer, a.url);
    const { pid } = await session.count(b.url);
    if (!http) expect([...counters(a, old), ...counters(b, old)]).toEqual([pid]);
    const started = Date.now();
    expect(await session.delete(through === 'owner' ? a.url : b.url)).toBe(204);
    if (!http) {
      expect(await until(() => !alive(pid), 1000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(1500);
    }
    // The instance that didn't take the DELETE hears of it from its listener: within moments.
    for (const instance of [a, b]) expect(await eventually(async () => (await session.status(instance.url)) === 404, 1000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
  }, 60_000);

  it('the owner killed mid-session: the next call succeeds through the survivor, and the restarted owner resurrects nothing', async () => {
    const old = earlier();
    const session = await openSession(balancer, a.url);
    const before = await session.count(a.url);
    expect(before.n).toBe(1);
    await a.kill();
    // Through the balancer, which now reaches b only: b takes over once a's lease lapsed.
    const after = await session.count(balancer.issuer);
    expect(after.n).toBe(1); // a new server: the old one's state died with its owner
    await a.restart();
    const counts: Count[] = [];
    for (let i = 0; i < 4; i++) counts.push(await session.count(balancer.issuer));
    expect(counts.map((c) => c.n)).toEqual([2, 3, 4, 5]);
    expect(new Set(counts.map((c) => `${c.pid}/${c.server}`))).toEqual(new Set([`${after.pid}/${after.server}`]));
    if (!http) {
      expect(counters(a, old)).toEqual([]);
      expect(counters(b, old)).toEqual([after.pid]);
    }
    expect(await session.delete(balancer.issuer)).toBe(204);
  }, 90_000);

  it.runIf(!http)('an owner that was away past its lease finds its epoch stale when it returns, and ends its copy at once', async () => {
    const session = await openSession(balancer, a.url);
    const first = await session.count(a.url);
    // Frozen (a long GC pause, a partition): its lease lapses, b takes the session over.
    process.kill(a.pid(), 'SIGSTOP');
    try {
      const taken = await session.count(b.url);
      expect(taken.n).toBe(1);
      expect(taken.pid).not.toBe(first.pid);
    } finally {
      process.kill(a.pid(), 'SIGCONT');
    }
    expect(await until(() => !alive(first.pid), 5000)).toBe(true);
    expect((await session.count(a.url)).n).toBe(2); // relayed to b
    expect(await session.delete(a.url)).toBe(204);
  }, 60_000);
});
