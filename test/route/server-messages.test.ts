import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { ResourceUpdatedNotificationSchema } from '../../lib/mcp/sdk.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import { startFixtureRoute, until, type RouteHarness } from '../support/route-harness.ts';

// Messages the server sends on its own (logs, progress, resource updates) reach the client on
// the right stream: a call's on that call's stream (or, when the gateway cannot tell which call
// it belongs to, the GET stream), never on another call's; a session's on the GET stream. And
// streams the server ends early are resumed (SEP-1699). The conformance fixture is the server,
// as a child per session behind a stdio route and over Streamable HTTP behind an http route.

const FIXTURE = 'test/fixtures/conformance-server.ts';

interface Received {
  readonly stream: string;
  readonly message: JsonRpcMessage;
}

/** A session driven over raw HTTP, which SDK clients hide: what arrived on which stream. `opened` bounds the wait for the GET stream's answer. */
async function rawSession(route: RouteHarness, opened?: AbortSignal) {
  const base = { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
  const post = (headers: Record<string, string>, message: object) => fetch(route.url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', ...message }) });
  const init = await post(base, { id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'streams-test', version: '1' } } });
  const headers = { ...base, 'mcp-session-id': init.headers.get('mcp-session-id')! };
  await init.text();
  await (await post(headers, { method: 'notifications/initialized' })).text();

  const received: Received[] = [];
  const collect = async (stream: string, res: Response) => {
    if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) return void received.push({ stream, message: (await res.json()) as JsonRpcMessage });
    for await (const event of readEvents(res.body!)) if (event.data) received.push({ stream, message: JSON.parse(event.data) as JsonRpcMessage });
  };
  const get = await fetch(route.url, { headers: { ...headers, accept: 'text/event-stream' }, signal: opened });
  const getStream = collect('GET', get);
  return {
    received,
    /** POSTs one request; resolves once its stream (labelled `stream`) has ended. */
    call: async (stream: string, id: number, method: string, params: object) => collect(stream, await post(headers, { id, method, params })),
    on: (stream: string, method: string) => received.filter((r) => r.stream === stream && r.message.method === method).map((r) => r.message),
    async end() {
      await fetch(route.url, { method: 'DELETE', headers });
      await getStream;
    },
  };
}

const progress = (token: string) => ({ name: 'test_tool_with_progress', arguments: {}, _meta: { progressToken: token } });

describe.each([
  { kind: 'stdio', http: false },
  { kind: 'http', http: true },
])('server messages through a $kind route', ({ http }) => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startFixtureRoute(FIXTURE, http ? 'http' : 'stdio', '/conf');
  });
  afterAll(async () => route?.close());

  it('answers a GET at once, before the server has anything to send on it', async () => {
    const session = await rawSession(route, AbortSignal.timeout(5000));
    await session.end();
  });

  it("puts a call's log lines on its own stream or the GET stream, never on a concurrent call's; progress on its own", async () => {
    const session = await rawSession(route);
    // A logs three lines 50 ms apart; B starts after the first, so the others come while both run.
    const a = session.call('A', 1, 'tools/call', { name: 'test_tool_with_logging', arguments: {} });
    expect(await until(() => session.on('A', 'notifications/message').length > 0)).toBe(true);
    await Promise.all([session.call('B', 2, 'tools/call', progress('b')), a]);
    await session.end();

    expect(session.on('B', 'notifications/message')).toEqual([]);
    expect(session.on('B', 'notifications/progress').map((m) => (m.params as { progress: number }).progress)).toEqual([0, 50, 100]);
    const logs = [...session.on('A', 'notifications/message'), ...session.on('GET', 'notifications/message')].map((m) => (m.params as { data: string }).data);
    expect(logs.sort()).toEqual(['Tool execution completed', 'Tool execution started', 'Tool processing data']);
    // Over HTTP the backend says which call each line belongs to: all of them stay on A's stream.
    if (http) expect(session.on('A', 'notifications/message')).toHaveLength(3);
  });

  it('puts a resource update on the GET stream, not on a call in flight', async () => {
    const session = await rawSession(route);
    const b = session.call('B', 1, 'tools/call', progress('b'));
    expect(await until(() => session.on('B', 'notifications/progress').length > 0)).toBe(true);
    await session.call('subscribe', 2, 'resources/subscribe', { uri: 'test://watched-resource' });
    expect(await until(() => session.on('GET', 'notifications/resources/updated').length > 0)).toBe(true);
    await b;
    await session.end();
    expect(session.received.filter((r) => r.stream !== 'GET' && r.message.method === 'notifications/resources/updated')).toEqual([]);
  });

  it.runIf(http)('resumes a call whose stream the backend ended before answering (SEP-1699), after its retry delay', async () => {
    const { client } = await route.connect();
    expect(await client.callTool({ name: 'test_reconnection', arguments: {} })).toEqual({
      content: [{ type: 'text', text: 'Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.' }],
    });
    await client.close();
  });

  it.runIf(http)("opens the backend's GET stream again when the backend ends it: later resource updates still arrive", async () => {
    const { client } = await route.connect();
    let updates = 0;
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, () => void updates++);
    // The fixture ends its GET stream after announcing each change.
    await client.subscribeResource({ uri: 'test://watched-resource' });
    expect(await until(() => updates === 1)).toBe(true);
    await client.subscribeResource({ uri: 'test://watched-resource' });
    expect(await until(() => updates === 2)).toBe(true);
    expect((await client.readResource({ uri: 'test://watched-resource' })).contents).toEqual([{ uri: 'test://watched-resource', mimeType: 'text/plain', text: 'Watched resource content, version 3' }]);
    await client.close();
  });
});
