import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRequest, isResponse, type JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { Client, CreateMessageRequestSchema, LoggingMessageNotificationSchema, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import { startFixtureRoute, until, type RouteHarness } from '../support/route-harness.ts';

// Calls running side by side on one session, through both route kinds, with the SDK's own
// client: each call logs, reports progress and asks the client for a completion, and each gets
// its own progress and its own result, and never another call's messages on its stream. A
// stdio server says nothing of which call a log line or a sampling request belongs to: with
// several in flight those go to the GET stream, and the client's answers, POSTed on their own,
// still reach the server. A client that drops a POST does not end its session, and one that
// cancels a call has the server told.

const FIXTURE = 'test/fixtures/streams-server.ts';
const CALLS = 8;

interface Seen {
  /** `GET`, or the tag of the call whose POST the stream answers. */
  readonly stream: string;
  readonly message: JsonRpcMessage;
}

/** A fetch for the SDK client that notes every message on every stream it reads, by stream. */
function recordingFetch(seen: Seen[]): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    const sent = init?.method === 'POST' && typeof init.body === 'string' ? (JSON.parse(init.body) as JsonRpcMessage) : undefined;
    if (sent && !isRequest(sent)) return res;
    const stream = sent ? String((sent.params as { arguments?: { tag?: unknown } } | undefined)?.arguments?.tag ?? sent.method) : 'GET';
    const type = res.headers.get('content-type') ?? '';
    if (!res.body || !res.ok) return res;
    if (type.includes('application/json')) {
      seen.push({ stream, message: (await res.clone().json()) as JsonRpcMessage });
      return res;
    }
    const [mine, theirs] = res.body.tee();
    void (async () => {
      for await (const event of readEvents(mine)) if (event.data) seen.push({ stream, message: JSON.parse(event.data) as JsonRpcMessage });
    })().catch(() => undefined);
    return new Response(theirs, { status: res.status, headers: res.headers });
  };
}

/** The call (its tag) a message on a call's stream names, for every kind of message the fixture sends. */
function tagOf(message: JsonRpcMessage, tagsByToken: Map<unknown, string>, tagsById: Map<unknown, string>): string | undefined {
  const params = message.params as { progressToken?: unknown; data?: unknown; messages?: { content: { text: string } }[] } | undefined;
  if (isResponse(message)) return tagsById.get(message.id);
  if (message.method === 'notifications/progress') return tagsByToken.get(params?.progressToken);
  if (message.method === 'notifications/message') return String(params?.data).split(' ')[0];
  if (message.method === 'sampling/createMessage') return params?.messages?.[0]?.content.text;
  return undefined;
}

describe.each([
  { kind: 'stdio', http: false },
  { kind: 'http', http: true },
])('calls side by side through a $kind route', ({ http }) => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startFixtureRoute(FIXTURE, http ? 'http' : 'stdio', '/streams');
  });
  afterAll(async () => route?.close());

  const connect = async (seen: Seen[] = []) => {
    const client = new Client({ name: 'concurrency-test', version: '1' }, { capabilities: { sampling: {} } });
    const transport = new StreamableHTTPClientTransport(new URL(route.url), { requestInit: { headers: { authorization: `Bearer ${await route.token()}` } }, fetch: recordingFetch(seen) });
    await client.connect(transport);
    return { client, transport };
  };

  it(`gives each of ${CALLS} calls on one session its own progress and result, its sampling answered, and no other call's messages`, async () => {
    const seen: Seen[] = [];
    const { client } = await connect(seen);
    const sampled: string[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async ({ params }) => {
      const tag = (params.messages[0]!.content as { text: string }).text;
      sampled.push(tag);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
      return { role: 'assistant', content: { type: 'text', text: `completion for ${tag}` }, model: 'test-model' };
    });
    const logs: string[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, ({ params }) => void logs.push(String(params.data)));

    const tags = Array.from({ length: CALLS }, (_, i) => `call-${i}`);
    const progress = new Map(tags.map((tag) => [tag, [] as number[]]));
    const results = await Promise.all(
      tags.map((tag) => client.callTool({ name: 'work', arguments: { tag, together: CALLS } }, undefined, { onprogress: (p) => progress.get(tag)!.push(p.progress), timeout: 15_000 })),
    );

    expect(results.map((r) => r.content)).toEqual(tags.map((tag) => [{ type: 'text', text: `${tag}: completion for ${tag}` }]));
    for (const tag of tags) expect(progress.get(tag), tag).toEqual([1, 2, 3]);
    expect(sampled.sort()).toEqual([...tags].sort());
    expect(await until(() => logs.length === 2 * CALLS)).toBe(true);
    expect(logs.sort()).toEqual(tags.flatMap((tag) => [`${tag} sampled`, `${tag} started`]).sort());

    // Whose each message on a call's stream is: always that call's. The SDK's progress token is the request id.
    const tagsById = new Map(seen.filter((s) => s.stream.startsWith('call-') && isResponse(s.message)).map((s) => [s.message.id, s.stream]));
    expect(tagsById.size).toBe(CALLS);
    for (const { stream, message } of seen.filter((s) => s.stream.startsWith('call-'))) expect(tagOf(message, tagsById, tagsById), `${message.method ?? 'response'} on ${stream}'s stream`).toBe(stream);
    // Progress names its call, whatever the transport: always on the call's own stream.
    expect(seen.filter((s) => s.stream === 'GET' && s.message.method === 'notifications/progress')).toEqual([]);
    const onGet = (method: string) => seen.filter((s) => s.stream === 'GET' && s.message.method === method);
    // Over HTTP the backend says which call each message belongs to: nothing of theirs on the
    // GET stream. A stdio server doesn't: with all of them in flight, sampling goes there.
    if (http) expect([...onGet('notifications/message'), ...onGet('sampling/createMessage')]).toEqual([]);
    else expect(onGet('sampling/createMessage')).toHaveLength(CALLS);
    await client.close();
  });

  /** The cancellations the fixture saw in this client's session, once there are `count`. */
  const cancellations = async (client: InstanceType<typeof Client>, count: number) => {
    for (const deadline = Date.now() + 5000; ; await new Promise((resolve) => setTimeout(resolve, 50))) {
      const seen = JSON.parse(((await client.callTool({ name: 'cancellations', arguments: {} })).content as { text: string }[])[0]!.text) as { requestId: unknown; reason: unknown }[];
      if (seen.length >= count || Date.now() > deadline) return seen;
    }
  };

  const rawCall = async (sessionId: string, protocolVersion: string, id: string, name: string, args: object, signal: AbortSignal) =>
    fetch(route.url, {
      method: 'POST',
      signal,
      headers: { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': protocolVersion },
      body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } }),
    });

  it('keeps the session when a client drops a POST in the middle of a call', async () => {
    const { client, transport } = await connect();
    const sessions = route.service.sessionCount();
    // An answer that became a stream: the client could resume it, so the call runs on.
    const streamed = new AbortController();
    const res = await rawCall(transport.sessionId!, '2025-11-25', 'streamed', 'ticks', { count: 5, intervalMs: 40 }, streamed.signal);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    await res.body!.getReader().read();
    streamed.abort();
    // One still to come as JSON: nothing could ever reach the client, so the server is told to stop.
    const waiting = new AbortController();
    const pending = rawCall(transport.sessionId!, '2025-06-18', 'unanswered', 'wait_for_cancel', {}, waiting.signal).catch((err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 300));
    waiting.abort();
    expect(await pending).toBeInstanceOf(Error);

    expect(await cancellations(client, 1)).toEqual([{ requestId: 'unanswered', reason: 'the client disconnected' }]);
    expect(route.service.sessionCount()).toBe(sessions);
    expect(await client.callTool({ name: 'ticks', arguments: { count: 1, intervalMs: 1 } })).toEqual({ content: [{ type: 'text', text: 'ticked 1' }] });
    await client.close();
  });

  it('passes a cancellation from the client on to the server', async () => {
    const { client } = await connect();
    const stop = new AbortController();
    const waiting = client.callTool({ name: 'wait_for_cancel', arguments: {} }, undefined, { signal: stop.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    stop.abort('the user pressed stop');
    await expect(waiting).rejects.toThrow();
    // The server sees the client's own request id: the gateway passes ids through.
    expect(await cancellations(client, 1)).toEqual([{ requestId: expect.any(Number), reason: 'the user pressed stop' }]);
    await client.close();
  });
});
