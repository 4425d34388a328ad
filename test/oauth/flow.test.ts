import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { systemClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/log.ts';
import { createAccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import { sha256 } from '../../lib/random.ts';
import { authorizeWithDevSignIn, refreshTokens, registerPublicClient } from '../support/oauth-client.ts';

// The authorization server over real HTTP: the code flow, replay, rotation, and the errors a
// client must get right. The store is the real SQLite one; its contents are checked directly.

let stack: RunningStack;
let base = '';
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-oauth-'));

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\n  refresh_grace: 2s\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n  - { path: /other, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
});
afterAll(async () => stack?.close());

const form = (values: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(values).toString() });

describe('authorization code flow', () => {
  it('issues an ES256 access token whose audience is the route, verifiable with the JWKS', async () => {
    const tokens = await authorizeWithDevSignIn(base, { email: 'Ada@Example.com', resource: `${base}/demo/mcp` });
    const jwks = (await (await fetch(`${base}/jwks.json`)).json()) as { keys: [] };
    const verifier = createAccessTokenVerifier({ issuer: base, keys: jwks.keys, clock: systemClock });
    const claims = await verifier.verify(tokens.access_token, [`${base}/demo/mcp`]);
    expect(claims).toMatchObject({ sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${base}/demo/mcp`, client_id: tokens.clientId, scope: 'mcp' });
    await expect(verifier.verify(tokens.access_token, [`${base}/other/mcp`])).rejects.toThrow('another resource');
    // Only hashes at rest.
    expect(await stack.store.get('refreshTokens', tokens.refresh_token)).toBeUndefined();
    expect(await stack.store.get('refreshTokens', sha256(tokens.refresh_token))).toBeDefined();
  });

  it('a replayed code is refused and revokes the grant it produced', async () => {
    const first = await authorizeWithDevSignIn(base, { email: 'grace@example.com', resource: `${base}/demo/mcp` });
    const replay = await fetch(`${base}/token`, form({ grant_type: 'authorization_code', code: first.code, redirect_uri: first.redirectUri, client_id: first.clientId, code_verifier: first.verifier }));
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_grant');
    const grants = await stack.store.find<{ revokedAt?: number; revokedReason?: string }>('grants', 'clientId', first.clientId);
    expect(grants).toHaveLength(1);
    expect(grants[0]!.doc.revokedReason).toBe('authorization code replayed');
    await expect(refreshTokens(base, first.clientId, first.refresh_token)).rejects.toThrow(/revoked/);
  });

  it('rotates refresh tokens; the previous one works within the grace window, and reuse after it revokes the grant', async () => {
    const tokens = await authorizeWithDevSignIn(base, { email: 'linus@example.com', resource: `${base}/demo/mcp` });
    const second = await refreshTokens(base, tokens.clientId, tokens.refresh_token);
    expect(second.refresh_token).not.toBe(tokens.refresh_token);
    const retried = await refreshTokens(base, tokens.clientId, tokens.refresh_token); // a client retrying a lost response
    expect(retried.refresh_token).not.toBe(second.refresh_token);
    await expect(refreshTokens(base, tokens.clientId, second.refresh_token)).rejects.toThrow(/invalid_grant/); // superseded by the retry
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await expect(refreshTokens(base, tokens.clientId, tokens.refresh_token)).rejects.toThrow(/invalid_grant/);
    await expect(refreshTokens(base, tokens.clientId, retried.refresh_token)).rejects.toThrow(/revoked/);
  });

  it('one sign-in serves a second route: the browser session skips the sign-in page', async () => {
    const cookie: { value?: string } = {};
    await authorizeWithDevSignIn(base, { email: 'barbara@example.com', resource: `${base}/demo/mcp`, cookie });
    const clientId = await registerPublicClient(base);
    const res = await fetch(`${base}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: `${base}/other/mcp` })}`, { redirect: 'manual', headers: { cookie: cookie.value! } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toContain('/consent?request=');
  });
});

describe('errors a client must get right', () => {
  const authorizeUrl = (params: Record<string, string>) => `${base}/authorize?${new URLSearchParams(params)}`;
  const good = async () => ({
    response_type: 'code',
    client_id: await registerPublicClient(base),
    redirect_uri: 'http://127.0.0.1:1/callback',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
    state: 's1',
    resource: `${base}/demo/mcp`,
  });

  it('an unknown client or an unregistered redirect_uri gets a page, never a redirect', async () => {
    const params = await good();
    for (const bad of [{ ...params, client_id: 'nope' }, { ...params, redirect_uri: 'http://127.0.0.1:1/callback/other' }, { ...params, redirect_uri: 'https://attacker.example/cb' }]) {
      const res = await fetch(authorizeUrl(bad), { redirect: 'manual' });
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
      expect(res.headers.get('content-type')).toContain('text/html');
    }
  });

  it.each([
    ['plain PKCE', { code_challenge_method: 'plain' }, 'invalid_request'],
    ['no PKCE', { code_challenge: '' }, 'invalid_request'],
    ['a resource that is not a route', { resource: 'https://elsewhere.example/mcp' }, 'invalid_target'],
    ['response_type token', { response_type: 'token' }, 'unsupported_response_type'],
    ['an unknown scope', { scope: 'admin' }, 'invalid_scope'],
  ])('%s goes back to the client as %s, with state and iss', async (_name, change, error) => {
    const params = { ...(await good()), ...change };
    const res = await fetch(authorizeUrl(params), { redirect: 'manual' });
    expect(res.status).toBe(303);
    const location = new URL(res.headers.get('location')!);
    expect(location.origin + location.pathname).toBe('http://127.0.0.1:1/callback');
    expect(location.searchParams.get('error')).toBe(error);
    expect(location.searchParams.get('state')).toBe('s1');
    expect(location.searchParams.get('iss')).toBe(base);
  });

  it('refuses a consent POST whose CSRF token does not match', async () => {
    const cookie: { value?: string } = {};
    await authorizeWithDevSignIn(base, { email: 'mallory@example.com', resource: `${base}/demo/mcp`, cookie });
    const params = { ...(await good()), resource: `${base}/other/mcp` };
    const consent = await fetch(authorizeUrl(params), { redirect: 'manual', headers: { cookie: cookie.value! } });
    const page = await (await fetch(consent.headers.get('location')!, { headers: { cookie: cookie.value! } })).text();
    const request = /name="request" value="([^"]+)"/.exec(page)![1]!;
    const res = await fetch(`${base}/consent`, { ...form({ request, csrf: 'forged', decision: 'allow' }), redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie.value! } });
    expect(res.status).toBe(403);
    expect(res.headers.get('location')).toBeNull();
  });

  it.each([
    ['a JSON body', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"refresh_token"}' }, 400, 'invalid_request'],
    ['a duplicated parameter', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&grant_type=authorization_code&client_id=x' }, 400, 'invalid_request'],
    ['an unknown client', form({ grant_type: 'refresh_token', refresh_token: 'x', client_id: 'nobody' }), 401, 'invalid_client'],
    ['an oversized body', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=refresh_token&x=${'a'.repeat(20_000)}` }, 413, 'invalid_request'],
  ])('/token refuses %s with the RFC 6749 error', async (_name, init, status, error) => {
    const res = await fetch(`${base}/token`, init as RequestInit);
    expect(res.status).toBe(status);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(((await res.json()) as { error: string }).error).toBe(error);
  });

  it('/register refuses unsafe redirect URIs', async () => {
    for (const uri of ['http://example.com/cb', 'javascript:alert(1)', 'https://ok.example/cb#frag', 'file:///etc/passwd', 'https://user:pw@ok.example/cb']) {
      const res = await fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [uri] }) });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_redirect_uri');
    }
  });
});

describe('offboarding', () => {
  it('`mcp-front revoke --user` ends the user\'s grants: refresh fails, other users are untouched', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { writeFileSync } = await import('node:fs');
    const alice = await authorizeWithDevSignIn(base, { email: 'alice@example.com', resource: `${base}/demo/mcp` });
    const bob = await authorizeWithDevSignIn(base, { email: 'bob@example.com', resource: `${base}/demo/mcp` });
    const dir = mkdtempSync(join(tmpdir(), 'mcp-front-revoke-'));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\n`);
    const { stdout } = await promisify(execFile)(process.execPath, ['cli/mcp-front.ts', 'revoke', '--config', config, '--user', 'Alice@Example.com']);
    expect(stdout).toContain('revoked 1 grant of Alice@Example.com');
    await expect(refreshTokens(base, alice.clientId, alice.refresh_token)).rejects.toThrow(/invalid_grant/);
    expect((await refreshTokens(base, bob.clientId, bob.refresh_token)).access_token).toBeTruthy();
  });
});
