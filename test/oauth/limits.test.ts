import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { serveHandler, type RunningServer } from '../../lib/http/node-server.ts';
import type { Handler } from '../../lib/http/types.ts';
import { silentLogger } from '../../lib/log.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { createOAuthApp } from '../../functions/oauth/app.ts';

// Abuse limits counted in the store, and a store that fails: a clear 429 or 503, and nothing
// written that the refusal didn't account for. Requests go through the node:http adapter, so
// the client address is derived from X-Forwarded-For as in production (one trusted hop here),
// and time stands still: a window can't end between two requests of a test.

const config = parseConfig('oauth:\n  issuer: http://127.0.0.1:9\n  provider: dev\n  rate_limits: { register: 2 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, x.js] }\n', {});
// Mid-minute: the windows are fixed minutes of this clock.
const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 30));
let store: Store;
const servers: RunningServer[] = [];
beforeAll(async () => {
  store = await openSqliteStore({ file: ':memory:', clock });
});
afterAll(async () => {
  for (const server of servers) await server.close();
  await store?.close();
});

/** The handler on a loopback port, behind one trusted proxy: the client is the last X-Forwarded-For entry. */
async function served(handler: Handler): Promise<string> {
  const server = await serveHandler(handler, { host: '127.0.0.1', port: 0, log: silentLogger, trustedProxies: 1 });
  servers.push(server);
  return `http://127.0.0.1:${server.port}`;
}

/** A request from `ip`, as the trusted proxy reports it after whatever the client put first. */
const from = (ip: string) => ({ 'x-forwarded-for': `192.0.2.99, ${ip}` });

const register = (base: string, ip: string) =>
  fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json', ...from(ip) }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) });

describe('rate limits', () => {
  it('answers 429 with Retry-After past the per-IP limit, registers nothing more, and counts each IP apart', async () => {
    const app = await served(createOAuthApp({ config, store, keys: await loadKeySet(store, clock), clock, log: silentLogger }));
    expect((await register(app, '203.0.113.7')).status).toBe(201);
    expect((await register(app, '203.0.113.7')).status).toBe(201);
    const refused = await register(app, '203.0.113.7');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: string }).error).toBe('temporarily_unavailable');
    expect(await store.find('clients', 'clientName', 'Unnamed MCP client')).toHaveLength(2);
    expect((await register(app, '198.51.100.1')).status).toBe(201);
    // The next window counts afresh.
    clock.advance(60_000);
    expect((await register(app, '203.0.113.7')).status).toBe(201);
  });
});

describe('per-client limits', () => {
  it('/token counts each registered client across IPs: 429 past the limit, even from fresh addresses', async () => {
    const limited = parseConfig('oauth:\n  issuer: http://127.0.0.1:9\n  provider: dev\n  rate_limits: { token: 3 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, x.js] }\n', {});
    const app = await served(createOAuthApp({ config: limited, store, keys: await loadKeySet(store, clock), clock, log: silentLogger }));
    const clientId = ((await (await register(app, '192.0.2.1')).json()) as { client_id: string }).client_id;
    const token = (ip: string) => fetch(`${app}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...from(ip) }, body: `grant_type=refresh_token&refresh_token=x&client_id=${clientId}` });
    for (const ip of ['192.0.2.10', '192.0.2.11', '192.0.2.12']) expect((await token(ip)).status).toBe(400);
    const refused = await token('192.0.2.13');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBeTruthy();
  });
});

describe('a failing store', () => {
  it('answers 503 temporarily_unavailable with Retry-After, on every endpoint that needs it', async () => {
    const broken = await openSqliteStore({ file: ':memory:', clock });
    const keys = await loadKeySet(broken, clock);
    await broken.close(); // every operation now fails as StoreUnavailableError
    const app = await served(createOAuthApp({ config, store: broken, keys, clock, log: silentLogger }));
    for (const [path, init] of [
      ['/register', { method: 'POST', headers: { 'content-type': 'application/json', ...from('192.0.2.1') }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) }],
      ['/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...from('192.0.2.1') }, body: 'grant_type=refresh_token&refresh_token=x&client_id=abc' }],
      ['/authorize?client_id=abc', { headers: from('192.0.2.1') }],
    ] as const) {
      const res = await fetch(app + path, init);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(((await res.json()) as { error: string }).error).toBe('temporarily_unavailable');
    }
  });
});
