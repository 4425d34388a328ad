import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:net';
import { freePort } from '../cli/dev-backend.ts';
import { Client, SSEClientTransport, StdioClientTransport, StreamableHTTPClientTransport } from '../lib/mcp/sdk.ts';
import type { Transport } from '../lib/mcp/sdk.ts';
import { authorizeWithDevSignIn } from '../test/support/oauth-client.ts';

// What the benchmark measures: the bundled demo server reached directly over stdio (the
// floor), through mcp-front's two route kinds (with real OAuth tokens), and through the
// gateways people would otherwise pick. Every gateway is its own process, as in production.

export const ROOT = resolve(import.meta.dirname, '..');
const DEMO = ['node', 'examples/demo-server/server.ts'];

export interface Target {
  readonly name: string;
  readonly version: string;
  /** The gateway process (RSS is read from it); undefined for the direct floor. */
  readonly pid?: number;
  /** A fresh connected client: connect + initialize. */
  connect(): Promise<{ client: InstanceType<typeof Client>; close(): Promise<void> }>;
  stop(): Promise<void>;
}

function version(pkg: string): string {
  return (JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((done) => {
      const socket = connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => socket.end(() => done(true)));
      socket.once('error', () => done(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listened on ${port}`);
}

function startProcess(argv: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-child.pid!, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
}

async function connectWith(make: () => Transport): Promise<{ client: InstanceType<typeof Client>; close(): Promise<void> }> {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  const transport = make();
  await client.connect(transport);
  return {
    client,
    close: async () => {
      if (transport instanceof StreamableHTTPClientTransport) await transport.terminateSession().catch(() => undefined);
      await client.close();
    },
  };
}

export function directStdio(): Target {
  return {
    name: 'direct stdio (floor)',
    version: `@modelcontextprotocol/sdk ${version('@modelcontextprotocol/sdk')}`,
    connect: () => connectWith(() => new StdioClientTransport({ command: process.execPath, args: DEMO.slice(1), cwd: ROOT })),
    stop: async () => undefined,
  };
}

/** `mcp-front serve` with both demo routes; tokens from the real OAuth flow. Returns one target per route. */
export async function mcpFront(): Promise<{ targets: Target[]; baseUrl: string; pid: number; coldStartMs: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-bench-'));
  const yaml = readFileSync(join(ROOT, 'examples/local.yaml'), 'utf8').replace('routes:', 'routes:').replace(/max_sessions_per_user: \d+/, '');
  const config = join(dir, 'config.yaml');
  writeFileSync(config, yaml.replaceAll('timeout: 5m', 'timeout: 5m\n    max_sessions_per_user: 1000\n    max_sessions_per_instance: 1000'));
  const started = performance.now();
  const child = startProcess([process.execPath, 'cli/mcp-front.ts', 'serve', '--config', config], { MCP_FRONT_PORT: String(port), MCP_FRONT_DATA_DIR: dir });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.resume();
  while (!out.includes('mcp-front is up')) {
    if (child.exitCode !== null) throw new Error(`serve exited: ${out}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const coldStartMs = performance.now() - started;
  const baseUrl = `http://127.0.0.1:${port}`;
  const cookie: { value?: string } = {};
  const own = version('node');
  const targets = await Promise.all(
    ['/demo', '/demo-http'].map(async (path): Promise<Target> => {
      const tokens = await authorizeWithDevSignIn(baseUrl, { email: 'bench@example.com', resource: `${baseUrl}${path}/mcp`, cookie });
      const headers = { authorization: `Bearer ${tokens.access_token}` };
      return {
        name: `mcp-front ${path} (${path === '/demo' ? 'stdio' : 'http'} route)`,
        version: `mcp-front (node ${own})`,
        pid: child.pid,
        connect: () => connectWith(() => new StreamableHTTPClientTransport(new URL(`${baseUrl}${path}/mcp`), { requestInit: { headers } })),
        stop: async () => undefined,
      };
    }),
  );
  return { targets, baseUrl, pid: child.pid!, coldStartMs, stop: () => stopProcess(child) };
}

/**
 * The client side: a stdio client reaching the same mcp-front route through a local bridge,
 * `mcp-front connect` (token seeded in its store, as after `mcp-front login`) or mcp-remote
 * (token passed as a header, its documented way to skip its own sign-in).
 */
export async function stdioBridges(baseUrl: string): Promise<Target[]> {
  const route = `${baseUrl}/demo/mcp`;
  const tokens = await authorizeWithDevSignIn(baseUrl, { email: 'bridge@example.com', resource: route });
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-bench-connect-'));
  const { GrantFile } = await import('../cli/connect/token-store.ts');
  new GrantFile(dir, route).write({ server: route, resource: route, clientId: tokens.clientId, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiresAt: Date.now() + tokens.expires_in * 1000, lifetimeMs: tokens.expires_in * 1000 });
  const stdio = (args: string[], env: Record<string, string> = {}) => () => new StdioClientTransport({ command: process.execPath, args, cwd: ROOT, env: { ...process.env, ...env } as Record<string, string>, stderr: 'ignore' });
  return [
    {
      name: 'mcp-front connect → /demo',
      version: `mcp-front (node ${version('node')})`,
      connect: () => connectWith(stdio(['cli/mcp-front.ts', 'connect', route], { MCP_FRONT_CONNECT_DIR: dir, MCP_FRONT_BROWSER: 'none' })),
      stop: async () => undefined,
    },
    {
      name: 'mcp-remote → /demo',
      version: `mcp-remote ${version('mcp-remote')}`,
      connect: () => connectWith(stdio(['node_modules/mcp-remote/dist/proxy.js', route, '--allow-http', '--transport', 'http-only', '--header', `Authorization: Bearer ${tokens.access_token}`], { MCP_REMOTE_CONFIG_DIR: mkdtempSync(join(tmpdir(), 'mcp-remote-')) })),
      stop: async () => undefined,
    },
  ];
}

export async function supergateway(transport: 'streamableHttp' | 'sse'): Promise<Target> {
  const port = await freePort();
  const argv = [process.execPath, 'node_modules/supergateway/dist/index.js', '--stdio', DEMO.join(' '), '--outputTransport', transport, '--port', String(port), '--logLevel', 'none'];
  if (transport === 'streamableHttp') argv.push('--stateful');
  const child = startProcess(argv);
  child.stdout!.resume();
  child.stderr!.resume();
  await waitForPort(port);
  const url = `http://127.0.0.1:${port}${transport === 'sse' ? '/sse' : '/mcp'}`;
  return {
    name: `supergateway (stdio→${transport === 'sse' ? 'SSE' : 'Streamable HTTP'})`,
    version: `supergateway ${version('supergateway')}`,
    pid: child.pid,
    connect: () => connectWith(() => (transport === 'sse' ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url)))),
    stop: () => stopProcess(child),
  };
}

export async function mcpProxy(): Promise<Target> {
  const port = await freePort();
  const child = startProcess([process.execPath, 'node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs', '--port', String(port), '--host', '127.0.0.1', '--', ...DEMO]);
  child.stdout!.resume();
  child.stderr!.resume();
  await waitForPort(port);
  return {
    name: 'mcp-proxy (stdio→Streamable HTTP)',
    version: `mcp-proxy ${version('mcp-proxy')}`,
    pid: child.pid,
    connect: () => connectWith(() => new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`))),
    stop: () => stopProcess(child),
  };
}

/** Resident memory of one process, in MiB (children are separate processes and not included). */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}
