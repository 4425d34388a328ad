import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { systemClock } from '../../lib/clock.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { generateCredentialKey, parseCredentialKeys } from '../../lib/tokens/credential-keys.ts';
import type { KeySet } from '../../lib/tokens/keys.ts';
import { sealForRoute } from '../../lib/tokens/route-credential.ts';
import { startJwksStandIn, type JwksStandIn } from '../support/jwks-stand-in.ts';
import { exitOf } from '../support/stack-process.ts';

// A route with user_credential as deployed: services/route/main.ts, tokens verified against the
// issuer's JWKS, and nothing but its own credential key from the environment (deploy sets it
// from the route's secret). It opens the credential sealed in the token, with no store of the
// authorization server to read, and refuses to start without its key.

const ROOT = join(import.meta.dirname, '../..');
let jwks: JwksStandIn;
let keys: KeySet;
let issuer = '';
let dataDir = '';
let configFile = '';
const routeKey = generateCredentialKey();

beforeAll(async () => {
  jwks = await startJwksStandIn();
  ({ keys, issuer } = jwks);
  dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-route-cred-'));
  configFile = join(dataDir, 'config.yaml');
  writeFileSync(
    configFile,
    `oauth:\n  issuer: ${issuer}\n  provider: dev\n  data_dir: ${dataDir}\nroutes:\n` +
      `  - { path: /svc, type: stdio, command: [${process.execPath}, test/fixtures/tool-server.ts], environment: { TOOL_ECHO_ENV: SVC_TOKEN }, user_credential: { label: Token, instructions: x, env: SVC_TOKEN } }\n`,
  );
});
afterAll(async () => jwks?.close());

async function startRoute(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['services/route/main.ts'], { cwd: ROOT, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', MCP_FRONT_CONFIG: configFile, MCP_FRONT_ROUTE: '/svc', PORT: String(port), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return { child, url: `http://127.0.0.1:${port}`, output: () => out };
}

describe('a deployed route with user_credential', () => {
  it('refuses to start without its credential key, saying which variable', async () => {
    const { child, output } = await startRoute({});
    expect(await exitOf(child)).toBe(1);
    expect(output()).toContain('/svc: user_credential needs MCP_FRONT_CREDENTIAL_KEY_SVC');
  });

  it('opens the credential sealed for it in the token and gives it to the user\'s child', async () => {
    const route = await startRoute({ MCP_FRONT_CREDENTIAL_KEY_SVC: routeKey });
    try {
      for (let i = 0; i < 100 && !route.output().includes('route listening'); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      const cred = sealForRoute(parseCredentialKeys(routeKey, 'key'), { sub: 'dev:ada@example.com', route: '/svc' }, { version: 'v1', value: 'ada-secret-token' });
      const { token } = await signAccessToken(keys.current, issuer, 600_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${issuer}/svc/mcp`, client_id: 'c', scope: 'mcp', cred });
      const client = new Client({ name: 'entrypoint-test', version: '1' });
      const transport = new StreamableHTTPClientTransport(new URL(`${route.url}/svc/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
      await client.connect(transport);
      const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
      expect(JSON.parse(result.content[0]!.text)).toMatchObject({ email: 'ada@example.com', env: { SVC_TOKEN: 'ada-secret-token' } });
      await transport.terminateSession();
      await client.close();
      expect(route.output()).not.toContain('ada-secret-token');
      // The route wrote only session records: no key of its own, nothing of the authorization server's.
      const store = await openSqliteStore({ file: join(dataDir, 'mcp-front.sqlite'), clock: systemClock });
      try {
        expect(await store.list('keys')).toEqual([]);
        expect(await store.list('userCredentials')).toEqual([]);
      } finally {
        await store.close();
      }
    } finally {
      route.child.kill('SIGTERM');
      expect(await exitOf(route.child)).toBe(0);
    }
  });
});

describe('a deployed route during a rotation of its credential key', () => {
  it('with "new,old" in its secret, a token sealed under the old key (issued before) still works, and one under the new key too; a key it does not hold is refused (401)', async () => {
    const newKey = generateCredentialKey();
    const route = await startRoute({ MCP_FRONT_CREDENTIAL_KEY_SVC: `${newKey},${routeKey}` });
    try {
      for (let i = 0; i < 100 && !route.output().includes('route listening'); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      const tokenSealedWith = async (key: string, value: string) => {
        const cred = sealForRoute(parseCredentialKeys(key, 'key'), { sub: 'dev:ada@example.com', route: '/svc' }, { version: 'v1', value });
        return (await signAccessToken(keys.current, issuer, 600_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${issuer}/svc/mcp`, client_id: 'c', scope: 'mcp', cred })).token;
      };
      for (const [key, value] of [[routeKey, 'sealed-under-old'], [newKey, 'sealed-under-new']] as const) {
        const client = new Client({ name: 'entrypoint-test', version: '1' });
        const transport = new StreamableHTTPClientTransport(new URL(`${route.url}/svc/mcp`), { requestInit: { headers: { authorization: `Bearer ${await tokenSealedWith(key, value)}` } } });
        await client.connect(transport);
        const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
        expect(JSON.parse(result.content[0]!.text)).toMatchObject({ env: { SVC_TOKEN: value } });
        await transport.terminateSession();
        await client.close();
      }
      const foreign = await fetch(`${route.url}/svc/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await tokenSealedWith(generateCredentialKey(), 'x')}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
      });
      expect(foreign.status).toBe(401);
    } finally {
      route.child.kill('SIGTERM');
      expect(await exitOf(route.child)).toBe(0);
    }
  });

  it('refuses to start with more keys than the bound, naming the variable', async () => {
    const { child, output } = await startRoute({ MCP_FRONT_CREDENTIAL_KEY_SVC: [1, 2, 3, 4].map(() => generateCredentialKey()).join(',') });
    expect(await exitOf(child)).not.toBe(0);
    expect(output()).toContain('MCP_FRONT_CREDENTIAL_KEY_SVC holds 4 keys, at most 3');
    // One line for the operator, as for any configuration error: no stack trace.
    expect(output()).not.toMatch(/^\s+at /m);
  });
});
