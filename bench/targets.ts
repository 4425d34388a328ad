import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:net';
import { freePort } from '../cli/dev-backend.ts';
import { Client, SSEClientTransport, StdioClientTransport, StreamableHTTPClientTransport } from '../lib/mcp/sdk.ts';
import type { Transport } from '../lib/mcp/sdk.ts';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { fetch as undiciFetch } from 'undici';
import { collectGarbage, inspectorUrl } from '../test/support/heap.ts';
import { authorizeWithDevSignIn } from '../test/support/oauth-client.ts';
import { startFirestoreEmulator } from '../test/support/firestore-emulator.ts';
import { startInstancePair, type BalancerPolicy } from '../test/support/route-instances.ts';

// What the benchmark measures: the bundled demo server reached directly over stdio (the
// floor) and served by the MCP SDK's own HTTP transport (no gateway), through mcp-front's two
// route kinds (with real OAuth tokens) on one process and on two instances relaying to a
// session's owner, and through the gateways people would otherwise pick. Every gateway is its
// own process, as in production.

export const ROOT = resolve(import.meta.dirname, '..');
const DEMO = ['node', 'examples/demo-server/server.ts'];

export interface Connection {
  readonly client: InstanceType<typeof Client>;
  /** The server process the client itself started (the direct floor only). */
  readonly serverPid?: number;
  close(): Promise<void>;
}

/** What a target is to the others: the references ratios are taken to, mcp-front itself, the peers it is compared with, the client-side bridges. */
export type TargetRole = 'floor' | 'sdk-server' | 'mcp-front' | 'peer' | 'bridge';

export interface Target {
  readonly name: string;
  readonly version: string;
  readonly role: TargetRole;
  /** The gateway processes (CPU and RSS are read from them, summed; their descendants are its children); none for the floor and the client-side bridges. */
  readonly pids: readonly number[];
  /** Whether to measure it with many sessions at once (8 and 32); not for the client-side bridges (a process per session) nor the two-instance pairs (minutes to open). */
  readonly manySessions?: boolean;
  /** A fresh connected client: connect + initialize. */
  connect(): Promise<Connection>;
  /** A full GC in the gateway process, where it can be asked for one (its inspector): memory is then read without garbage in it. */
  collectGarbage?(): Promise<void>;
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

/**
 * The load generator's HTTP client: the SDK's transports on undici 8's fetch. Node 24's own
 * fetch (undici 7) keeps an abort listener per request on the transport's one signal until
 * the Request is collected, and adding each one scans those left (nodejs/undici#5285): a
 * seventh of the client's CPU per call, the same for every target, on the two cores the
 * gateways under test share with it.
 */
const clientFetch: FetchLike = (url, init) =>
  // A Headers of Node's own undici is a foreign object to undici 8, converted field by field: handed over as a plain record.
  undiciFetch(url, { ...init, headers: init?.headers instanceof Headers ? Object.fromEntries(init.headers) : init?.headers } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>;
const streamable = (url: string, headers?: Record<string, string>) => new StreamableHTTPClientTransport(new URL(url), { fetch: clientFetch, ...(headers ? { requestInit: { headers } } : {}) });
const sse = (url: string) => new SSEClientTransport(new URL(url), { fetch: clientFetch });

async function connectWith(make: () => Transport): Promise<Connection> {
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
    role: 'floor',
    version: `@modelcontextprotocol/sdk ${version('@modelcontextprotocol/sdk')}`,
    pids: [],
    connect: async () => {
      const transport = new StdioClientTransport({ command: process.execPath, args: DEMO.slice(1), cwd: ROOT });
      const connection = await connectWith(() => transport);
      return { ...connection, serverPid: transport.pid ?? undefined };
    },
    stop: async () => undefined,
  };
}

/**
 * The MCP SDK's own Streamable HTTP server, no gateway: the demo server's `--http` form
 * (McpServer on the SDK's web-standard transport, one per session, lib/mcp/sdk-sessions.ts),
 * its tools in the same process, stateful sessions, no auth.
 */
export async function sdkServer(): Promise<Target> {
  const port = await freePort();
  const child = startProcess([process.execPath, ...DEMO.slice(1), '--http'], { PORT: String(port) });
  child.stdout!.resume();
  child.stderr!.resume();
  await waitForPort(port);
  return {
    name: 'MCP SDK Streamable HTTP server (no gateway)',
    role: 'sdk-server',
    version: `@modelcontextprotocol/sdk ${version('@modelcontextprotocol/sdk')}`,
    pids: [child.pid!],
    connect: () => connectWith(() => streamable(`http://127.0.0.1:${port}/mcp`)),
    stop: () => stopProcess(child),
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
  // The inspector on a free loopback port, only to ask for a full GC before reading memory.
  const child = startProcess([process.execPath, '--inspect=127.0.0.1:0', 'cli/mcp-front.ts', 'serve', '--config', config], { MCP_FRONT_PORT: String(port), MCP_FRONT_DATA_DIR: dir });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err.length < 4096 ? (err += c.toString()) : undefined));
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
        role: 'mcp-front',
        version: `mcp-front (node ${own})`,
        pids: [child.pid!],
        connect: () => connectWith(() => streamable(`${baseUrl}${path}/mcp`, headers)),
        collectGarbage: async () => {
          const url = inspectorUrl(err);
          if (url) await collectGarbage(url);
        },
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
      role: 'bridge',
      version: `mcp-front (node ${version('node')})`,
      pids: [],
      manySessions: false,
      connect: () => connectWith(stdio(['cli/mcp-front.ts', 'connect', route], { MCP_FRONT_CONNECT_DIR: dir, MCP_FRONT_BROWSER: 'none' })),
      stop: async () => undefined,
    },
    {
      name: 'mcp-remote → /demo',
      role: 'bridge',
      version: `mcp-remote ${version('mcp-remote')}`,
      pids: [],
      manySessions: false,
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
    role: 'peer',
    version: `supergateway ${version('supergateway')}`,
    pids: [child.pid!],
    connect: () => connectWith(() => (transport === 'sse' ? sse(url) : streamable(url))),
    stop: () => stopProcess(child),
  };
}

/** mcp-proxy serving one of its two endpoints (it serves both unless told): Streamable HTTP at /mcp, or SSE at /sse. */
export async function mcpProxy(server: 'stream' | 'sse'): Promise<Target> {
  const port = await freePort();
  const child = startProcess([process.execPath, 'node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs', '--port', String(port), '--host', '127.0.0.1', '--server', server, '--', ...DEMO]);
  child.stdout!.resume();
  child.stderr!.resume();
  await waitForPort(port);
  return {
    name: `mcp-proxy (stdio→${server === 'sse' ? 'SSE' : 'Streamable HTTP'})`,
    role: 'peer',
    version: `mcp-proxy ${version('mcp-proxy')}`,
    pids: [child.pid!],
    connect: () => connectWith(() => (server === 'sse' ? sse(`http://127.0.0.1:${port}/sse`) : streamable(`http://127.0.0.1:${port}/mcp`))),
    stop: () => stopProcess(child),
  };
}

const TWO_INSTANCE_POLICIES: ReadonlyArray<[BalancerPolicy, string]> = [
  ['round-robin', 'mcp-front /demo, 2 instances (alternating balancer)'],
  ['avoid-initializer', 'mcp-front /demo, 2 instances, every call relayed'],
];

/**
 * Two instances of the /demo stdio route (services/route/main.ts, the Cloud Run entrypoint) on
 * the Firestore emulator, behind the tests' loopback balancer (which is also their issuer), one
 * pair per balancer policy: alternating (every other request lands on the instance that does
 * not run the session, and is relayed to its owner) and avoid-initializer (every one is). Each
 * pair has its own emulator project. Stops everything it started when it can't finish.
 */
export async function twoRouteInstances(): Promise<{ targets: Target[]; stop(): Promise<void> } | { skip: string }> {
  const emulator = await startFirestoreEmulator();
  if ('skip' in emulator) return emulator;
  const started: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    for (const end of started.reverse()) await end();
    await emulator.stop();
  };
  let ready = false;
  try {
    const targets: Target[] = [];
    for (const [policy, name] of TWO_INSTANCE_POLICIES) {
      // The lease of the two-instances test is 3 s, to see takeovers quickly; here none should
      // happen, so the default 30 s: a loaded emulator never lets a live owner's lease lapse.
      const route = `    type: stdio\n    command: [${DEMO.join(', ')}]\n    timeout: 5m\n    max_sessions_per_user: 1000\n    max_sessions_per_instance: 1000`;
      const pair = await startInstancePair({ emulatorHost: emulator.host, path: '/demo', route, lease: '30s', project: `demo-mcp-front-bench-${policy}`, policy });
      started.push(() => pair.stop());
      const { balancer } = pair;
      const instances = [pair.a, pair.b];
      const headers = { authorization: `Bearer ${await balancer.token('dev:bench@example.com')}` };
      targets.push({
        name,
        role: 'mcp-front',
        version: `mcp-front (node ${version('node')})`,
        pids: instances.map((i) => i.pid()),
        manySessions: false,
        connect: () => connectWith(() => streamable(balancer.url, headers)),
        stop: async () => undefined,
      });
    }
    ready = true;
    return { targets, stop };
  } finally {
    if (!ready) await stop();
  }
}
