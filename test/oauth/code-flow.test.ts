import { describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/random.ts';
import { createAccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import { authorizeWithDevLogin, formPost, hiddenField, obtainCode, pkcePair, redeemCode, registerPublicClient, send, type OAuthTarget } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from './support.ts';

// The authorization code flow in process: sign-in, consent, code, token, with the store
// checked directly and time moved by hand.

const DEMO = `${ISSUER}/demo/mcp`;
const OTHER = `${ISSUER}/other/mcp`;
const errorOf = async (res: Response) => ((await res.json()) as { error: string }).error;

/** GET /authorize up to the dev sign-in page; returns the page and its hidden fields. */
async function signInPage(target: OAuthTarget, clientId: string) {
  const { challenge } = pkcePair();
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: challenge, code_challenge_method: 'S256', state: 'st', resource: DEMO });
  const start = await send(target, `/authorize?${query}`);
  expect(start.status).toBe(303);
  const page = await send(target, start.headers.get('location')!);
  const html = await page.text();
  return { page, html, request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf') };
}

describe('a successful authorization', () => {
  it('yields an ES256 access token for the route, and keeps the refresh token only hashed', async () => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'Ada@Example.com', resource: DEMO });
    expect(tokens.expiresIn).toBe(3600);
    expect(tokens.scope).toBe('mcp');
    const verifier = createAccessTokenVerifier({ issuer: ISSUER, keys: [...as.keys.published], clock: as.clock });
    const claims = await verifier.verify(tokens.accessToken, [DEMO]);
    expect(claims).toMatchObject({ iss: ISSUER, aud: DEMO, sub: 'dev:ada@example.com', email: 'ada@example.com', client_id: tokens.clientId, scope: 'mcp' });
    await expect(verifier.verify(tokens.accessToken, [OTHER])).rejects.toMatchObject({ name: 'InvalidTokenError', code: 'audience' });
    const stored = await as.store.get('refreshTokens', sha256(tokens.refreshToken));
    expect(stored).toMatchObject({ clientId: tokens.clientId, generation: 1 });
    expect(await as.store.get('refreshTokens', tokens.refreshToken)).toBeUndefined();
    const grants = await as.store.find('grants', 'clientId', tokens.clientId);
    expect(grants.map((g) => g.doc)).toMatchObject([{ userSub: 'dev:ada@example.com', resource: DEMO, scope: 'mcp' }]);
  });

  it('redirects back with the code, the client state and the issuer (RFC 9207)', async () => {
    const as = await authorizationServer();
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });
    expect(code.location.origin + code.location.pathname).toBe('http://127.0.0.1:1/callback');
    expect(code.location.searchParams.get('state')).toBe('test-state');
    expect(code.location.searchParams.get('iss')).toBe(ISSUER);
    expect(code.code.length).toBeGreaterThanOrEqual(43);
    expect(await as.store.get('codes', sha256(code.code))).toMatchObject({ clientId: code.clientId, resource: DEMO, userSub: 'dev:ada@example.com' });
  });

  it('sets an HttpOnly, SameSite=Lax session cookie (not Secure on loopback http) and then skips sign-in and remembered consent', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    const { request, csrf } = await signInPage(as, clientId);
    const signedIn = await send(as, '/signin', formPost({ request, csrf, email: 'ada@example.com' }));
    expect(signedIn.status).toBe(303);
    const cookie = signedIn.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^mcp_front_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200$/);
    expect(await as.store.get('browserSessions', sha256(cookie.split(';')[0]!.split('=')[1]!))).toMatchObject({ userSub: 'dev:ada@example.com' });
    const jar = { value: cookie.split(';')[0] };
    await obtainCode(as, { email: 'ada@example.com', resource: DEMO, clientId, cookie: jar });
    // Same client, same route, same user: straight back to the client with a code.
    const { challenge } = pkcePair();
    const again = await send(as, `/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: challenge, code_challenge_method: 'S256', resource: DEMO })}`, { headers: { cookie: jar.value! } });
    expect(again.status).toBe(303);
    expect(new URL(again.headers.get('location')!).searchParams.get('code')).toBeTruthy();
  });

  it('denying sends access_denied back with state and iss, and issues no code', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    const { request, csrf } = await signInPage(as, clientId);
    const signedIn = await send(as, '/signin', formPost({ request, csrf, email: 'ada@example.com' }));
    const cookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
    const consent = await send(as, signedIn.headers.get('location')!, { headers: { cookie } });
    const html = await consent.text();
    expect(html).toContain('<button name="decision" value="allow"');
    expect(html).toContain('<code>/demo</code>');
    const denied = await send(as, '/consent', formPost({ request, csrf: hiddenField(html, 'csrf'), decision: 'deny' }, { cookie }));
    expect(denied.status).toBe(303);
    const location = new URL(denied.headers.get('location')!);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({ error: 'access_denied', state: 'st', iss: ISSUER });
    expect(await as.store.find('codes', 'clientId', clientId)).toEqual([]);
  });
});

describe('what /authorize accepts as the resource (RFC 8707)', () => {
  const authorizeQuery = (clientId: string, resource?: string) => {
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', state: 'st' });
    if (resource !== undefined) query.set('resource', resource);
    return `/authorize?${query}`;
  };

  it('refuses an authorization request without resource with invalid_target, back to the client', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    const res = await send(as, authorizeQuery(clientId));
    expect(res.status).toBe(303);
    const location = new URL(res.headers.get('location')!);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({ error: 'invalid_target', state: 'st', iss: ISSUER });
    expect(await as.store.find('authRequests', 'clientId', clientId)).toEqual([]);
  });

  it.each([`${ISSUER}/demo`, `${ISSUER}/demo/sse`, DEMO])('accepts %s and binds the token to that exact form', async (resource) => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource });
    const claims = await createAccessTokenVerifier({ issuer: ISSUER, keys: [...as.keys.published], clock: as.clock }).verify(tokens.accessToken, [resource]);
    expect(claims.aud).toBe(resource);
  });
});

describe('sign-in and consent refusals', () => {
  it('refuses a sign-in POST with a forged CSRF token: no cookie, no session', async () => {
    const as = await authorizationServer();
    const { request } = await signInPage(as, await registerPublicClient(as));
    const res = await send(as, '/signin', formPost({ request, csrf: 'forged', email: 'mallory@example.com' }));
    expect(res.status).toBe(403);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await as.store.find('browserSessions', 'email', 'mallory@example.com')).toEqual([]);
  });

  it('shows the sign-in page again for an address that is not an email', async () => {
    const as = await authorizationServer();
    const { request, csrf } = await signInPage(as, await registerPublicClient(as));
    const res = await send(as, '/signin', formPost({ request, csrf, email: 'not-an-email' }));
    expect(res.status).toBe(400);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await res.text()).toContain('name="email"');
  });

  it('every page carries a CSP that allows no script and only our form posts plus the redirect origin', async () => {
    const as = await authorizationServer();
    const { page } = await signInPage(as, await registerPublicClient(as));
    expect(page.headers.get('content-security-policy')).toBe("default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://127.0.0.1:1; frame-ancestors 'none'; base-uri 'none'");
  });

  it('escapes the client name wherever a page shows it', async () => {
    const as = await authorizationServer();
    const res = await send(as, '/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: '<img src=x onerror=alert(1)>', redirect_uris: ['http://127.0.0.1:1/callback'] }) });
    const { html } = await signInPage(as, ((await res.json()) as { client_id: string }).client_id);
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });

  it('a double-submitted consent issues one code only', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    const { request, csrf } = await signInPage(as, clientId);
    const signedIn = await send(as, '/signin', formPost({ request, csrf, email: 'ada@example.com' }));
    const cookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
    await send(as, signedIn.headers.get('location')!, { headers: { cookie } });
    const answers = await Promise.all([1, 2].map(() => send(as, '/consent', formPost({ request, csrf, decision: 'allow' }, { cookie }))));
    const withCode = answers.filter((r) => r.status === 303 && new URL(r.headers.get('location')!).searchParams.has('code'));
    expect(withCode).toHaveLength(1);
    expect(await as.store.find('codes', 'clientId', clientId)).toHaveLength(1);
  });
});

describe('redeeming a code', () => {
  it('a second redemption is invalid_grant and revokes the grant the first one produced', async () => {
    const as = await authorizationServer();
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });
    const first = await redeemCode(as, code);
    expect(first.status).toBe(200);
    const { refresh_token } = (await first.json()) as { refresh_token: string };
    const replay = await redeemCode(as, code);
    expect(replay.status).toBe(400);
    expect(await errorOf(replay)).toBe('invalid_grant');
    const [grant] = await as.store.find('grants', 'clientId', code.clientId);
    expect(grant?.doc.revokedAt).toBe(as.clock.now());
    const refresh = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token, client_id: code.clientId }));
    expect(await errorOf(refresh)).toBe('invalid_grant');
  });

  it('a used code presented by another client is refused and leaves the grant it produced working', async () => {
    const as = await authorizationServer();
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });
    const { refresh_token } = (await (await redeemCode(as, code)).json()) as { refresh_token: string };
    const other = await registerPublicClient(as);
    const replay = await redeemCode(as, { ...code, clientId: other });
    expect(replay.status).toBe(400);
    expect(await errorOf(replay)).toBe('invalid_grant');
    const [grant] = await as.store.find('grants', 'clientId', code.clientId);
    expect(grant?.doc.revokedAt).toBeUndefined();
    expect((await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token, client_id: code.clientId }))).status).toBe(200);
  });

  it('needs no redirect_uri at /token when /authorize had none (RFC 6749 §4.1.3), but checks one if given', async () => {
    const as = await authorizationServer();
    const implied = await obtainCode(as, { email: 'ada@example.com', resource: DEMO, omitRedirectUri: true });
    expect(await errorOf(await redeemCode(as, implied, { redirect_uri: 'http://127.0.0.1:1/elsewhere' }))).toBe('invalid_grant');
    const again = await obtainCode(as, { email: 'ada@example.com', resource: DEMO, omitRedirectUri: true });
    expect((await redeemCode(as, again, { redirect_uri: null })).status).toBe(200);
  });

  it.each<[string, string, Record<string, string | null>]>([
    ['no redirect_uri when /authorize named one', 'invalid_grant', { redirect_uri: null }],
    ['a wrong PKCE verifier', 'invalid_grant', { code_verifier: pkcePair().verifier }],
    ['a verifier shorter than 43 characters', 'invalid_grant', { code_verifier: 'a'.repeat(42) }],
    ['another redirect_uri', 'invalid_grant', { redirect_uri: 'http://127.0.0.1:1/callback/other' }],
    ['another route as resource', 'invalid_target', { resource: OTHER }],
  ])('refuses %s with %s and creates no grant', async (_name, error, change) => {
    const as = await authorizationServer();
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });
    const res = await redeemCode(as, code, change);
    expect(res.status).toBe(400);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await errorOf(res)).toBe(error);
    expect(await as.store.find('grants', 'clientId', code.clientId)).toEqual([]);
  });

  it('refuses a code presented by another client', async () => {
    const as = await authorizationServer();
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });
    const other = await registerPublicClient(as);
    const res = await redeemCode(as, { ...code, clientId: other });
    expect(await errorOf(res)).toBe('invalid_grant');
  });

  it('refuses a code after code_ttl', async () => {
    const as = await authorizationServer();
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });
    as.clock.advance(as.config.oauth.codeTtl + 1);
    expect(await errorOf(await redeemCode(as, code))).toBe('invalid_grant');
  });
});
