import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { systemClock } from '../../lib/clock.ts';
import type { Config } from '../../lib/config/config.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { memoryLogger } from '../../lib/log.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { openServiceTokens } from '../../lib/oauth/service-accounts.ts';
import type { UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { loadCredentialKeys } from '../../lib/tokens/credential-keys.ts';
import { browserSkipReason, launchBrowser } from '../support/browser.ts';
import { authorizeWithDevSignIn, formPost, refreshGrant, send, type TokenResponse } from '../support/oauth-client.ts';
import { startServiceIdp, type ServiceIdp } from '../support/service-idp.ts';
import { storeSnapshot } from '../support/store-snapshot.ts';

// A service account (routes[].user_oauth) connected, reconnected and disconnected from the
// account page in Chromium with JavaScript off, against oidc-provider standing in for the
// service: Connect and Reconnect go through the service's sign-in and come back to the page;
// reconnecting ends the sessions started with the old tokens; Disconnect revokes the refresh
// token at the service (RFC 7009), and a revocation endpoint that fails or hangs still
// disconnects here, saying so. Posts from elsewhere start nothing.

const skip = browserSkipReason();
if (skip) console.log(skip);

const ACCOUNTS: Record<string, Record<string, unknown>> = { ada: { email: 'ada@svc.example' } };
const log = memoryLogger();
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-service-account-'));
let config: Config;
let stack: RunningStack;
let base = '';
let idp: ServiceIdp;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let evil: Server;
let evilOrigin = '';
/** How the service's revocation endpoint misbehaves, while set. */
let revocation: 'fails' | 'hangs' | undefined;
const hanging: ServerResponse[] = [];
/** Every service token the tests saw: none may be in a log line. */
const serviceTokens = new Set<string>();

beforeAll(async () => {
  if (skip) return;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  idp = await startServiceIdp({
    gatewayCallback: `${base}/connect/callback`,
    accounts: ACCOUNTS,
    intercept: (req, res) => {
      if (!revocation || req.url !== idp.revocationPath) return false;
      if (revocation === 'fails') res.writeHead(500).end('down');
      else hanging.push(res);
      return true;
    },
  });
  config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\nroutes:\n` +
      `  - path: /svc\n    type: stdio\n    command: [node, test/fixtures/tool-server.ts]\n    environment: { TOOL_ECHO_ENV: SVC_TOKEN }\n` +
      `    user_oauth: { label: Service account, issuer: "${idp.origin}", client_id: gateway, client_secret: svc-secret, scopes: [openid, email], env: SVC_TOKEN }\n` +
      `  - path: /closed\n    type: stdio\n    command: [node, test/fixtures/tool-server.ts]\n    access: { emails: [someone.else@example.com] }\n` +
      `    user_oauth: { label: Closed account, issuer: "${idp.origin}", client_id: gateway, client_secret: svc-secret, env: SVC_TOKEN }\n` +
      `server:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log, oauthOptions: { serviceFetch: { allowAddress: (a) => a === '127.0.0.1', ca: idp.cert } } });
  browser = await launchBrowser();
  // Another site (localhost is not 127.0.0.1 to a browser) with a Connect form aimed at the account page.
  evil = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form method="post" action="${base}/account"><input type="hidden" name="action" value="connect-service"><input type="hidden" name="route" value="/svc"><input type="hidden" name="csrf" value="guessed"><button id="go">win a prize</button></form>`);
  });
  await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
  evilOrigin = `http://localhost:${(evil.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  for (const res of hanging) res.destroy();
  await browser?.closeAll();
  evil?.close();
  await stack?.close();
  await idp?.close();
  const logged = JSON.stringify(log.lines);
  for (const token of serviceTokens) expect(logged).not.toContain(token);
});

const recordOf = async (email: string) => (await stack.store.find<UserCredentialRecord>('userCredentials', 'email', email)).find((r) => r.doc.route === '/svc')?.doc;

/** The service's tokens as stored for the user, opened with the stack's own keys. */
async function storedServiceTokens(email: string) {
  const record = (await recordOf(email))!;
  const keys = await loadCredentialKeys(stack.store, systemClock, config.routes, {});
  const tokens = openServiceTokens(keys, record, { userSub: record.userSub, route: '/svc' })!;
  serviceTokens.add(tokens.accessToken);
  if (tokens.refreshToken) serviceTokens.add(tokens.refreshToken);
  return tokens;
}

/** A refresh at the service's own token endpoint, as the gateway's client: its status and error. */
async function refreshAtService(refreshToken: string): Promise<{ status: number; error?: string }> {
  return new Promise((resolve, reject) => {
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString();
    const req = httpsRequest(new URL('/token', idp.origin), { method: 'POST', ca: idp.cert, headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('gateway:svc-secret').toString('base64')}` } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode!, ...(r.statusCode !== 200 ? { error: (JSON.parse(Buffer.concat(chunks).toString()) as { error: string }).error } : {}) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}


async function openSession(accessToken: string) {
  const client = new Client({ name: 'service-account-browser-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/svc/mcp`), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
  await client.connect(transport);
  const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
  const seen = (JSON.parse(result.content[0]!.text) as { env: { SVC_TOKEN: string } }).env.SVC_TOKEN;
  serviceTokens.add(seen);
  return { client, transport, seen };
}

/** A call on an existing session with another of our access tokens. */
const callOn = (sessionId: string, accessToken: string) =>
  fetch(`${base}/svc/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami', arguments: {} } }),
  });

/** The dev sign-in in this context, ending on the account page. */
async function signInToAccount(context: BrowserContext, email: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/account`);
  await page.fill('input[name="email"]', email);
  await Promise.all([page.waitForURL((u) => u.pathname === '/account'), page.click('button[type="submit"]')]);
  return page;
}

/** Clicks an account-page button that leads to the service; signs in and consents there as asked; back on the account page. */
async function throughService(page: Page, button: string, login: string): Promise<string> {
  await Promise.all([page.waitForURL((u) => !u.href.startsWith(`${base}/account`) || u.search.startsWith('?done=')), page.click(`button:text-is("${button}")`)]);
  for (let step = 0; step < 8 && !page.url().startsWith(base); step++) {
    const before = page.url();
    if (await page.locator('input[name="login"]').count()) {
      await page.fill('input[name="login"]', login);
      await page.fill('input[name="password"]', 'x');
    }
    await Promise.all([page.waitForURL((u) => u.href !== before), page.click('button[type="submit"]')]);
  }
  return page.url();
}

describe.skipIf(skip)('a service account on the account page, in Chromium with JavaScript off', () => {
  let context: BrowserContext;
  let page: Page;
  let client: TokenResponse & { clientId: string };

  beforeAll(async () => {
    context = await browser.newContext({ javaScriptEnabled: false, ignoreHTTPSErrors: true });
    page = await signInToAccount(context, 'ada@example.com');
  });

  it('connects an account that was never connected: through the service\'s sign-in and back, with a notice; clients then get its token', async () => {
    expect(await page.textContent('body')).toContain('Not connected: connect it here');
    // The page's CSP lets its forms lead to the service's sign-in, and only there.
    const csp = (await (await page.reload())!.headers())['content-security-policy']!;
    expect(csp).toContain(`form-action 'self' ${idp.origin}`);
    const landed = await throughService(page, 'Connect', 'ada');
    expect(landed).toBe(`${base}/account?done=connected`);
    expect(await page.textContent('[role="status"]')).toContain('Your account is connected.');
    expect(await page.textContent('body')).toContain('Connected; its token last renewed');
    expect((await recordOf('ada@example.com'))?.kind).toBe('service-account');

    // An MCP client of the same user is not sent to the service: the connection is there.
    const tokens = await authorizeWithDevSignIn(base, { email: 'ada@example.com', resource: `${base}/svc/mcp` });
    client = { ...tokens, clientId: tokens.clientId };
    const session = await openSession(client.access_token);
    expect(await idp.userOf(session.seen)).toBe('ada');
    await session.client.close();
  });

  it('reconnecting stores new tokens; sessions started with the old ones end at their client\'s next refresh, new ones get the new token', async () => {
    const before = (await recordOf('ada@example.com'))!;
    const old = await openSession(client.access_token);
    const sessionId = old.transport.sessionId!;

    const landed = await throughService(page, 'Reconnect', 'ada');
    expect(landed).toBe(`${base}/account?done=reconnected`);
    expect(await page.textContent('[role="status"]')).toContain('Your account is connected again');
    const after = (await recordOf('ada@example.com'))!;
    expect(after.version).not.toBe(before.version);
    expect(after.sealed).not.toBe(before.sealed);

    const refreshed = await refreshGrant(base, client.clientId, client.refresh_token);
    expect(refreshed.status).toBe(200);
    client = { ...((await refreshed.json()) as TokenResponse), clientId: client.clientId };
    expect((await callOn(sessionId, client.access_token)).status).toBe(404);
    await old.client.close();
    const fresh = await openSession(client.access_token);
    expect(fresh.seen).not.toBe(old.seen);
    expect(await idp.userOf(fresh.seen)).toBe('ada');
    await fresh.client.close();
  });

  it('disconnect revokes the refresh token at the service, deletes it here, and says so', async () => {
    const { refreshToken } = await storedServiceTokens('ada@example.com');
    await Promise.all([page.waitForURL((u) => u.search.startsWith('?done=')), page.click('button:text-is("Disconnect")')]);
    expect(new URL(page.url()).search).toBe('?done=disconnected');
    expect(await page.textContent('[role="status"]')).toContain('the service revoked this gateway\'s access');
    expect(await recordOf('ada@example.com')).toBeUndefined();
    expect(await refreshAtService(refreshToken!)).toEqual({ status: 400, error: 'invalid_grant' });
    const refused = await refreshGrant(base, client.clientId, client.refresh_token);
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_grant');
    expect(await page.textContent('body')).toContain('Not connected: connect it here');
  });

  it.each([['fails', 'answers 500'], ['hangs', 'never answers']] as const)('a revocation endpoint that %s (%s) still disconnects here, and the page says revocation could not be confirmed', async (misbehaviour, _how) => {
    expect(await throughService(page, 'Connect', 'ada')).toBe(`${base}/account?done=connected`);
    const { refreshToken } = await storedServiceTokens('ada@example.com');
    revocation = misbehaviour;
    try {
      const started = Date.now();
      await Promise.all([page.waitForURL((u) => u.search.startsWith('?done='), { timeout: 20_000 }), page.click('button:text-is("Disconnect")')]);
      // Bounded: the gateway gives up on a silent service well before the browser would.
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      revocation = undefined;
    }
    expect(new URL(page.url()).search).toBe('?done=disconnected-unconfirmed');
    expect(await page.textContent('[role="status"]')).toContain('Revocation at the service could not be confirmed');
    expect(await recordOf('ada@example.com')).toBeUndefined();
    // Not revoked there (the endpoint never took it): what the notice warns of.
    expect((await refreshAtService(refreshToken!)).status).toBe(200);
    expect(log.lines.some((l) => l.message === 'service account disconnected, revocation at the service failed' && l.route === '/svc')).toBe(true);
  });

  it('Connect posted without the form token, from another origin or site, for a route the user may not use, or started in another browser session, connects nothing', async () => {
    const cookie = (await context.cookies(base)).find((c) => c.name === 'mcp_front_session')!;
    const session = `${cookie.name}=${cookie.value}`;
    const csrf = (await page.getAttribute('input[name="csrf"]', 'value'))!;
    expect(await page.locator('text=Closed account').count()).toBe(0);
    const before = storeSnapshot(dataDir);
    const post = (fields: Record<string, string>, headers: Record<string, string>) => send(base, '/account', formPost(fields, { cookie: session, ...headers }));
    const attempts: Array<[string, Promise<Response>, number]> = [
      ['no form token', post({ action: 'connect-service', route: '/svc' }, { origin: base }), 403],
      ['another session\'s form token', post({ csrf: 'A'.repeat(43), action: 'connect-service', route: '/svc' }, { origin: base }), 403],
      ['another origin', post({ csrf, action: 'connect-service', route: '/svc' }, { origin: 'https://evil.example' }), 403],
      ['a null origin', post({ csrf, action: 'connect-service', route: '/svc' }, { origin: 'null' }), 403],
      ['a cross-site fetch', post({ csrf, action: 'connect-service', route: '/svc' }, { origin: base, 'sec-fetch-site': 'cross-site' }), 403],
      ['no session', send(base, '/account', formPost({ csrf, action: 'connect-service', route: '/svc' }, { origin: base })), 401],
      ['a route without a service account', post({ csrf, action: 'connect-service', route: '/nope' }, { origin: base }), 404],
      ['a route the user may not use', post({ csrf, action: 'connect-service', route: '/closed' }, { origin: base }), 403],
    ];
    for (const [name, pending, status] of attempts) {
      const res = await pending;
      expect(res.status, name).toBe(status);
      expect(res.headers.get('location'), name).toBeNull();
    }
    expect(storeSnapshot(dataDir)).toBe(before);

    // Another site's form, in the signed-in browser.
    const other = await context.newPage();
    await other.goto(evilOrigin);
    await Promise.all([other.waitForURL((u) => u.href.startsWith(`${base}/account`)), other.click('#go')]);
    expect(await other.textContent('body')).toContain('This form was posted from another site.');
    expect(storeSnapshot(dataDir)).toBe(before);

    // Started in this browser session, finished in another of the same user: refused, and spent.
    const started = await post({ csrf, action: 'connect-service', route: '/svc' }, { origin: base });
    expect(started.status).toBe(303);
    const serviceSignIn = started.headers.get('location')!;
    expect(serviceSignIn.startsWith(`${idp.origin}/auth?`)).toBe(true);
    expect(new URL(serviceSignIn).searchParams.get('redirect_uri')).toBe(`${base}/connect/callback`);
    expect(new URL(serviceSignIn).searchParams.get('code_challenge_method')).toBe('S256');
    const elsewhere = await browser.newContext({ javaScriptEnabled: false, ignoreHTTPSErrors: true });
    const second = await signInToAccount(elsewhere, 'ada@example.com');
    let callback = '';
    second.on('request', (r) => void (r.url().startsWith(`${base}/connect/callback`) && (callback = r.url())));
    await second.goto(serviceSignIn);
    for (let step = 0; step < 8 && !second.url().startsWith(base); step++) {
      const at = second.url();
      if (await second.locator('input[name="login"]').count()) {
        await second.fill('input[name="login"]', 'ada');
        await second.fill('input[name="password"]', 'x');
      }
      await Promise.all([second.waitForURL((u) => u.href !== at), second.click('button[type="submit"]')]);
    }
    expect(callback).toContain('code=');
    expect(await second.textContent('body')).toContain('This connection was started in another browser session.');
    await page.goto(callback);
    expect(await page.textContent('body')).toContain('Connection expired');
    expect(await recordOf('ada@example.com')).toBeUndefined();
    await elsewhere.close();
  });
});
