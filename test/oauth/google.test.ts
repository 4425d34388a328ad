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

// Google Workspace sign-in against a real OpenID provider (oidc-provider, in process) standing
// in for Google: its accounts vary `hd` and `email_verified`. Only a verified account whose
// hd is an allowed domain gets a code; everyone else gets a page that says why.

const ACCOUNTS: Record<string, Record<string, unknown>> = {
  ada: { email: 'ada@example.com', email_verified: true, hd: 'example.com' },
  // A consumer Google account that merely has a company-looking address: no hd claim.
  consumer: { email: 'ada.lovelace@example.com', email_verified: true },
  unverified: { email: 'eve@example.com', email_verified: false, hd: 'example.com' },
  other: { email: 'bob@other.com', email_verified: true, hd: 'other.com' },
};

let idp: Server;
let stack: RunningStack;
let base = '';

beforeAll(async () => {
  const idpPort = await freePort();
  const issuer = `http://127.0.0.1:${idpPort}`;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{ client_id: 'mcp-front', client_secret: 'idp-secret', redirect_uris: [`${base}/callback`], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic' }],
    claims: { openid: ['sub'], email: ['email', 'email_verified', 'hd'] },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    findAccount: (_ctx: unknown, id: string) => (ACCOUNTS[id] ? { accountId: id, claims: () => ({ sub: `g-${id}`, ...ACCOUNTS[id] }) } : undefined),
    cookies: { keys: ['test-cookie-key'] },
  } as never);
  provider.proxy = false;
  if (process.env.DEBUG_SIGNIN) provider.on('server_error', (_ctx: unknown, err: Error) => console.log('IDP ERROR', err));
  idp = createServer(provider.callback());
  await new Promise<void>((resolve) => idp.listen(idpPort, '127.0.0.1', resolve));
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: google\n  oidc_issuer: ${issuer}\n  client_id: mcp-front\n  client_secret: idp-secret\n  allowed_domains: [example.com]\n  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-google-'))}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
}, 30_000);

afterAll(async () => {
  await stack?.close();
  idp?.close();
});

/** The browser's part, by plain HTTP with a cookie jar: our /authorize, the IdP's login and consent, back to /callback. */
async function signIn(login: string): Promise<{ status: number; location?: string; body: string }> {
  const jar = new Map<string, string>();
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
  let res = await go(`${base}/authorize?${new URLSearchParams({ response_type: 'code', client_id: registered.client_id, redirect_uri: 'http://127.0.0.1:1/cb', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', state: 'st', resource: `${base}/demo/mcp` })}`);
  for (let hop = 0; hop < 15; hop++) {
    const location = res.headers.get('location');
    if (location) {
      if (location.startsWith('http://127.0.0.1:1/')) return { status: res.status, location, body: '' };
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
