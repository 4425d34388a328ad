import { describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/random.ts';
import { createAccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import { authorizeWithDevLogin, formPost, obtainCode, refreshGrant, send } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER, type AuthorizationServer } from './support.ts';

// Refresh rotation with its grace window, revocation (RFC 7009) and client authentication at
// the token endpoint (RFC 6749 §2.3), with time moved by hand.

const DEMO = `${ISSUER}/demo/mcp`;
const OTHER = `${ISSUER}/other/mcp`;
type TokenBody = { access_token: string; refresh_token: string; error?: string };
const body = async (res: Response) => (await res.json()) as TokenBody;

async function grantOf(as: AuthorizationServer, clientId: string) {
  const [grant] = await as.store.find('grants', 'clientId', clientId);
  return grant?.doc;
}

describe('refresh token rotation', () => {
  it('rotates on every use; the new token works and the access token keeps the audience', async () => {
    const as = await authorizationServer();
    const first = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const res = await refreshGrant(as, first.clientId, first.refreshToken);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const second = await body(res);
    expect(second.refresh_token).not.toBe(first.refreshToken);
    const claims = await createAccessTokenVerifier({ issuer: ISSUER, keys: [...as.keys.published], clock: as.clock }).verify(second.access_token, [DEMO]);
    expect(claims.aud).toBe(DEMO);
    expect(await as.store.get('refreshTokens', sha256(first.refreshToken))).toMatchObject({ rotatedAt: as.clock.now() });
    expect((await refreshGrant(as, first.clientId, second.refresh_token)).status).toBe(200);
  });

  it('honours the previous token within refresh_grace (a lost response), with one lineage still live', async () => {
    const as = await authorizationServer();
    const first = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    await body(await refreshGrant(as, first.clientId, first.refreshToken));
    as.clock.advance(as.config.oauth.refreshGrace - 1000);
    const retried = await refreshGrant(as, first.clientId, first.refreshToken);
    expect(retried.status).toBe(200);
    const latest = await body(retried);
    expect((await refreshGrant(as, first.clientId, latest.refresh_token)).status).toBe(200);
    expect((await grantOf(as, first.clientId))?.revokedAt).toBeUndefined();
  });

  it('after refresh_grace, reuse of a rotated token is invalid_grant and revokes the whole grant', async () => {
    const as = await authorizationServer();
    const first = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const second = await body(await refreshGrant(as, first.clientId, first.refreshToken));
    as.clock.advance(as.config.oauth.refreshGrace + 1000);
    const reuse = await refreshGrant(as, first.clientId, first.refreshToken);
    expect(reuse.status).toBe(400);
    expect((await body(reuse)).error).toBe('invalid_grant');
    expect(await grantOf(as, first.clientId)).toMatchObject({ revokedAt: as.clock.now(), revokedReason: 'refresh token reused' });
    expect((await body(await refreshGrant(as, first.clientId, second.refresh_token))).error).toBe('invalid_grant');
  });

  it('refuses a token after refresh_ttl, one presented by another client, and a resource the grant does not cover', async () => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const other = await authorizeWithDevLogin(as, { email: 'bob@example.com', resource: DEMO });
    expect((await body(await refreshGrant(as, other.clientId, tokens.refreshToken))).error).toBe('invalid_grant');
    expect((await body(await refreshGrant(as, tokens.clientId, tokens.refreshToken, { resource: OTHER }))).error).toBe('invalid_target');
    as.clock.advance(as.config.oauth.refreshTtl + 1);
    expect((await body(await refreshGrant(as, tokens.clientId, tokens.refreshToken))).error).toBe('invalid_grant');
  });

  it('one consent for two routes mints a token for either from the same refresh token', async () => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO, moreResources: [OTHER] });
    const other = await body(await refreshGrant(as, tokens.clientId, tokens.refreshToken, { resource: OTHER }));
    const claims = await createAccessTokenVerifier({ issuer: ISSUER, keys: [...as.keys.published], clock: as.clock }).verify(other.access_token, [OTHER]);
    expect(claims.aud).toBe(OTHER);
  });
});

describe('revocation (RFC 7009)', () => {
  it('revoking a refresh token ends its grant; an unknown token is still a 200', async () => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const res = await send(as, '/revoke', formPost({ token: tokens.refreshToken, client_id: tokens.clientId }));
    expect(res.status).toBe(200);
    expect((await grantOf(as, tokens.clientId))?.revokedAt).toBe(as.clock.now());
    expect((await body(await refreshGrant(as, tokens.clientId, tokens.refreshToken))).error).toBe('invalid_grant');
    expect((await send(as, '/revoke', formPost({ token: 'never-issued', client_id: tokens.clientId }))).status).toBe(200);
  });
});

describe('client authentication at /token', () => {
  async function confidential(as: AuthorizationServer, method: 'client_secret_basic' | 'client_secret_post') {
    const res = await send(as, '/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/callback'], token_endpoint_auth_method: method }) });
    return (await res.json()) as { client_id: string; client_secret: string };
  }
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

  it('a client_secret_basic client completes the code flow with its secret in the Authorization header', async () => {
    const as = await authorizationServer();
    const client = await confidential(as, 'client_secret_basic');
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO, clientId: client.client_id });
    const res = await send(as, '/token', formPost({ grant_type: 'authorization_code', code: code.code, redirect_uri: code.redirectUri, code_verifier: code.verifier }, { authorization: basic(client.client_id, client.client_secret) }));
    expect(res.status).toBe(200);
    expect((await body(res)).refresh_token).toBeTruthy();
  });

  it('a wrong Basic secret is 401 invalid_client with WWW-Authenticate: Basic', async () => {
    const as = await authorizationServer();
    const client = await confidential(as, 'client_secret_basic');
    const res = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: 'x' }, { authorization: basic(client.client_id, 'wrong') }));
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic /);
    expect((await body(res)).error).toBe('invalid_client');
  });

  it('client_secret_post: the right secret passes authentication, a wrong one is 401, a missing one is 401', async () => {
    const as = await authorizationServer();
    const client = await confidential(as, 'client_secret_post');
    const right = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: 'x', client_id: client.client_id, client_secret: client.client_secret }));
    expect((await body(right)).error).toBe('invalid_grant');
    for (const extra of [{ client_secret: 'wrong' }, {}] as Array<Record<string, string>>) {
      const res = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: 'x', client_id: client.client_id, ...extra }));
      expect(res.status).toBe(401);
      expect((await body(res)).error).toBe('invalid_client');
    }
  });

  it('refuses a secret from a public client and two authentication methods at once', async () => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const publicWithSecret = await refreshGrant(as, tokens.clientId, tokens.refreshToken, { client_secret: 'guess' });
    expect(publicWithSecret.status).toBe(401);
    const client = await confidential(as, 'client_secret_basic');
    const both = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: 'x', client_secret: client.client_secret }, { authorization: basic(client.client_id, client.client_secret) }));
    expect(both.status).toBe(400);
    expect((await body(both)).error).toBe('invalid_request');
  });

  it.each<[string, Record<string, string>, string]>([
    ['an unknown grant_type', { grant_type: 'password' }, 'unsupported_grant_type'],
    ['no grant_type', {}, 'invalid_request'],
    ['a code grant without a code', { grant_type: 'authorization_code', redirect_uri: 'http://127.0.0.1:1/callback', code_verifier: 'a'.repeat(43) }, 'invalid_request'],
  ])('answers %s with %s', async (_name, values, error) => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const res = await send(as, '/token', formPost({ client_id: tokens.clientId, ...values }));
    expect(res.status).toBe(400);
    expect((await body(res)).error).toBe(error);
  });

  it('answers a CORS preflight for browser-based clients', async () => {
    const as = await authorizationServer();
    const res = await send(as, '/token', { method: 'OPTIONS', headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST' } });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
  });
});
