import { statSync } from 'node:fs';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, StdioClientTransport } from '../../lib/mcp/sdk.ts';
import { CLI, startStackProcess, type StackProcess } from '../support/stack-process.ts';
import { stillPresent } from '../support/process-table.ts';
import { browserSkipReason, devSignInInBrowser } from '../support/browser.ts';

// `mcp-front connect` against the local stack: two processes for one route share one sign-in
// (driven in headless Chromium from the URL `connect` prints), the token file is 0600, and calls
// keep working across access-token expiry without a new sign-in.

const YAML = `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
  token_ttl: 3s
routes:
  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }
server:
  port: \${MCP_FRONT_PORT}
`;

let stack: StackProcess;
const dir = mkdtempSync(join(tmpdir(), 'mcp-front-connect-'));
beforeAll(async () => {
  stack = await startStackProcess({ yaml: YAML });
});
afterAll(async () => stack?.stop());

/** The browser's part: the printed URL → dev sign-in → consent → the loopback callback of `connect`. */
async function completeSignIn(authUrl: string, email: string): Promise<void> {
  let cookie = '';
  const go = async (url: string, init: RequestInit = {}) => {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), cookie, origin: stack.baseUrl } });
    const set = res.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0]!;
    return res;
  };
  const form = (body: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body).toString() });
  let res = await go(authUrl);
  for (let hop = 0; hop < 8; hop++) {
    const location = res.headers.get('location');
    if (location?.includes('/callback?')) {
      expect((await fetch(location)).status).toBe(200); // connect's listener
      return;
    }
    if (location) {
      res = await go(location);
      continue;
    }
    const html = await res.text();
    const field = (name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)![1]!;
    res = html.includes('name="email"')
      ? await go(`${stack.baseUrl}/signin`, form({ request: field('request'), csrf: field('csrf'), email }))
      : await go(`${stack.baseUrl}/consent`, form({ request: field('request'), csrf: field('csrf'), decision: 'allow' }));
  }
  throw new Error('sign-in did not reach the callback');
}

function connectClient(url: string) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'connect', url],
    env: { ...process.env, MCP_FRONT_CONNECT_DIR: dir, MCP_FRONT_BROWSER: 'none' } as Record<string, string>,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return { transport, client: new Client({ name: 'connect-test', version: '1' }), stderr: () => stderr };
}

describe('mcp-front connect', () => {
  it('two processes share one sign-in, store the token 0600, and keep working after the token expires', async () => {
    const url = `${stack.baseUrl}/demo/mcp`;
    const first = connectClient(url);
    const second = connectClient(url);
    const connecting = Promise.all([first.client.connect(first.transport), second.client.connect(second.transport)]);
    // Exactly one of them signs in: it prints the URL; the other waits for the shared grant.
    let printed: string | undefined;
    for (let i = 0; i < 200 && !printed; i++) {
      printed = /sign in to \S+ in your browser: (\S+)/.exec(first.stderr() + second.stderr())?.[1];
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(printed).toBeDefined();
    if (browserSkipReason()) await completeSignIn(printed!, 'ada@example.com'); // no Chromium here: the same steps by HTTP
    else expect(await devSignInInBrowser(printed!, 'ada@example.com')).toContain('Signed in');
    await connecting;
    expect((first.stderr() + second.stderr()).match(/sign in to/g)).toHaveLength(1);

    for (const { client } of [first, second]) expect((await client.listTools()).tools.map((t) => t.name)).toContain('echo');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(1);
    expect(statSync(join(dir, files[0]!)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);

    await new Promise((r) => setTimeout(r, 3500)); // past token_ttl
    expect(await first.client.callTool({ name: 'echo', arguments: { text: 'still here' } })).toEqual({ content: [{ type: 'text', text: 'still here' }] });
    expect(await second.client.callTool({ name: 'echo', arguments: { text: 'me too' } })).toEqual({ content: [{ type: 'text', text: 'me too' }] });
    expect((first.stderr() + second.stderr()).match(/sign in to/g)).toHaveLength(1);

    const pids = [first.transport.pid, second.transport.pid].filter((p): p is number => p !== null);
    await first.client.close();
    await second.client.close();
    await new Promise((r) => setTimeout(r, 500));
    expect(stillPresent(pids)).toEqual([]);
  }, 60_000);

  it.each([
    ['a javascript: authorization endpoint', { authorization_endpoint: 'javascript:alert(1)' }, 'authorization_endpoint must be https (or http on loopback), not javascript:'],
    ['a file: authorization endpoint', { authorization_endpoint: 'file:///etc/passwd' }, 'authorization_endpoint must be https'],
    ['shell metacharacters in the authorization endpoint', { authorization_endpoint: 'https://as.example/$(touch /tmp/mcp-front-pwned)`id`' }, 'authorization_endpoint is not a plain URL'],
    ['a metadata document naming another issuer', { issuer: 'https://evil.example' }, 'names issuer "https://evil.example"'],
    ['no PKCE S256', { code_challenge_methods_supported: ['plain'] }, 'does not offer PKCE S256'],
    ['a huge metadata document', { padding: 'x'.repeat(300 * 1024) }, 'more than 256 KiB'],
  ])('refuses a server with %s: clear message, nothing opened, nothing stored', async (_name, override, message) => {
    const { createServer } = await import('node:http');
    const hostile = createServer((req, res) => {
      const base = `http://127.0.0.1:${(hostile.address() as { port: number }).port}`;
      res.setHeader('content-type', 'application/json');
      if (req.url === '/mcp') {
        res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"` });
        return res.end('{}');
      }
      if (req.url?.startsWith('/.well-known/oauth-protected-resource')) return res.end(JSON.stringify({ resource: `${base}/mcp`, authorization_servers: [base] }));
      if (req.url === '/.well-known/oauth-authorization-server') {
        return res.end(JSON.stringify({ issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`, registration_endpoint: `${base}/register`, code_challenge_methods_supported: ['S256'], ...override }));
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
    const hostileDir = mkdtempSync(join(tmpdir(), 'mcp-front-hostile-'));
    try {
      const { execFile } = await import('node:child_process');
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        // MCP_FRONT_BROWSER=follow would fetch whatever it is handed: it must never be handed anything.
        execFile(process.execPath, [CLI, 'login', `http://127.0.0.1:${(hostile.address() as { port: number }).port}/mcp`], { env: { ...process.env, MCP_FRONT_CONNECT_DIR: hostileDir, MCP_FRONT_BROWSER: 'follow' } }, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(message);
      expect(result.stderr).not.toContain('sign in to');
      expect(readdirSync(hostileDir).filter((f) => f.endsWith('.json'))).toEqual([]);
    } finally {
      hostile.close();
    }
  });

  it('falls back to the legacy SSE transport when the server refuses the initialize POST', async () => {
    const url = `${stack.baseUrl}/demo/sse`;
    const legacy = connectClient(url);
    const connecting = legacy.client.connect(legacy.transport);
    let printed: string | undefined;
    for (let i = 0; i < 200 && !printed; i++) {
      printed = /in your browser: (\S+)/.exec(legacy.stderr())?.[1];
      await new Promise((r) => setTimeout(r, 50));
    }
    await completeSignIn(printed!, 'ada@example.com');
    await connecting;
    expect(await legacy.client.callTool({ name: 'echo', arguments: { text: 'over sse' } })).toEqual({ content: [{ type: 'text', text: 'over sse' }] });
    await legacy.client.close();
  }, 30_000);

  it('survives the server restarting mid-session, and fails fast (no hang) when it is gone', async () => {
    const url = `${stack.baseUrl}/demo/mcp`;
    const one = connectClient(url);
    await one.client.connect(one.transport); // signed in already by the first test: no browser
    expect(await one.client.callTool({ name: 'echo', arguments: { text: 'before' } })).toEqual({ content: [{ type: 'text', text: 'before' }] });
    const port = Number(new URL(stack.baseUrl).port);
    const dataDir = stack.dataDir;
    await stack.kill();
    stack = await startStackProcess({ yaml: YAML, port, dataDir });
    expect(await one.client.callTool({ name: 'echo', arguments: { text: 'after restart' } })).toEqual({ content: [{ type: 'text', text: 'after restart' }] });
    await stack.stop();
    await expect(one.client.callTool({ name: 'echo', arguments: { text: 'gone' } })).rejects.toThrow(/mcp-front connect/);
    const pid = one.transport.pid!;
    await one.client.close();
    await new Promise((r) => setTimeout(r, 500));
    expect(stillPresent([pid])).toEqual([]);
    stack = await startStackProcess({ yaml: YAML, port, dataDir }); // for afterAll
  }, 60_000);
});

describe('connect refuses a forged sign-in answer', () => {
  /** A small authorization server whose "browser" step answers with whatever `answer` says. */
  async function fakeServer(answer: (redirect: URL, state: string) => void) {
    const { createServer } = await import('node:http');
    const server = createServer((req, res) => {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const url = new URL(req.url!, base);
      res.setHeader('content-type', 'application/json');
      if (url.pathname === '/mcp') return void res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"` }).end('{}');
      if (url.pathname.startsWith('/.well-known/oauth-protected-resource')) return void res.end(JSON.stringify({ resource: `${base}/mcp`, authorization_servers: [base] }));
      if (url.pathname === '/.well-known/oauth-authorization-server') {
        return void res.end(JSON.stringify({ issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`, registration_endpoint: `${base}/register`, code_challenge_methods_supported: ['S256'], authorization_response_iss_parameter_supported: true }));
      }
      if (url.pathname === '/register') return void res.writeHead(201).end(JSON.stringify({ client_id: 'c1' }));
      if (url.pathname === '/authorize') {
        const redirect = new URL(url.searchParams.get('redirect_uri')!);
        answer(redirect, url.searchParams.get('state')!);
        return void res.writeHead(302, { location: redirect.toString() }).end();
      }
      if (url.pathname === '/token') return void res.end(JSON.stringify({ access_token: 'should-never-be-stored', token_type: 'Bearer', expires_in: 3600 }));
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/mcp` };
  }

  it.each([
    ['an iss naming another server (RFC 9207 mix-up)', (r: URL, state: string) => r.search = new URLSearchParams({ code: 'x', state, iss: 'https://evil.example' }).toString(), 'the sign-in answer came from https://evil.example'],
    ['a wrong state (the listener ignores it, so the sign-in times out)', (r: URL) => r.search = new URLSearchParams({ code: 'x', state: 'forged', iss: r.origin }).toString(), 'no sign-in within 2 s'],
  ])('refuses %s and stores no token', async (_name, answer, message) => {
    const fake = await fakeServer(answer);
    const tokenDir = mkdtempSync(join(tmpdir(), 'mcp-front-forged-'));
    try {
      const { execFile } = await import('node:child_process');
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [CLI, 'login', fake.url], { env: { ...process.env, MCP_FRONT_CONNECT_DIR: tokenDir, MCP_FRONT_BROWSER: 'follow', MCP_FRONT_SIGNIN_TIMEOUT: '2' } }, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(message);
      const stored = readdirSync(tokenDir).filter((f) => f.endsWith('.json')).map((f) => readFileSync(join(tokenDir, f), 'utf8')).join('');
      expect(stored).not.toContain('should-never-be-stored');
    } finally {
      fake.server.close();
    }
  }, 20_000);
});
