import { describe, expect, it } from 'vitest';
import { authorizeWithDevLogin, formPost, registerPublicClient, send } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from './support.ts';

// Browser-based MCP clients (MCP Inspector Direct mode on http://localhost:6274, claude.ai's
// web app) call the authorization server's public endpoints cross-origin: every preflight is
// answered, every answer (errors included) is readable from any origin. The sign-in, consent
// and callback pages are same-origin only.

const ORIGINS = ['https://claude.ai', 'http://localhost:6274'];

/** Each public endpoint, the method a client uses on it, and the headers it sends that need a preflight. */
const PUBLIC: ReadonlyArray<[path: string, method: string, headers: string]> = [
  ['/.well-known/oauth-authorization-server', 'GET', 'mcp-protocol-version'],
  ['/.well-known/openid-configuration', 'GET', 'mcp-protocol-version'],
  ['/.well-known/oauth-protected-resource/demo/mcp', 'GET', 'mcp-protocol-version'],
  ['/.well-known/oauth-protected-resource/other/mcp', 'GET', 'mcp-protocol-version'],
  // The SDK falls back to the root document, then to path-inserted AS metadata: a 404 there must be readable too.
  ['/.well-known/oauth-protected-resource', 'GET', 'mcp-protocol-version'],
  ['/.well-known/oauth-authorization-server/demo/mcp', 'GET', 'mcp-protocol-version'],
  ['/jwks.json', 'GET', 'mcp-protocol-version'],
  ['/register', 'POST', 'content-type, mcp-protocol-version'],
  ['/token', 'POST', 'authorization, content-type, mcp-protocol-version'],
  ['/revoke', 'POST', 'authorization, content-type'],
];

const preflightRows = ORIGINS.flatMap((origin) => PUBLIC.map(([path, method, headers]) => [origin, path, method, headers] as const));

const listed = (value: string | null) => (value ?? '').split(',').map((s) => s.trim().toLowerCase());
const fromClaude = { origin: 'https://claude.ai' };
const json = (body: unknown) => ({ method: 'POST', headers: { ...fromClaude, 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('CORS preflight on the public endpoints', () => {
  it.each(preflightRows)('from %s, OPTIONS %s (for %s) answers 204 with what the browser needs', async (origin, path, method, headers) => {
    const as = await authorizationServer();
    const res = await send(as, path, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers } });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(listed(res.headers.get('access-control-allow-methods'))).toContain(method.toLowerCase());
    // Authorization is never covered by a `*` wildcard (Fetch): it must be named.
    for (const header of listed(headers)) expect(listed(res.headers.get('access-control-allow-headers'))).toContain(header);
    expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThanOrEqual(600);
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });
});

describe('public answers are readable from any origin', () => {
  it.each([
    ['AS metadata', '/.well-known/oauth-authorization-server', 200],
    ['protected resource metadata', '/.well-known/oauth-protected-resource/demo/mcp', 200],
    ['an unknown protected resource', '/.well-known/oauth-protected-resource/nope/mcp', 404],
    ['JWKS', '/jwks.json', 200],
    ['POST on a metadata document', '/.well-known/oauth-authorization-server', 405],
  ])('%s: %s answers %i with Access-Control-Allow-Origin', async (_name, path, status) => {
    const as = await authorizationServer();
    const res = await send(as, path, status === 405 ? { method: 'POST', headers: fromClaude } : { headers: { ...fromClaude, 'mcp-protocol-version': '2025-06-18' } });
    expect(res.status).toBe(status);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('/register: the 201 and a 400 both carry it', async () => {
    const as = await authorizationServer();
    const created = await send(as, '/register', json({ client_name: 'Inspector', redirect_uris: ['http://localhost:6274/oauth/callback'] }));
    expect(created.status).toBe(201);
    expect(created.headers.get('access-control-allow-origin')).toBe('*');
    const refused = await send(as, '/register', json({ redirect_uris: ['javascript:alert(1)'] }));
    expect(refused.status).toBe(400);
    expect(refused.headers.get('access-control-allow-origin')).toBe('*');
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_redirect_uri');
  });

  it('/register: a 429 carries it and lets the page read Retry-After', async () => {
    const as = await authorizationServer('  rate_limits: { register: 1 }\n');
    await send(as, '/register', json({ redirect_uris: ['http://localhost:6274/oauth/callback'] }));
    const limited = await send(as, '/register', json({ redirect_uris: ['http://localhost:6274/oauth/callback'] }));
    expect(limited.status).toBe(429);
    expect(limited.headers.get('access-control-allow-origin')).toBe('*');
    expect(listed(limited.headers.get('access-control-expose-headers'))).toContain('retry-after');
  });

  it('/token: a success, a 400 and a 401 all carry it', async () => {
    const as = await authorizationServer();
    const login = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: `${ISSUER}/demo/mcp` });
    const refreshed = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: login.refreshToken, client_id: login.clientId }, fromClaude));
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers.get('access-control-allow-origin')).toBe('*');
    const badCode = await send(as, '/token', formPost({ grant_type: 'authorization_code', code: 'nope', code_verifier: 'x'.repeat(43), client_id: login.clientId }, fromClaude));
    expect(badCode.status).toBe(400);
    expect(badCode.headers.get('access-control-allow-origin')).toBe('*');
    expect(((await badCode.json()) as { error: string }).error).toBe('invalid_grant');
    const badClient = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: 'x' }, { ...fromClaude, authorization: `Basic ${btoa('nobody:wrong')}` }));
    expect(badClient.status).toBe(401);
    expect(badClient.headers.get('access-control-allow-origin')).toBe('*');
    expect(listed(badClient.headers.get('access-control-expose-headers'))).toContain('www-authenticate');
  });

  it('/revoke: a success and a 401 both carry it', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    const revoked = await send(as, '/revoke', formPost({ token: 'unknown', client_id: clientId }, fromClaude));
    expect(revoked.status).toBe(200);
    expect(revoked.headers.get('access-control-allow-origin')).toBe('*');
    const refused = await send(as, '/revoke', formPost({ token: 'unknown' }, { ...fromClaude, authorization: `Basic ${btoa('nobody:wrong')}` }));
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('the pages stay same-origin', () => {
  it.each([
    ['GET', '/authorize?client_id=nobody'],
    ['GET', '/signin?request=nope'],
    ['GET', '/consent?request=nope'],
    ['GET', '/callback?state=nope'],
    ['POST', '/consent'],
    ['OPTIONS', '/authorize'],
    ['OPTIONS', '/consent'],
  ])('%s %s carries no CORS headers', async (method, path) => {
    const as = await authorizationServer();
    const res = await send(as, path, { method, headers: { ...fromClaude, ...(method === 'OPTIONS' ? { 'access-control-request-method': 'GET' } : {}) } });
    expect(res.status).not.toBe(204);
    expect([...res.headers.keys()].filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });
});
