import { describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/random.ts';
import { authorizeWithDevLogin, send } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from './support.ts';

// The authorization server's public documents (RFC 8414, RFC 9728, JWKS) and dynamic client
// registration (RFC 7591), called in process on an in-memory store.

const registerBody = (metadata: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(metadata) });

describe('authorization server metadata (RFC 8414)', () => {
  it.each(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'])('%s names every endpoint under the exact issuer', async (path) => {
    const as = await authorizationServer();
    const res = await send(as, path);
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(await res.json()).toEqual({
      issuer: ISSUER,
      authorization_endpoint: `${ISSUER}/authorize`,
      token_endpoint: `${ISSUER}/token`,
      registration_endpoint: `${ISSUER}/register`,
      revocation_endpoint: `${ISSUER}/revoke`,
      jwks_uri: `${ISSUER}/jwks.json`,
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
      scopes_supported: ['mcp'],
      authorization_response_iss_parameter_supported: true,
      client_id_metadata_document_supported: true,
    });
  });

  it('publishes the signing keys as a cacheable JWKS without private parts', async () => {
    const as = await authorizationServer();
    const res = await send(as, '/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=300');
    const body = (await res.json()) as { keys: Array<Record<string, unknown>> };
    expect(body.keys).toEqual(JSON.parse(JSON.stringify(as.keys.published)));
    expect(body.keys.every((k) => k.d === undefined && k.kty === 'EC')).toBe(true);
  });

  it('answers 404 for an unknown path and 405 with Allow for a known one under the wrong method', async () => {
    const as = await authorizationServer();
    const missing = await send(as, '/nowhere');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toBe('not_found');
    const wrong = await send(as, '/token');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST, OPTIONS');
  });
});

describe('protected resource metadata (RFC 9728)', () => {
  it.each(['/demo/mcp', '/demo', '/demo/sse', '/other/mcp'])('echoes the exact resource form asked for: %s', async (form) => {
    const as = await authorizationServer();
    const res = await send(as, `/.well-known/oauth-protected-resource${form}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ resource: `${ISSUER}${form}`, authorization_servers: [ISSUER], scopes_supported: ['mcp'], bearer_methods_supported: ['header'] });
    expect(typeof body.resource_name).toBe('string');
  });

  it.each(['/nope/mcp', '/demo/mcp/extra', '/demox/mcp', '/'])('is a 404 for %s, which is no route', async (form) => {
    const as = await authorizationServer();
    expect((await send(as, `/.well-known/oauth-protected-resource${form}`)).status).toBe(404);
  });
});

describe('dynamic client registration (RFC 7591)', () => {
  it('registers a public client: 201, integer issue time, no secret, a fresh id each time', async () => {
    const as = await authorizationServer();
    const metadata = { client_name: 'Claude', redirect_uris: ['http://127.0.0.1:33418/oauth/callback', 'https://claude.ai/api/mcp/auth_callback', 'com.example.app:/cb', 'http://[::1]/cb'] };
    const first = await send(as, '/register', registerBody(metadata));
    expect(first.status).toBe(201);
    expect(first.headers.get('access-control-allow-origin')).toBe('*');
    const info = (await first.json()) as Record<string, unknown>;
    expect(info).toMatchObject({ client_name: 'Claude', redirect_uris: metadata.redirect_uris, token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] });
    expect(info.client_id_issued_at).toBe(Math.floor(as.clock.now() / 1000));
    expect(info.client_secret).toBeUndefined();
    const again = (await (await send(as, '/register', registerBody(metadata))).json()) as { client_id: string };
    expect(again.client_id).not.toBe(info.client_id);
    expect(await as.store.get('clients', info.client_id as string)).toMatchObject({ clientName: 'Claude', tokenEndpointAuthMethod: 'none' });
  });

  it.each(['client_secret_basic', 'client_secret_post'])('gives a %s client its secret once and keeps only its SHA-256', async (method) => {
    const as = await authorizationServer();
    const res = await send(as, '/register', registerBody({ redirect_uris: ['https://app.example/cb'], token_endpoint_auth_method: method }));
    expect(res.status).toBe(201);
    const info = (await res.json()) as { client_id: string; client_secret: string; client_secret_expires_at: number };
    expect(info.client_secret.length).toBeGreaterThanOrEqual(43);
    expect(info.client_secret_expires_at).toBe(0);
    const stored = await as.store.get('clients', info.client_id);
    expect(stored?.secretHash).toBe(sha256(info.client_secret));
    expect(JSON.stringify(stored)).not.toContain(info.client_secret);
  });

  it('forgets a registration nobody completed a grant with after 24 hours, and keeps one that did', async () => {
    const as = await authorizationServer();
    const unused = ((await (await send(as, '/register', registerBody({ redirect_uris: ['http://127.0.0.1:1/callback'] }))).json()) as { client_id: string }).client_id;
    const used = (await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: `${ISSUER}/demo/mcp` })).clientId;
    as.clock.advance(24 * 3_600_000 + 1000);
    expect(await as.store.get('clients', unused)).toBeUndefined();
    expect(await as.store.get('clients', used)).toMatchObject({ clientId: used });
  });

  it.each<[string, unknown, string]>([
    ['no redirect_uris', { client_name: 'x' }, 'invalid_redirect_uri'],
    ['an empty redirect_uris', { redirect_uris: [] }, 'invalid_redirect_uri'],
    ['redirect_uris that is a string', { redirect_uris: 'https://app.example/cb' }, 'invalid_redirect_uri'],
    ['21 redirect URIs', { redirect_uris: Array.from({ length: 21 }, (_, i) => `https://app.example/cb${i}`) }, 'invalid_redirect_uri'],
    ['a redirect URI over 2048 characters', { redirect_uris: [`https://app.example/${'a'.repeat(2048)}`] }, 'invalid_redirect_uri'],
    ['http to a non-loopback host', { redirect_uris: ['http://app.example/cb'] }, 'invalid_redirect_uri'],
    ['a fragment', { redirect_uris: ['https://app.example/cb#x'] }, 'invalid_redirect_uri'],
    ['a javascript: URI', { redirect_uris: ['javascript:alert(1)'] }, 'invalid_redirect_uri'],
    ['a relative URI', { redirect_uris: ['/cb'] }, 'invalid_redirect_uri'],
    ['the implicit grant', { redirect_uris: ['https://app.example/cb'], grant_types: ['implicit'] }, 'invalid_client_metadata'],
    ['client_credentials', { redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code', 'client_credentials'] }, 'invalid_client_metadata'],
    ['response_type token', { redirect_uris: ['https://app.example/cb'], response_types: ['token'] }, 'invalid_client_metadata'],
    ['private_key_jwt', { redirect_uris: ['https://app.example/cb'], token_endpoint_auth_method: 'private_key_jwt' }, 'invalid_client_metadata'],
    ['a 201-character client_name', { redirect_uris: ['https://app.example/cb'], client_name: 'n'.repeat(201) }, 'invalid_client_metadata'],
    ['a JSON array', [], 'invalid_client_metadata'],
  ])('refuses %s with %s and stores nothing', async (_name, metadata, error) => {
    const as = await authorizationServer();
    const res = await send(as, '/register', registerBody(metadata));
    expect(res.status).toBe(400);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(((await res.json()) as { error: string }).error).toBe(error);
    expect(await as.store.find('clients', 'tokenEndpointAuthMethod', 'none')).toEqual([]);
  });

  it('refuses a body that is not JSON, or not sent as JSON, or over 64 KiB', async () => {
    const as = await authorizationServer();
    const notJson = await send(as, '/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{redirect_uris' });
    expect(notJson.status).toBe(400);
    const asForm = await send(as, '/register', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'redirect_uris=https://app.example/cb' });
    expect(asForm.status).toBe(400);
    const huge = await send(as, '/register', registerBody({ redirect_uris: ['https://app.example/cb'], padding: 'x'.repeat(70_000) }));
    expect(huge.status).toBe(413);
    for (const res of [notJson, asForm, huge]) expect(((await res.json()) as { error: string }).error).toMatch(/^invalid_(client_metadata|request)$/);
  });
});
