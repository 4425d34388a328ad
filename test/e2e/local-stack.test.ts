import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { startStackProcess, type StackProcess } from '../support/stack-process.ts';
import { descendantsOf, stillPresent } from '../support/process-table.ts';
import { browserSkipReason, launchBrowser } from '../support/browser.ts';

// The walking skeleton end to end, as a user and an MCP client see it: `serve` as a real
// process, DCR, /authorize → dev sign-in → consent in headless Chromium, PKCE code
// exchange, the MCP SDK client on both routes, refresh rotation, and a clean SIGTERM.

const skip = browserSkipReason();
if (skip) console.warn(skip);

const yaml = readFileSync('examples/local.yaml', 'utf8').replace('refresh_ttl: 30d', 'refresh_ttl: 30d\n  refresh_grace: 0s');

interface Tokens {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

describe.skipIf(skip)('local stack end to end', () => {
  let stack: StackProcess;
  let callback: Server;
  let callbackUrl: string;
  const received: URLSearchParams[] = [];
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  let page: Page;
  let clientId: string;
  const seenChildren = new Set<number>();

  beforeAll(async () => {
    stack = await startStackProcess({ yaml });
    // The client's redirect target (RFC 8252 loopback redirect), which records what it got.
    callback = createServer((req, res) => {
      // Only the redirect counts: Chromium also asks this origin for /favicon.ico.
      const url = new URL(req.url!, 'http://x');
      if (url.pathname === '/callback') received.push(url.searchParams);
      res.end('signed in');
    });
    await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
    callbackUrl = `http://127.0.0.1:${(callback.address() as { port: number }).port}/callback`;
    browser = await launchBrowser();
    page = await (await browser.newContext()).newPage();
  });

  afterAll(async () => {
    await browser?.closeAll();
    callback?.close();
    if (stack) await stack.stop();
  });

  const post = (path: string, body: Record<string, string>) =>
    fetch(stack.baseUrl + path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) });

  async function authorize(resource: string, expectSignIn: boolean): Promise<Tokens> {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(8).toString('hex');
    const url = new URL(stack.baseUrl + '/authorize');
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: callbackUrl,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state,
      resource,
      scope: 'mcp',
    }).toString();
    const before = received.length;
    await page.goto(url.toString());
    if (expectSignIn) {
      await page.fill('input[name="email"]', 'ada@example.com');
      await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/signin')), page.click('button[type="submit"], input[type="submit"]')]);
    } else {
      expect(new URL(page.url()).pathname).not.toBe('/signin');
    }
    expect(await page.content()).toContain('/demo');
    await Promise.all([page.waitForURL((u) => u.toString().startsWith(callbackUrl)), page.click('button[name="decision"][value="allow"]')]);
    expect(received.length).toBe(before + 1);
    const query = received.at(-1)!;
    expect(query.get('state')).toBe(state);
    expect(query.get('iss')).toBe(stack.baseUrl);
    const response = await post('/token', {
      grant_type: 'authorization_code',
      code: query.get('code')!,
      redirect_uri: callbackUrl,
      client_id: clientId,
      code_verifier: verifier,
      resource,
    });
    expect(response.status).toBe(200);
    return (await response.json()) as Tokens;
  }

  async function callEcho(route: string, token: string, text: string): Promise<unknown> {
    const client = new Client({ name: 'e2e', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${stack.baseUrl}${route}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
    await client.connect(transport);
    for (const child of descendantsOf(stack.pid)) seenChildren.add(child.pid);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name).sort()).toEqual(['add', 'big', 'echo', 'slow']);
    const result = await client.callTool({ name: 'echo', arguments: { text } });
    await transport.terminateSession();
    await client.close();
    return result;
  }

  let demo: Tokens;
  let demoHttp: Tokens;

  it('registers a client by DCR', async () => {
    const response = await fetch(stack.baseUrl + '/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'E2E client', redirect_uris: [callbackUrl], token_endpoint_auth_method: 'none' }),
    });
    expect(response.status).toBe(201);
    clientId = ((await response.json()) as { client_id: string }).client_id;
    expect(clientId).toBeTruthy();
  });

  it('signs in with the dev provider and consents in Chromium, then exchanges the code with PKCE', async () => {
    demo = await authorize(`${stack.baseUrl}/demo/mcp`, true);
    expect(demo.token_type).toBe('Bearer');
    expect(demo.refresh_token).toBeTruthy();
  });

  it('calls echo on the stdio route with the MCP SDK client', async () => {
    expect(await callEcho('/demo', demo.access_token, 'hello stdio')).toEqual({ content: [{ type: 'text', text: 'hello stdio' }] });
  });

  it('authorizes the second route in the same browser without signing in again', async () => {
    demoHttp = await authorize(`${stack.baseUrl}/demo-http/mcp`, false);
    expect(await callEcho('/demo-http', demoHttp.access_token, 'hello http')).toEqual({ content: [{ type: 'text', text: 'hello http' }] });
  });

  it('refuses a /demo token on /demo-http with 401 and the resource metadata header', async () => {
    const response = await fetch(`${stack.baseUrl}/demo-http/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${demo.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain(`resource_metadata="${stack.baseUrl}/.well-known/oauth-protected-resource/demo-http/mcp"`);
  });

  it('rotates the refresh token, and the old one stops working', async () => {
    const first = await post('/token', { grant_type: 'refresh_token', refresh_token: demo.refresh_token, client_id: clientId });
    expect(first.status).toBe(200);
    const rotated = (await first.json()) as Tokens;
    expect(rotated.refresh_token).not.toBe(demo.refresh_token);
    expect(await callEcho('/demo', rotated.access_token, 'after refresh')).toEqual({ content: [{ type: 'text', text: 'after refresh' }] });
    const reused = await post('/token', { grant_type: 'refresh_token', refresh_token: demo.refresh_token, client_id: clientId });
    expect(reused.status).toBe(400);
    expect(((await reused.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('exits 0 on SIGTERM and leaves no child process behind', async () => {
    for (const child of descendantsOf(stack.pid)) seenChildren.add(child.pid);
    expect(seenChildren.size).toBeGreaterThan(0); // at least the dev backend
    const code = await stack.stop();
    expect(code).toBe(0);
    expect(stillPresent([...seenChildren])).toEqual([]);
  });
});
