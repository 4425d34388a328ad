import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_LOG_MAX_BYTES, EVENT_LOG_MAX_EVENTS, EventLog, GET_STREAM } from '../../lib/mcp/event-log.ts';
import { Client, LoggingMessageNotificationSchema, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { readEvents, type SseEvent } from '../../lib/mcp/sse.ts';
import { startFixtureRoute, until, type RouteHarness } from '../support/route-harness.ts';

// Streams toward the client can be resumed (Streamable HTTP, "Resumability and Redelivery"):
// every event of a session's GET stream and of a POST's answer stream has an id, and a GET
// with Last-Event-ID gets exactly what that stream missed, nothing of another stream's, no
// event twice, then the rest as it comes. A POST whose connection broke off before its answer
// gets the answer that way. Through both route kinds, with the streams fixture as the server.

const FIXTURE = 'test/fixtures/streams-server.ts';
const VERSION = '2025-11-25';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An event stream read until `enough` says so (the connection then dropped), or to its end. */
async function read(res: Response, enough: (events: SseEvent[]) => boolean = () => false, drop?: AbortController): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  try {
    for await (const event of readEvents(res.body!)) {
      events.push(event);
      if (enough(events)) break;
    }
  } catch (err) {
    if (!drop?.signal.aborted) throw err;
  }
  drop?.abort();
  return events;
}

const data = (events: SseEvent[]) => events.filter((e) => e.data).map((e) => JSON.parse(e.data) as { id?: unknown; method?: string; params?: { data?: string }; result?: { content: { text: string }[] } });
const logs = (events: SseEvent[]) => data(events).flatMap((m) => (m.method === 'notifications/message' ? [m.params!.data!] : []));
const lastId = (events: SseEvent[]) => events.findLast((e) => e.id !== undefined)!.id!;
const has = (text: string) => (events: SseEvent[]) => logs(events).includes(text);
const numbered = (prefix: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${prefix} ${from + i}`);

describe.each([
  { kind: 'stdio', http: false },
  { kind: 'http', http: true },
])('resumable streams through a $kind route', ({ http }) => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startFixtureRoute(FIXTURE, http ? 'http' : 'stdio', '/streams');
  });
  afterAll(async () => route?.close());

  /** A session over raw HTTP: the ids and the connections are what these tests are about. */
  async function rawSession() {
    const base = { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION };
    const init = await fetch(route.url, { method: 'POST', headers: base, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 'resume-test', version: '1' } } }) });
    const headers = { ...base, 'mcp-session-id': init.headers.get('mcp-session-id')! };
    await init.text();
    await (await fetch(route.url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
    return {
      call: (id: string, name: string, args: object, signal?: AbortSignal) => fetch(route.url, { method: 'POST', headers, signal, body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } }) }),
      get: (lastEventId?: string, signal?: AbortSignal) => fetch(route.url, { headers: { ...headers, accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) }, signal }),
      end: () => fetch(route.url, { method: 'DELETE', headers }),
    };
  }

  it('resumes the GET stream after Last-Event-ID with exactly what it missed, then carries on live', async () => {
    const session = await rawSession();
    const drop = new AbortController();
    const first = await session.get(undefined, drop.signal);
    await (await session.call('a', 'announce', { prefix: 'a', count: 10, intervalMs: 30 })).text();
    const before = await read(first, has('a 3'), drop);
    // A priming event first: the client has a place to resume from before any message.
    expect(before[0]).toMatchObject({ data: '' });
    expect(before[0]!.id).toBeDefined();
    await sleep(500);

    const resumed = await session.get(lastId(before));
    expect(resumed.status).toBe(200);
    const rest: SseEvent[] = [];
    const reading = read(resumed, (events) => (rest.splice(0, rest.length, ...events), has('b 2')(events)), new AbortController());
    // Live after the replay: what the server sends now arrives on the resumed stream.
    expect(await until(() => has('a 10')(rest))).toBe(true);
    await (await session.call('b', 'announce', { prefix: 'b', count: 2, intervalMs: 10 })).text();
    const after = await reading;

    expect([...logs(before), ...logs(after)]).toEqual([...numbered('a', 1, 10), ...numbered('b', 1, 2)]);
    const ids = [...before, ...after].map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    await session.end();
  });

  it.each([
    { when: 'while the call still runs', waitMs: 60 },
    { when: 'after the call ended', waitMs: 800 },
  ])('gives a POST whose stream dropped before its answer the rest, answer included, on a GET with Last-Event-ID ($when)', async ({ waitMs }) => {
    const session = await rawSession();
    const drop = new AbortController();
    const res = await session.call('ticking', 'ticks', { count: 10, intervalMs: 40 }, drop.signal);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const before = await read(res, has('tick 3'), drop);
    await sleep(waitMs);

    const resumed = await session.get(lastId(before));
    expect(resumed.status).toBe(200);
    // Read to its end: the stream closes once the answer is out.
    const after = await read(resumed);
    expect([...logs(before), ...logs(after)]).toEqual(numbered('tick', 1, 10));
    const answers = data([...before, ...after]).filter((m) => m.id === 'ticking');
    expect(answers).toEqual([{ jsonrpc: '2.0', id: 'ticking', result: { content: [{ type: 'text', text: 'ticked 10' }] } }]);
    expect(data(after).at(-1)).toEqual(answers[0]);
    await session.end();
  });

  it("lets the SDK's client carry on when its answer's connection breaks: the result and every line, once", async () => {
    const lines: string[] = [];
    const client = new Client({ name: 'resume-test', version: '1' });
    client.setNotificationHandler(LoggingMessageNotificationSchema, ({ params }) => void lines.push(String(params.data)));
    // The connection of the call's answer breaks after its third line.
    const breaking: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (init?.method !== 'POST' || !String(init.body).includes('"ticks"') || !res.body) return res;
      const decoder = new TextDecoder();
      let text = '';
      const cut = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          text += decoder.decode(chunk, { stream: true });
          controller.enqueue(chunk);
          if (text.includes('tick 3')) controller.error(new Error('connection reset'));
        },
      });
      return new Response(res.body.pipeThrough(cut), { status: res.status, headers: res.headers });
    };
    const transport = new StreamableHTTPClientTransport(new URL(route.url), { requestInit: { headers: { authorization: `Bearer ${await route.token()}` } }, fetch: breaking });
    await client.connect(transport);
    expect(await client.callTool({ name: 'ticks', arguments: { count: 8, intervalMs: 40 } }, undefined, { timeout: 10_000 })).toEqual({ content: [{ type: 'text', text: 'ticked 8' }] });
    expect(lines).toEqual(numbered('tick', 1, 8));
    await client.close();
  });

  it('refuses a Last-Event-ID it cannot place (400, as the SDK does) and opens a fresh GET stream for an old instance id', async () => {
    const session = await rawSession();
    expect((await session.get('not-an-event-id')).status).toBe(400);
    const drop = new AbortController();
    const primed = await read(await session.get(undefined, drop.signal), (events) => events.length > 0, drop);
    const epoch = primed[0]!.id!.split('.')[0]!;
    // An answer stream this session never had.
    expect((await session.get(`${epoch}.999.1`)).status).toBe(400);
    // An id of another instance's log (the session carried on elsewhere): what this one holds is new to the client.
    const elsewhere = new AbortController();
    const fresh = await session.get(`someOtherEpoch.${GET_STREAM}.5`, elsewhere.signal);
    expect(fresh.status).toBe(200);
    expect(await read(fresh, (events) => events.length > 0, elsewhere)).toMatchObject([{ data: '' }]);
    await session.end();
  });
});

describe('the event log', () => {
  it(`keeps the last ${EVENT_LOG_MAX_EVENTS} events, and says when a resume comes after events it dropped`, () => {
    const log = new EventLog();
    const stream = log.openStream();
    for (let i = 1; i <= EVENT_LOG_MAX_EVENTS + 5; i++) log.append(stream, `{"n":${i}}`);
    const kept = log.after(stream, 0).map((bytes) => new TextDecoder().decode(bytes));
    expect(kept).toHaveLength(EVENT_LOG_MAX_EVENTS);
    expect(kept[0]).toContain('{"n":6}');
    expect(log.holdsAfter(4)).toBe(false);
    expect(log.holdsAfter(5)).toBe(true);
  });

  it(`keeps at most ${EVENT_LOG_MAX_BYTES} bytes, but always the newest event, however large`, () => {
    const log = new EventLog();
    const big = JSON.stringify({ text: 'x'.repeat(EVENT_LOG_MAX_BYTES / 4) });
    for (let i = 0; i < 8; i++) log.append(GET_STREAM, big);
    const kept = log.after(GET_STREAM, 0);
    expect(kept.length).toBeLessThan(8);
    expect(kept.reduce((n, b) => n + b.length, 0)).toBeLessThanOrEqual(EVENT_LOG_MAX_BYTES);
    log.append(GET_STREAM, JSON.stringify({ text: 'y'.repeat(2 * EVENT_LOG_MAX_BYTES) }));
    expect(log.after(GET_STREAM, 0)).toHaveLength(1);
  });

  it("replays only the named stream's events", () => {
    const log = new EventLog();
    const a = log.openStream();
    const b = log.openStream();
    log.append(a, '"a1"');
    log.append(b, '"b1"');
    log.append(a, '"a2"');
    const first = log.position(new TextDecoder().decode(log.append(GET_STREAM, '"g"')).match(/id: (.*)/)![1]!)!;
    expect(first).toMatchObject({ stream: GET_STREAM, foreign: false });
    expect(log.after(a, 0).map((bytes) => new TextDecoder().decode(bytes).match(/data: (.*)/)![1])).toEqual(['"a1"', '"a2"']);
  });
});
