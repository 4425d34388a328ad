import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import Provider from 'oidc-provider';
import type { Page } from 'playwright-core';

// Upstream identity providers on loopback, with the pages a user signs in on, so a browser
// test walks them as a user does: an OpenID provider (oidc-provider, its dev login and consent
// pages) for provider google and oidc, and GitHub's OAuth app flow (a sign-in page, the code
// with PKCE, the user and organisation API). Each knows only the one client it is given.

export interface IdpStandIn {
  /** What the config names: oidc_issuer, or github_url and github_api_url. */
  readonly url: string;
  /** Signs `login` in on the page the browser shows (the stand-in's first); returns once the browser has left it for the client. */
  signIn(page: Page, login: string): Promise<void>;
  close(): Promise<void>;
}

export interface UpstreamClient {
  readonly clientId: string;
  readonly clientSecret: string;
  /** The one callback the client registered (GitHub and OpenID providers match it exactly). */
  readonly redirectUri: string;
}

export interface GithubUser {
  readonly id: number;
  readonly emails: ReadonlyArray<{ email: string; primary: boolean; verified: boolean }>;
  readonly orgs: readonly string[];
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      // Chromium keeps connections open after its context closes.
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

/** An OpenID provider; accounts by login, their claims as the ID token carries them (email, email_verified, hd). */
export async function startOidcStandIn(client: UpstreamClient, accounts: Record<string, Record<string, unknown>>): Promise<IdpStandIn> {
  const server = createServer();
  const url = await listen(server);
  const provider = new Provider(url, {
    clients: [{ client_id: client.clientId, client_secret: client.clientSecret, redirect_uris: [client.redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_post' }],
    claims: { openid: ['sub'], email: ['email', 'email_verified', 'hd'] },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    findAccount: (_ctx: unknown, id: string) => (accounts[id] ? { accountId: id, claims: () => ({ sub: `idp-${id}`, ...accounts[id] }) } : undefined),
    cookies: { keys: [randomBytes(16).toString('hex')] },
  } as never);
  provider.proxy = false;
  server.on('request', provider.callback());
  return {
    url,
    async signIn(page, login) {
      // devInteractions: any password, then its consent page at the same URL.
      await page.fill('input[name="login"]', login);
      await page.fill('input[name="password"]', 'any password');
      await page.click('button[type="submit"]');
      await page.locator('input[name="prompt"][value="consent"]').waitFor({ state: 'attached' });
      await Promise.all([page.waitForURL((u) => u.origin !== url), page.click('button[type="submit"]')]);
    },
    close: closer(server),
  };
}

const attribute = (value: string) => value.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`);

async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return body;
}

/** github.com and api.github.com in one: the OAuth app's authorize page and token endpoint, and the API the gateway reads. */
export async function startGithubStandIn(client: UpstreamClient, users: Record<string, GithubUser>): Promise<IdpStandIn> {
  const codes = new Map<string, { login: string; challenge: string }>();
  const tokens = new Map<string, string>();
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url!, 'http://x');
      const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (url.pathname === '/login/oauth/authorize') {
        // GET shows the sign-in page; its form posts the same parameters back with the user's login.
        const q = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : url.searchParams;
        if (q.get('client_id') !== client.clientId || q.get('redirect_uri') !== client.redirectUri) return void res.writeHead(400).end('The redirect_uri is not associated with this application.');
        if (req.method !== 'POST') {
          const hidden = [...q].map(([k, v]) => `<input type="hidden" name="${attribute(k)}" value="${attribute(v)}">`).join('');
          return void res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>Sign in to GitHub</title><form method="post" action="/login/oauth/authorize">${hidden}<input name="login"><input name="password" type="password"><button type="submit">Sign in and authorize</button></form>`);
        }
        const login = q.get('login') ?? '';
        if (!users[login]) return void res.writeHead(401, { 'content-type': 'text/html' }).end('Incorrect username or password.');
        const code = randomBytes(16).toString('hex');
        codes.set(code, { login, challenge: q.get('code_challenge') ?? '' });
        const back = new URL(client.redirectUri);
        back.search = new URLSearchParams({ code, state: q.get('state') ?? '' }).toString();
        return void res.writeHead(302, { location: back.toString() }).end();
      }
      if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
        const form = new URLSearchParams(await readBody(req));
        const code = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        const verified = code && createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url') === code.challenge;
        if (form.get('client_id') !== client.clientId || form.get('client_secret') !== client.clientSecret || form.get('redirect_uri') !== client.redirectUri || !verified) {
          return send(200, { error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' });
        }
        const token = `gho_${randomBytes(16).toString('hex')}`;
        tokens.set(token, code.login);
        return send(200, { access_token: token, token_type: 'bearer' });
      }
      const login = tokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
      const user = login ? users[login] : undefined;
      if (!login || !user) return send(401, { message: 'Bad credentials' });
      if (url.pathname === '/user') return send(200, { id: user.id, login });
      if (url.pathname === '/user/emails') return send(200, user.emails);
      const org = /^\/user\/memberships\/orgs\/([^/]+)$/.exec(url.pathname)?.[1];
      if (org) return user.orgs.includes(org) ? send(200, { state: 'active', organization: { login: org } }) : send(404, { message: 'Not Found' });
      send(404, { message: 'Not Found' });
    })().catch((err: unknown) => res.headersSent ? res.destroy() : res.writeHead(500).end(String(err)));
  });
  const url = await listen(server);
  return {
    url,
    async signIn(page, login) {
      await page.fill('input[name="login"]', login);
      await page.fill('input[name="password"]', 'any password');
      await Promise.all([page.waitForURL((u) => u.origin !== url), page.click('button[type="submit"]')]);
    },
    close: closer(server),
  };
}
