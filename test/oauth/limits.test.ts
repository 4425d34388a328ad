import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { createOAuthApp } from '../../functions/oauth/app.ts';

// Abuse limits counted in the store, and a store that fails: a clear 429 or 503, and nothing
// written that the refusal didn't account for.

const config = parseConfig('oauth:\n  issuer: http://127.0.0.1:9\n  provider: dev\n  rate_limits: { register: 2 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, x.js] }\n', {});
let store: Store;
beforeAll(async () => {
  store = await openSqliteStore({ file: ':memory:', clock: systemClock });
});
afterAll(async () => store?.close());

const register = (app: ReturnType<typeof createOAuthApp>, ip: string) =>
  app(new Request('http://127.0.0.1:9/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) }), { clientIp: ip });

describe('rate limits', () => {
  it('answers 429 with Retry-After past the per-IP limit, registers nothing more, and counts each IP apart', async () => {
    const app = createOAuthApp({ config, store, keys: await loadKeySet(store, systemClock), clock: systemClock, log: silentLogger });
    expect((await register(app, '203.0.113.7')).status).toBe(201);
    expect((await register(app, '203.0.113.7')).status).toBe(201);
    const refused = await register(app, '203.0.113.7');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: string }).error).toBe('temporarily_unavailable');
    expect(await store.find('clients', 'clientName', 'Unnamed MCP client')).toHaveLength(2);
    expect((await register(app, '198.51.100.1')).status).toBe(201);
  });
});

describe('per-client limits', () => {
  it('/token counts each registered client across IPs: 429 past the limit, even from fresh addresses', async () => {
    const limited = parseConfig('oauth:\n  issuer: http://127.0.0.1:9\n  provider: dev\n  rate_limits: { token: 3 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, x.js] }\n', {});
    const app = createOAuthApp({ config: limited, store, keys: await loadKeySet(store, systemClock), clock: systemClock, log: silentLogger });
    const clientId = ((await (await register(app, '192.0.2.1')).json()) as { client_id: string }).client_id;
    const token = (ip: string) => app(new Request('http://127.0.0.1:9/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=refresh_token&refresh_token=x&client_id=${clientId}` }), { clientIp: ip });
    for (const ip of ['192.0.2.10', '192.0.2.11', '192.0.2.12']) expect((await token(ip)).status).toBe(400);
    const refused = await token('192.0.2.13');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBeTruthy();
  });
});

describe('a failing store', () => {
  it('answers 503 temporarily_unavailable with Retry-After, on every endpoint that needs it', async () => {
    const broken = await openSqliteStore({ file: ':memory:', clock: systemClock });
    const keys = await loadKeySet(broken, systemClock);
    await broken.close(); // every operation now fails as StoreUnavailableError
    const app = createOAuthApp({ config, store: broken, keys, clock: systemClock, log: silentLogger });
    for (const req of [
      new Request('http://127.0.0.1:9/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) }),
      new Request('http://127.0.0.1:9/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&refresh_token=x&client_id=abc' }),
      new Request('http://127.0.0.1:9/authorize?client_id=abc'),
    ]) {
      const res = await app(req, { clientIp: '192.0.2.1' });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(((await res.json()) as { error: string }).error).toBe('temporarily_unavailable');
    }
  });
});
