import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import type { UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { browserSkipReason, launchBrowser } from '../support/browser.ts';
import { startRedirectTarget, type RedirectTarget } from '../support/browser-authorization.ts';
import { formPost, pkcePair, refreshGrant, registerPublicClient, send } from '../support/oauth-client.ts';

// The consent page's credential field and the account page in Chromium with JavaScript off:
// everything works as plain forms. A page on another site that posts to /account is refused and
// changes nothing.

const skip = browserSkipReason();
if (skip) console.log(skip);

let stack: RunningStack;
let base = '';
let redirect: RedirectTarget;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let evil: Server;
let evilOrigin = '';

beforeAll(async () => {
  if (skip) return;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-account-'))}\nroutes:\n` +
      `  - { path: /svc, type: stdio, command: [node, test/fixtures/tool-server.ts], user_credential: { label: Service token, instructions: "Settings → Tokens", env: SVC_TOKEN } }\n` +
      `server:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
  redirect = await startRedirectTarget();
  browser = await launchBrowser();
  // Another site (localhost is not 127.0.0.1 to a browser) with a form aimed at the account page.
  evil = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form method="post" action="${base}/account"><input type="hidden" name="action" value="sign-out"><input type="hidden" name="csrf" value="guessed"><button id="go">win a prize</button></form>`);
  });
  await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
  evilOrigin = `http://localhost:${(evil.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  await browser?.closeAll();
  await redirect?.close();
  evil?.close();
  await stack?.close();
});

async function credentialOf(email: string): Promise<UserCredentialRecord | undefined> {
  return (await stack.store.find<UserCredentialRecord>('userCredentials', 'email', email))[0]?.doc;
}

describe.skipIf(skip)('consent and account pages in Chromium, JavaScript off', () => {
  let context: BrowserContext;
  let clientId = '';
  let refreshToken = '';

  beforeAll(async () => {
    context = await browser.newContext({ javaScriptEnabled: false });
  });

  it('the consent page takes the credential; the code that follows gets a token', async () => {
    clientId = await registerPublicClient(base, redirect.uri, 'Browser test client');
    const { verifier, challenge } = pkcePair();
    const page = await context.newPage();
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirect.uri, code_challenge: challenge, code_challenge_method: 'S256', state: 's1', resource: `${base}/svc/mcp` });
    await page.goto(`${base}/authorize?${query}`);
    await page.fill('input[name="email"]', 'ada@example.com');
    await Promise.all([page.waitForURL((u) => u.pathname === '/consent'), page.click('button[type="submit"]')]);
    expect(await page.textContent('legend')).toBe('Your Service token for /svc');
    // Allow with the field empty: the browser's own validation keeps the form (no script needed).
    await page.click('button[value="allow"]');
    expect(new URL(page.url()).pathname).toBe('/consent');
    await page.fill('input[name="credential-svc"]', 'svc-token-in-browser');
    await Promise.all([page.waitForURL((u) => u.href.startsWith(redirect.uri)), page.click('button[value="allow"]')]);
    const code = redirect.received.get('s1')!.get('code')!;
    const token = await send(base, '/token', formPost({ grant_type: 'authorization_code', code, redirect_uri: redirect.uri, client_id: clientId, code_verifier: verifier, resource: `${base}/svc/mcp` }));
    expect(token.status).toBe(200);
    refreshToken = ((await token.json()) as { refresh_token: string }).refresh_token;
    expect(await credentialOf('ada@example.com')).toBeDefined();
    await page.close();
  });

  it('the account page lists the client and the credential, with the same CSP as the other pages', async () => {
    const page = await context.newPage();
    const response = await page.goto(`${base}/account`);
    const csp = response!.headers()['content-security-policy']!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("form-action 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    const text = (await page.textContent('body'))!;
    expect(text).toContain('Signed in as ada@example.com');
    expect(text).toContain('Browser test client');
    expect(text).toContain('Your Service token for /svc');
    expect(text).toContain('Stored, last given');
    await page.close();
  });

  it('replacing the credential from the page stores a new version', async () => {
    const before = (await credentialOf('ada@example.com'))!;
    const page = await context.newPage();
    await page.goto(`${base}/account`);
    await page.fill('input[name="credential-svc"]', 'svc-token-replaced');
    await Promise.all([page.waitForURL((u) => u.search === '?done=saved'), page.click('button:text("Replace")')]);
    expect(await page.textContent('[role="status"]')).toContain('Your credential is stored');
    const after = (await credentialOf('ada@example.com'))!;
    expect(after.version).not.toBe(before.version);
    expect(after.sealed).not.toBe(before.sealed);
    await page.close();
  });

  it('a form on another site posting to the account page is refused and signs nobody out', async () => {
    const page = await context.newPage();
    await page.goto(evilOrigin);
    await Promise.all([page.waitForURL((u) => u.href.startsWith(`${base}/account`)), page.click('#go')]);
    expect(await page.textContent('body')).toContain('This form was posted from another site.');
    await page.goto(`${base}/account`);
    expect(await page.textContent('body')).toContain('Signed in as ada@example.com');
    await page.close();
  });

  it('revoke ends the client\'s access at its next refresh; sign out ends the browser session', async () => {
    const page = await context.newPage();
    await page.goto(`${base}/account`);
    await Promise.all([page.waitForURL((u) => u.search === '?done=revoked'), page.click('button:text("Revoke")')]);
    expect(await page.textContent('body')).toContain('No client is connected.');
    const refused = await refreshGrant(base, clientId, refreshToken);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_grant');

    await Promise.all([page.waitForLoadState(), page.click('button:text("Sign out of this browser")')]);
    expect(await page.textContent('h1')).toBe('Signed out');
    await page.goto(`${base}/account`);
    expect(new URL(page.url()).pathname).toBe('/signin');
    await page.close();
  });
});
