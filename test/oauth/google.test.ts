import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { redeemForRefreshToken, refreshOutcome } from '../support/oauth-client.ts';

// Google Workspace sign-in against a real OpenID provider (oidc-provider, in process) standing
// in for Google: its accounts vary `hd` and `email_verified`. Only a verified account whose
// hd is an allowed domain gets a code; everyone else gets a page that says why.

const ACCOUNTS: Record<string, Record<string, unknown>> = {
  ada: { email: 'ada@example.com', email_verified: true, hd: 'example.com' },
  // Changed by the re-check tests (moved out of the domain, deleted).
  grace: { email: 'grace@example.com', email_verified: true, hd: 'example.com' },
  linus: { email: 'linus@example.com', email_verified: true, hd: 'example.com' },
  // A consumer Google account that merely has a company-looking address: no hd claim.
  consumer: { email: 'ada.lovelace@example.com', email_verified: true },
  unverified: { email: 'eve@example.com', email_verified: false, hd: 'example.com' },
  other: { email: 'bob@other.com', email_verified: true, hd: 'other.com' },
};

let idp: Server;
let idpPort = 0;
/** Requests for the IdP's signing keys (its jwks_uri), over the whole file. */
let jwksFetches = 0;
let stack: RunningStack;
let base = '';

beforeAll(async () => {
  idpPort = await freePort();
  const issuer = `http://127.0.0.1:${idpPort}`;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{ client_id: 'mcp-front', client_secret: 'idp-secret', redirect_uris: [`${base}/callback`], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_post' }],
    claims: { openid: ['sub'], email: ['email', 'email_verified', 'hd'] },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    findAccount: (_ctx: unknown, id: string) => (ACCOUNTS[id] ? { accountId: id, claims: () => ({ sub: `g-${id}`, ...ACCOUNTS[id] }) } : undefined),
    cookies: { keys: ['test-cookie-key'] },
  } as never);
  provider.proxy = false;
  if (process.env.DEBUG_SIGNIN) provider.on('server_error', (_ctx: unknown, err: Error) => console.log('IDP ERROR', err));
  const serveIdp = provider.callback();
  idp = createServer((req, res) => {
    if (new URL(req.url!, issuer).pathname === '/jwks') jwksFetches++;
    return serveIdp(req, res);
  });
  await new Promise<void>((resolve) => idp.listen(idpPort, '127.0.0.1', resolve));
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: google\n  oidc_issuer: ${issuer}\n  client_id: mcp-front\n  client_secret: idp-secret\n  allowed_domains: [example.com]\n  upstream_recheck: 0s\n  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-google-'))}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n  - { path: /other, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
}, 30_000);

afterAll(async () => {
  await stack?.close();
  idp?.close();
});

/** The browser's part, by plain HTTP with a cookie jar: our /authorize, the IdP's login and consent, back to /callback. */
async function signIn(login: string, route = '/demo', jar = new Map<string, string>()): Promise<{ status: number; location?: string; body: string; clientId?: string; verifier?: string }> {
  const go = async (url: string, init: RequestInit = {}) => {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const [name, ...value] = pair!.split('=');
      jar.set(name!.trim(), value.join('='));
    }
    return res;
  };
  const registered = (await (await fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) })).json()) as { client_id: string };
  const verifier = randomBytes(32).toString('base64url');
  let res = await go(`${base}/authorize?${new URLSearchParams({ response_type: 'code', client_id: registered.client_id, redirect_uri: 'http://127.0.0.1:1/cb', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', state: 'st', resource: `${base}${route}/mcp` })}`);
  for (let hop = 0; hop < 15; hop++) {
    const location = res.headers.get('location');
    if (location) {
      if (location.startsWith('http://127.0.0.1:1/')) return { status: res.status, location, body: '', clientId: registered.client_id, verifier };
      res = await go(new URL(location, res.url || base).toString());
      continue;
    }
    const html = await res.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const url = new URL(action ?? '/', res.url);
    if (html.includes('name="login"')) res = await go(url.toString(), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ prompt: 'login', login, password: 'x' }).toString() });
    else if (html.includes('name="decision"')) {
      const fields = Object.fromEntries([...html.matchAll(/name="(request|csrf)" value="([^"]+)"/g)].map((m) => [m[1]!, m[2]!]));
      res = await go(`${base}/consent`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base }, body: new URLSearchParams({ ...fields, decision: 'allow' }).toString() });
    } else if (/\/interaction\/[^/]+\/confirm/.test(action ?? '') || html.includes('prompt') && action) {
      res = await go(url.toString(), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ prompt: 'consent' }).toString() });
    } else {
      if (process.env.DEBUG_SIGNIN) console.log(res.status, res.url, html.slice(0, 600));
      return { status: res.status, body: html };
    }
  }
  throw new Error('sign-in did not finish');
}

describe('Google Workspace sign-in (oidc-provider stand-in)', () => {
  it('lets in a verified account of an allowed Workspace domain', async () => {
    const result = await signIn('ada');
    expect(result.location).toBeDefined();
    expect(new URL(result.location!).searchParams.get('code')).toBeTruthy();
  });

  it.each([
    ['an account without hd, even with a company-looking email', 'consumer', 'not a Google Workspace account'],
    ['an unverified email', 'unverified', 'not a verified email'],
    ['another Workspace domain', 'other', 'not in an allowed domain'],
  ])('refuses %s with a page that says why, and issues no code', async (_name, login, reason) => {
    const result = await signIn(login);
    expect(result.location).toBeUndefined();
    expect(result.status).toBe(403);
    expect(result.body).toContain(reason);
  });
});

/** Signs in at the stand-in and redeems the code: the client's refresh token. */
async function tokensFor(login: string): Promise<{ clientId: string; refreshToken: string }> {
  const result = await signIn(login);
  const code = new URL(result.location!).searchParams.get('code')!;
  return redeemForRefreshToken(base, { code, verifier: result.verifier!, clientId: result.clientId!, redirectUri: 'http://127.0.0.1:1/cb' });
}

const refresh = (clientId: string, refreshToken: string) => refreshOutcome(base, clientId, refreshToken);

const grantOf = async (clientId: string) => (await stack.store.find<{ revokedAt?: number; revokedReason?: string; upstream?: string }>('grants', 'clientId', clientId))[0]!.doc;

describe('each refresh asks the identity provider again (upstream_recheck: 0s)', () => {
  it('keeps the provider refresh token only sealed, and refreshes while the user is still allowed', async () => {
    const { clientId, refreshToken } = await tokensFor('ada');
    const grant = await grantOf(clientId);
    expect(grant.upstream).toMatch(/^v1\./);
    const again = await refresh(clientId, refreshToken);
    expect(again.status).toBe(200);
    expect(again.body.refresh_token).toBeTruthy();
  });

  it('a second route authorized from the AS session (no new upstream sign-in) keeps the Workspace domain and the provider credential', async () => {
    const jar = new Map<string, string>();
    await signIn('ada', '/demo', jar);
    const second = await signIn('ada', '/other', jar);
    const { clientId, refreshToken } = await redeemForRefreshToken(base, { code: new URL(second.location!).searchParams.get('code')!, verifier: second.verifier!, clientId: second.clientId!, redirectUri: 'http://127.0.0.1:1/cb' });
    const grant = (await stack.store.find<{ hd?: string; upstream?: string }>('grants', 'clientId', clientId))[0]!.doc;
    expect(grant.hd).toBe('example.com');
    expect(grant.upstream).toBeTruthy();
    expect((await refresh(clientId, refreshToken)).status).toBe(200);
  });

  it('refuses the refresh of a user moved out of the allowed Workspace domain at the IdP, and ends the grant', async () => {
    const { clientId, refreshToken } = await tokensFor('grace');
    ACCOUNTS.grace = { ...ACCOUNTS.grace, hd: 'elsewhere.com' };
    const res = await refresh(clientId, refreshToken);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_grant');
    expect(res.body.error_description).toContain('not in an allowed domain');
    expect((await grantOf(clientId)).revokedReason).toContain('not in an allowed domain');
  });

  it('answers 503 with Retry-After while the IdP is down, keeps the grant, and refreshes once it is back', async () => {
    const { clientId, refreshToken } = await tokensFor('ada');
    await new Promise<void>((resolve) => idp.close(() => resolve()));
    idp.closeAllConnections();
    const down = await refresh(clientId, refreshToken);
    expect(down.status).toBe(503);
    expect(down.body.error).toBe('temporarily_unavailable');
    expect(down.retryAfter).toBe('5');
    expect((await grantOf(clientId)).revokedAt).toBeUndefined();
    await new Promise<void>((resolve) => idp.listen(idpPort, '127.0.0.1', resolve));
    const back = await refresh(clientId, refreshToken);
    expect(back.status).toBe(200);
  });

  it('refuses the refresh of a user deleted at the IdP (their provider refresh token is refused)', async () => {
    const { clientId, refreshToken } = await tokensFor('linus');
    delete ACCOUNTS.linus;
    const res = await refresh(clientId, refreshToken);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_grant');
    expect(res.body.error_description).toContain('identity provider no longer accepts');
    expect((await grantOf(clientId)).revokedAt).toBeDefined();
  });
});

describe("the IdP's signing keys", () => {
  it('are fetched once and cached, not on every sign-in and re-check', async () => {
    const { clientId, refreshToken } = await tokensFor('ada');
    expect((await refresh(clientId, refreshToken)).status).toBe(200);
    await tokensFor('ada');
    // Every sign-in and re-check in this file verified an ID token with the same keys.
    expect(jwksFetches).toBe(1);
  });
});
