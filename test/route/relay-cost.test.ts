import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import type { JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import { countingStore } from '../../lib/store/counting-store.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { createAccessTokenVerifier, signAccessToken } from '../../lib/tokens/access-token.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { createRouteService, type RouteService } from '../../services/route/app.ts';

// What one session, one owner costs in store operations, counted (as Firestore bills them: a
// listener's delivery of a document is a read). Two instances of a route share one store
// (SQLite, ownership engaged as it is on Firestore): a call landing on the session's owner
// touches the store not at all; a call landing on the other instance is relayed, for a fixed
// small number of reads and writes. The same holds for a legacy SSE session's POSTs, whose
// owner is the instance holding the stream.

const ISSUER = 'http://127.0.0.1:1';
const URL_ = `${ISSUER}/count/mcp`;
const CTX = { clientIp: '127.0.0.1' };

describe('the cost of a relayed call', () => {
  let inner: Store;
  let a: RouteService;
  let b: RouteService;
  let counted: { a: ReturnType<typeof countingStore>; b: ReturnType<typeof countingStore> };
  let token: string;
  let keys: Awaited<ReturnType<typeof loadKeySet>>;
  let session = '';
  let next = 1;

  const request = (service: RouteService, message: object) =>
    service.handle(
      new Request(URL_, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...(session ? { 'mcp-session-id': session } : {}) },
        body: JSON.stringify({ jsonrpc: '2.0', ...message }),
      }),
      CTX,
    );
  const count = async (service: RouteService) => {
    const res = await request(service, { id: next++, method: 'tools/call', params: { name: 'count', arguments: {} } });
    const answer = (await res.json()) as JsonRpcMessage;
    return (JSON.parse((answer.result as { content: Array<{ text: string }> }).content[0]!.text) as { n: number }).n;
  };
  const total = () => ({ reads: counted.a.counts.reads + counted.b.counts.reads, writes: counted.a.counts.writes + counted.b.counts.writes, transactions: counted.a.counts.transactions + counted.b.counts.transactions });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
  const reset = () => (counted.a.reset(), counted.b.reset());

  beforeAll(async () => {
    inner = await openSqliteStore({ file: ':memory:', clock: systemClock });
    keys = await loadKeySet(inner, systemClock);
    const config = parseConfig(`oauth:\n  issuer: ${ISSUER}\n  provider: dev\nroutes:\n  - path: /count\n    type: stdio\n    command: [${process.execPath}, test/fixtures/counter-server.ts]\n`, {}, 'relay-cost.yaml');
    const verifier = createAccessTokenVerifier({ issuer: ISSUER, keys: [...keys.published], clock: systemClock });
    counted = { a: countingStore(inner), b: countingStore(inner) };
    // A lease far longer than the test: no renewal lands among the counted operations.
    const ownership = { engaged: true, leaseMs: 600_000 };
    a = createRouteService({ config, route: config.routes[0]!, store: counted.a, verifier, clock: systemClock, log: silentLogger, ownership });
    b = createRouteService({ config, route: config.routes[0]!, store: counted.b, verifier, clock: systemClock, log: silentLogger, ownership });
    token = (await signAccessToken(keys.current, ISSUER, 600_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: URL_, client_id: 'c', scope: 'mcp' })).token;
    const init = await request(a, { id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'cost', version: '1' } } });
    session = init.headers.get('mcp-session-id')!;
    await init.text();
    expect((await request(a, { method: 'notifications/initialized' })).status).toBe(202);
    await settle();
  }, 30_000);
  afterAll(async () => {
    await Promise.all([a?.close(1000), b?.close(1000)]);
    await inner?.close();
  });

  it('a call on the owner does no store operation at all', async () => {
    reset();
    expect(await count(a)).toBe(1);
    await settle();
    expect(total()).toEqual({ reads: 0, writes: 0, transactions: 0 });
  });

  it('a relayed call costs 4 reads and 4 writes: record and lease, the call frame, the answer frame, each deleted once read', async () => {
    reset();
    expect(await count(b)).toBe(2);
    await settle();
    expect(total()).toEqual({ reads: 4, writes: 4, transactions: 0 });
    expect(b.childPids()).toEqual([]);
    expect(a.childPids()).toHaveLength(1);
  });

  it('a relayed notification costs 3 reads and 2 writes: nothing comes back', async () => {
    reset();
    expect((await request(b, { method: 'notifications/cancelled', params: { requestId: 99, reason: 'test' } })).status).toBe(202);
    await settle();
    expect(total()).toEqual({ reads: 3, writes: 2, transactions: 0 });
  });

  /** A legacy SSE session whose stream `owner` holds: its endpoint, POSTs to any instance, answers read off the stream. */
  const legacySession = async (owner: RouteService) => {
    const stream = new AbortController();
    const res = await owner.handle(new Request(`${ISSUER}/count/sse`, { headers: { authorization: `Bearer ${token}` }, signal: stream.signal }), CTX);
    const events = readEvents(res.body!);
    const endpoint = (await events.next()).value!.data;
    const answer = async () => JSON.parse((await events.next()).value!.data) as JsonRpcMessage;
    const post = (service: RouteService, message: object, bearer = token) =>
      service.handle(new Request(`${ISSUER}${endpoint}`, { method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', ...message }) }), CTX);
    const count = async (service: RouteService) => {
      expect((await post(service, { id: next++, method: 'tools/call', params: { name: 'count', arguments: {} } })).status).toBe(202);
      return (JSON.parse(((await answer()).result as { content: Array<{ text: string }> }).content[0]!.text) as { n: number }).n;
    };
    expect((await post(owner, { id: 0, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'cost', version: '1' } } })).status).toBe(202);
    await answer();
    expect((await post(owner, { method: 'notifications/initialized' })).status).toBe(202);
    return { id: new URL(endpoint, ISSUER).searchParams.get('session')!, post, count, close: () => stream.abort() };
  };

  it('a legacy SSE session costs one write to start: its record, naming the instance holding the stream', async () => {
    reset();
    const legacy = await legacySession(a);
    await settle();
    // The owner's listener (owner == me) delivers the record once: one read.
    expect(total()).toEqual({ reads: 1, writes: 1, transactions: 0 });
    expect(await inner.get('mcpSessions', legacy.id)).toMatchObject({ legacy: true, route: '/count', userSub: 'dev:ada@example.com', epoch: 1 });
    legacy.close();
    await settle();
  });

  it('a legacy POST on the stream holder costs nothing; on the other instance, 4 reads and 4 writes, its answer on the stream', async () => {
    const legacy = await legacySession(a);
    await settle();
    reset();
    expect(await legacy.count(a)).toBe(1);
    await settle();
    expect(total()).toEqual({ reads: 0, writes: 0, transactions: 0 });
    expect(await legacy.count(b)).toBe(2);
    await settle();
    expect(total()).toEqual({ reads: 4, writes: 4, transactions: 0 });
    expect(b.childPids()).toEqual([]);
    legacy.close();
    await settle();
  });

  it("another user's POST is 404 on both instances; once the stream closes, the record is gone and the session 404 everywhere", async () => {
    const legacy = await legacySession(a);
    const mallory = (await signAccessToken(keys.current, ISSUER, 600_000, systemClock, { sub: 'dev:mallory@example.com', email: 'mallory@example.com', aud: URL_, client_id: 'c', scope: 'mcp' })).token;
    for (const service of [a, b]) expect((await legacy.post(service, { id: 1, method: 'tools/list' }, mallory)).status).toBe(404);
    await settle();
    reset();
    legacy.close();
    await settle();
    // One delete; the listener delivers no read for a removal.
    expect(total()).toEqual({ reads: 0, writes: 1, transactions: 0 });
    expect(await inner.get('mcpSessions', legacy.id)).toBeUndefined();
    for (const service of [a, b]) expect((await legacy.post(service, { id: 2, method: 'tools/list' })).status).toBe(404);
  });

  it('a single process on SQLite engages no ownership: no lease, no listener, no record fields', async () => {
    const config = parseConfig(`oauth:\n  issuer: ${ISSUER}\n  provider: dev\nroutes:\n  - path: /count\n    type: stdio\n    command: [${process.execPath}, test/fixtures/counter-server.ts]\n`, {}, 'relay-cost.yaml');
    const store = countingStore(await openSqliteStore({ file: ':memory:', clock: systemClock }));
    const keys = await loadKeySet(store, systemClock);
    store.reset();
    const alone = createRouteService({ config, route: config.routes[0]!, store, verifier: createAccessTokenVerifier({ issuer: ISSUER, keys: [...keys.published], clock: systemClock }), clock: systemClock, log: silentLogger });
    await settle();
    expect(store.counts).toEqual({ reads: 0, writes: 0, transactions: 0 });
    await alone.close(100);
    await store.close();
  });
});
