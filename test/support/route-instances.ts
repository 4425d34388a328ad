import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../cli/dev-backend.ts';
import { systemClock } from '../../lib/clock.ts';
import { serveHandler, type RunningServer } from '../../lib/http/node-server.ts';
import { silentLogger } from '../../lib/log.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { loadKeySet, type KeySet } from '../../lib/tokens/keys.ts';
import { exitOf } from './stack-process.ts';

// Several instances of one route behind a loopback round-robin balancer, as Cloud Run runs
// them behind its load balancer: each instance a `services/route/main.ts` process (the Cloud
// Run entrypoint) on its own port, all on one store and one issuer. The balancer is also the
// issuer: it serves the JWKS the instances verify tokens against. Like Google's balancer, it
// sends nothing to an instance that is down (a refused connection goes to the next one).
// Round-robin by default; `avoid-initializer` sends a session's every request after
// initialize to an instance other than the one that initialized it (its owner), so every
// call is relayed (the benchmark's worst case).

const MAIN = join(import.meta.dirname, '../../services/route/main.ts');

export interface RouteInstance {
  readonly url: string;
  readonly port: number;
  pid(): number;
  output(): string;
  /** SIGKILL: the instance vanishes without a word. */
  kill(): Promise<void>;
  /** Starts it again on the same port (a new process: a new instance id). */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 12 s, Cloud Run's grace and then some); its exit code. */
  stop(): Promise<number | null>;
}

export interface Balancer {
  /** The route's MCP URL through the balancer (the URL tokens are minted for). */
  readonly url: string;
  readonly issuer: string;
  /** Which instance each request went to, in order. */
  readonly sent: number[];
  token(sub?: string): Promise<string>;
  close(): Promise<void>;
}

export type BalancerPolicy = 'round-robin' | 'avoid-initializer';

export async function startBalancer(routePath: string, targets: () => readonly string[], options: { policy?: BalancerPolicy } = {}): Promise<Balancer> {
  const policy = options.policy ?? 'round-robin';
  const keyStore = await openSqliteStore({ file: ':memory:', clock: systemClock });
  const keys: KeySet = await loadKeySet(keyStore, systemClock);
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const sent: number[] = [];
  let next = 0;
  /** Which instance answered each session's initialize (avoid-initializer only). */
  const initializedBy = new Map<string, number>();
  const running: RunningServer = await serveHandler(
    async (req) => {
      const url = new URL(req.url);
      if (url.pathname === '/jwks.json') return Response.json({ keys: keys.published });
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await req.arrayBuffer();
      const all = targets();
      const session = req.headers.get('mcp-session-id');
      const initializer = policy === 'avoid-initializer' && session ? initializedBy.get(session) : undefined;
      for (let tries = 0; tries < all.length; tries++) {
        const index = initializer === undefined ? next++ % all.length : (initializer + 1 + tries) % all.length;
        try {
          const res = await fetch(`${all[index]}${url.pathname}${url.search}`, { method: req.method, headers: req.headers, body, signal: req.signal, redirect: 'manual' });
          sent.push(index);
          const started = res.headers.get('mcp-session-id');
          if (policy === 'avoid-initializer' && !session && started) initializedBy.set(started, index);
          const headers = new Headers(res.headers);
          for (const hop of ['connection', 'keep-alive', 'transfer-encoding', 'content-length']) headers.delete(hop);
          return new Response(res.body, { status: res.status, headers });
        } catch (err) {
          if (req.signal.aborted) throw err;
          // The instance is down: the next one gets the request.
        }
      }
      return new Response('no instance answers', { status: 502 });
    },
    { host: '127.0.0.1', port, log: silentLogger, drainMs: 500 },
  );
  await keyStore.close();
  return {
    url: `${issuer}${routePath}/mcp`,
    issuer,
    sent,
    token: async (sub = 'dev:ada@example.com') =>
      (await signAccessToken(keys.current, issuer, 3_600_000, systemClock, { sub, email: 'ada@example.com', aud: `${issuer}${routePath}/mcp`, client_id: 'test-client', scope: 'mcp' })).token,
    close: () => running.close(),
  };
}

/** One route instance: `services/route/main.ts` with the given config, on a free port. */
export async function startRouteInstance(options: { yaml: string; route: string; env: Record<string, string> }): Promise<RouteInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-instance-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, options.yaml);
  const port = await freePort();
  let child: ChildProcess;
  let out = '';
  const launch = async () => {
    out = '';
    child = spawn(process.execPath, [MAIN], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, ...options.env, MCP_FRONT_CONFIG: file, MCP_FRONT_ROUTE: options.route, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.setEncoding('utf8').on('data', (t: string) => (out += t));
    child.stderr!.setEncoding('utf8').on('data', (t: string) => (out += t));
    const deadline = Date.now() + 60_000;
    while (!out.includes('route listening')) {
      if (child.exitCode !== null) throw new Error(`the route instance exited:\n${out}`);
      if (Date.now() > deadline) throw new Error(`the route instance did not start within 60 s:\n${out}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  await launch();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: () => child.pid!,
    output: () => out,
    async kill() {
      child.kill('SIGKILL');
      await exitOf(child);
    },
    restart: launch,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 12_000);
      const code = await exitOf(child);
      clearTimeout(timer);
      return code;
    },
  };
}

export interface InstancePair {
  readonly balancer: Balancer;
  readonly a: RouteInstance;
  readonly b: RouteInstance;
  /** The config both run. */
  readonly yaml: string;
  /** Stops both (SIGTERM; their exit codes) and the balancer. */
  stop(): Promise<Array<number | null>>;
}

/**
 * Two instances of one route on the Firestore emulator (one store, one issuer) behind a
 * balancer: how the tests, the soak and the benchmark run a route as Cloud Run scales it out.
 * `route` is the route's YAML after its path (lines indented by 4). Whatever started is stopped
 * when the rest can't start.
 */
export async function startInstancePair(options: { emulatorHost: string; path: string; route: string; lease: string; project?: string; policy?: BalancerPolicy }): Promise<InstancePair> {
  const instances: RouteInstance[] = [];
  const balancer = await startBalancer(options.path, () => instances.map((i) => i.url), { policy: options.policy });
  const yaml = `oauth:\n  issuer: ${balancer.issuer}\n  provider: dev\n  storage: firestore\n  gcp_project: ${options.project ?? 'demo-mcp-front'}\nroutes:\n  - path: ${options.path}\n${options.route}\nserver:\n  host: 127.0.0.1\n  session_lease: ${options.lease}\n`;
  const env = { FIRESTORE_EMULATOR_HOST: options.emulatorHost, METADATA_SERVER_DETECTION: 'none' };
  const stop = async () => {
    const codes = await Promise.all(instances.map((i) => i.stop()));
    await balancer.close();
    return codes;
  };
  try {
    for (let i = 0; i < 2; i++) instances.push(await startRouteInstance({ yaml, route: options.path, env }));
  } catch (err) {
    await stop();
    throw err;
  }
  return { balancer, a: instances[0]!, b: instances[1]!, yaml, stop };
}
