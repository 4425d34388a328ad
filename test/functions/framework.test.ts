import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { exitOf } from '../support/stack-process.ts';

// The Cloud Function entry (functions/index.ts) under the real Functions Framework, the way
// Cloud Functions gen2 runs it: the same authorization server behind Express.

const ROOT = join(import.meta.dirname, '../..');
const FRAMEWORK = join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js');
let child: ChildProcess;
let base = '';

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-ff-'));
  writeFileSync(join(dir, 'config.yaml'), `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dir}\n  rate_limits: { register: 2 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  trusted_proxies: 2\n`);
  child = spawn(process.execPath, [FRAMEWORK, '--target=oauth', '--source=functions/index.ts', `--port=${port}`], { cwd: ROOT, env: { ...process.env, MCP_FRONT_CONFIG: join(dir, 'config.yaml') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (t: string) => (output += t));
  child.stderr!.setEncoding('utf8').on('data', (t: string) => (output += t));
  for (let i = 0; i < 150 && !output.includes('Serving function'); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(output).toContain('Serving function');
}, 30_000);

afterAll(async () => {
  child?.kill('SIGTERM');
  if (child) await exitOf(child);
});

describe('the oauth Cloud Function under the Functions Framework', () => {
  it('serves the metadata and registers a client', async () => {
    const metadata = (await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json()) as { issuer: string };
    expect(metadata.issuer).toBe(base);
    const registered = await fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) });
    expect(registered.status).toBe(201);
  });

  it('answers a browser client\'s preflight on the metadata, and lets it read a registration error', async () => {
    const preflight = await fetch(`${base}/.well-known/oauth-authorization-server`, { method: 'OPTIONS', headers: { origin: 'https://claude.ai', 'access-control-request-method': 'GET', 'access-control-request-headers': 'mcp-protocol-version' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('mcp-protocol-version');
    const refused = await fetch(`${base}/register`, { method: 'POST', headers: { origin: 'https://claude.ai', 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['javascript:alert(1)'] }) });
    expect(refused.status).toBe(400);
    expect(refused.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('refuses a forwarded Host that carries a path (it must never steer routing)', async () => {
    const res = await fetch(`${base}/.well-known/oauth-authorization-server`, { headers: { 'x-forwarded-host': 'x/token?' } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request');
  });

  it("counts a client by the address Google's load balancer saw, not by a forged first X-Forwarded-For entry", async () => {
    // trusted_proxies: 2, as behind the load balancer: "<what the client sent>, <client>, <lb>".
    const register = (forwardedFor: string) =>
      fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) });
    // Five requests, each with a different forged entry, with a limit of two a minute: even if a
    // minute starts between them (the function's clock is the real one), some must be refused.
    const statuses: number[] = [];
    for (let i = 1; i <= 5; i++) statuses.push((await register(`6.6.6.${i}, 198.51.100.7, 130.211.0.1`)).status);
    expect(statuses[0]).toBe(201);
    expect(statuses).toContain(429);
    // Another client behind the same load balancer has its own count.
    expect((await register('198.51.100.8, 130.211.0.1')).status).toBe(201);
  });
});

describe('the oauth Cloud Function, deployed without a secret the plan mounts', () => {
  it('refuses to start and names what is missing, rather than making keys of its own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcp-front-ff-'));
    // An http route with identity assertions: the function publishes the assertion key.
    writeFileSync(join(dir, 'config.yaml'), `oauth:\n  issuer: http://127.0.0.1:1\n  provider: dev\n  data_dir: ${dir}\nroutes:\n  - { path: /db, type: http, backend: "http://127.0.0.1:9/mcp", identity: assertion }\n`);
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, MCP_FRONT_CONFIG: join(dir, 'config.yaml'), K_SERVICE: 'mcp-front-oauth', MCP_FRONT_SIGNING_KEY: 'set, though not checked here' };
    delete env.MCP_FRONT_ASSERTION_KEY;
    delete env.FUNCTIONS_EMULATOR;
    const failing = spawn(process.execPath, [FRAMEWORK, '--target=oauth', '--source=functions/index.ts', `--port=${port}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    failing.stdout!.setEncoding('utf8').on('data', (t: string) => (output += t));
    failing.stderr!.setEncoding('utf8').on('data', (t: string) => (output += t));
    const timer = setTimeout(() => failing.kill('SIGKILL'), 30_000);
    const code = await exitOf(failing);
    clearTimeout(timer);
    expect(code).not.toBe(0);
    expect(output).toContain('refusing to start: MCP_FRONT_ASSERTION_KEY not set');
    expect(output).not.toContain('Serving function');
  }, 40_000);
});
