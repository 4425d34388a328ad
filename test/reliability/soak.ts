import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parseDuration } from '../../lib/config/duration.ts';
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { authorizeWithDevLogin } from '../support/oauth-client.ts';
import { collectGarbage, inspectorUrl } from '../support/heap.ts';
import { descendantsOf } from '../support/process-table.ts';
import { startStackProcess, type StackProcess } from '../support/stack-process.ts';

// The soak: a real `mcp-front serve` process under bounded churn on loopback. Workers open MCP
// sessions over Streamable HTTP and legacy SSE on both route kinds (stdio: a child per session;
// http: a proxied backend), make a few calls each and close them, and one session in ten
// vanishes mid-call (no DELETE, connection dropped) for the idle reaper to clean up. Every few
// seconds the gateway's RSS, open file descriptors, live child processes and zombies are
// sampled from /proc. After the load stops, the run waits for the reaper and samples again.

export interface SoakOptions {
  readonly durationMs: number;
  readonly workers: number;
  readonly sampleMs: number;
  /** Samples before this are warm-up; RSS after warm-up is the baseline. */
  readonly warmupMs: number;
  readonly idleTimeout: string;
  readonly log?: (line: string) => void;
}

export interface Sample {
  /** Seconds since the load started. */
  readonly t: number;
  readonly phase: 'warm-up' | 'rest' | 'load';
  readonly calls: number;
  readonly errors: number;
  readonly sessions: number;
  readonly p99Ms: number | null;
  readonly rssMiB: number;
  readonly fds: number;
  readonly children: number;
  readonly zombies: number;
}

export interface SoakResult {
  readonly samples: Sample[];
  readonly totals: { sessions: number; vanished: number; calls: number; errors: number; byKind: Record<string, number>; errorKinds: Record<string, number> };
  readonly latency: { p50: number; p99: number; max: number };
  readonly exitCode: number | null;
  readonly leftAfterExit: number;
  /** At rest: before any load, after the warm-up (the baseline), and after the soak. */
  readonly before: RestPoint;
  readonly baseline: RestPoint;
  readonly end: RestPoint;
  /** Zombie pids seen in two samples in a row (an exited child nobody reaped); transient ones are normal. */
  readonly persistentZombies: number[];
}

export interface RestPoint {
  readonly sample: Sample;
  readonly fds: Record<string, number>;
}

const YAML = (idle: string) => `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
  rate_limits: { register: 100000, authorize: 100000, token: 100000 }
routes:
  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts], timeout: 30s, idle_timeout: ${idle}, max_sessions_per_user: 100000, max_sessions_per_instance: 100000 }
  - path: /demo-http
    type: http
    dev_backend: { command: [node, examples/demo-server/server.ts, --http], path: /mcp }
    timeout: 30s
    idle_timeout: ${idle}
    max_sessions_per_user: 100000
    max_sessions_per_instance: 100000
server:
  port: \${MCP_FRONT_PORT}
`;

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

const TCP_STATES: Record<string, string> = { '01': 'established', '06': 'time-wait', '08': 'close-wait', '0A': 'listening' };

/** TCP sockets by inode, named by state and direction (from /proc/net/tcp and tcp6): what a socket fd is. */
function tcpSockets(pid: number): Map<string, string> {
  const rows: Array<{ inode: string; state: string; local: number; remote: number }> = [];
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      rows.push({ inode: f[9]!, state: TCP_STATES[f[3]!] ?? f[3]!, local: parseInt(f[1]!.split(':')[1]!, 16), remote: parseInt(f[2]!.split(':')[1]!, 16) });
    }
  }
  const listening = new Set(rows.filter((r) => r.state === 'listening').map((r) => r.local));
  // Ephemeral ports are left out so equal kinds add up; the well-known side is named.
  return new Map(
    rows.map((r) => [r.inode, r.state === 'listening' ? `tcp listening :${r.local}` : listening.has(r.local) ? `tcp ${r.state} in to :${r.local}` : `tcp ${r.state} out to :${r.remote}`]),
  );
}

/** Open fds by kind (TCP by state and port, pipe, anon_inode:[eventfd], a file path …): where growth would show. */
export function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  const tcp = tcpSockets(pid);
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const kind = (inode && tcp.get(inode)) || target.replace(/:\[\d+\]$/, '').replace(/^\/tmp\/[^/]+\//, '<data dir>/');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => undefined);
  // The inspector on a free loopback port, only to ask for a full GC before measuring at rest.
  const stack: StackProcess = await startStackProcess({ yaml: YAML(options.idleTimeout), nodeArgs: ['--inspect=127.0.0.1:0'] });
  const inspector = inspectorUrl(stack.output());
  const base = stack.baseUrl;
  const tokens: Record<string, string> = {};
  for (const path of ['/demo', '/demo-http']) {
    for (const transport of ['mcp', 'sse']) {
      tokens[`${path}/${transport}`] = (await authorizeWithDevLogin(base, { email: 'soak@example.com', resource: `${base}${path}/${transport}` })).accessToken;
    }
  }

  const latencies: number[] = [];
  let windowLatencies: number[] = [];
  const totals = { sessions: 0, vanished: 0, calls: 0, errors: 0, byKind: {} as Record<string, number>, errorKinds: {} as Record<string, number> };
  let open = 0;
  const fail = (what: string, err: unknown) => {
    totals.errors++;
    const key = `${what}: ${String((err as Error)?.message ?? err).slice(0, 80)}`;
    totals.errorKinds[key] = (totals.errorKinds[key] ?? 0) + 1;
  };

  async function session(worker: number, n: number): Promise<void> {
    const path = n % 2 === 0 ? '/demo' : '/demo-http';
    const kind = n % 3 === 0 ? 'sse' : 'mcp';
    // One session in ten, on both route kinds (n is odd for /demo-http, even for /demo).
    const vanish = n % 20 === 7 || n % 20 === 14;
    const auth = { authorization: `Bearer ${tokens[`${path}/${kind}`]}` };
    const transport =
      kind === 'mcp'
        ? new StreamableHTTPClientTransport(new URL(`${base}${path}/mcp`), { requestInit: { headers: auth } })
        : new SSEClientTransport(new URL(`${base}${path}/sse`), {
            requestInit: { headers: auth },
            eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) },
          });
    const client = new Client({ name: `soak-${worker}`, version: '1' });
    totals.sessions++;
    totals.byKind[`${path} ${kind === 'mcp' ? 'Streamable HTTP' : 'SSE'}`] = (totals.byKind[`${path} ${kind === 'mcp' ? 'Streamable HTTP' : 'SSE'}`] ?? 0) + 1;
    open++;
    try {
      await client.connect(transport);
      await echoCalls(client, `w${worker}-s${n}`, 1 + (n % 5), {
        latency: (ms) => (latencies.push(ms), windowLatencies.push(ms), totals.calls++),
        wrong: (err) => fail('wrong answer', err),
      });
      if (vanish) {
        totals.vanished++;
        await vanishMidCall(client);
        return;
      }
      if (transport instanceof StreamableHTTPClientTransport) await transport.terminateSession();
      await client.close();
    } catch (err) {
      fail(`${path} ${kind}`, err);
      await client.close().catch(() => undefined);
    } finally {
      open--;
    }
  }

  const samples: Sample[] = [];
  const started = Date.now();
  let lastZombies = new Set<number>();
  const persistentZombies = new Set<number>();
  const sample = (phase: Sample['phase']) => {
    const sorted = [...windowLatencies].sort((a, b) => a - b);
    windowLatencies = [];
    const procs = descendantsOf(stack.pid);
    const zombies = new Set(procs.filter((p) => p.state === 'Z').map((p) => p.pid));
    for (const pid of zombies) if (lastZombies.has(pid)) persistentZombies.add(pid);
    lastZombies = zombies;
    const s: Sample = {
      t: Math.round((Date.now() - started) / 100) / 10,
      phase,
      calls: totals.calls,
      errors: totals.errors,
      sessions: open,
      p99Ms: sorted.length ? Math.round(quantile(sorted, 0.99) * 100) / 100 : null,
      rssMiB: Math.round(rssMiB(stack.pid) * 10) / 10,
      fds: fdCount(stack.pid),
      // The http route's dev backend is a long-lived child too: the floor is one.
      children: procs.filter((p) => p.state !== 'Z').length,
      zombies: procs.filter((p) => p.state === 'Z').length,
    };
    samples.push(s);
    log(`t=${s.t}s ${phase} calls=${s.calls} errors=${s.errors} open=${s.sessions} p99=${s.p99Ms}ms rss=${s.rssMiB}MiB fds=${s.fds} children=${s.children} zombies=${s.zombies}`);
  };

  const rest = async () => {
    await dropClientConnections();
    // No load: sessions that vanished are reaped at idle_timeout. Sample until then and a bit.
    const until = Date.now() + parseIdle(options.idleTimeout) * 2 + 10_000;
    while (Date.now() < until) {
      sample('rest');
      await new Promise((resolve) => setTimeout(resolve, options.sampleMs));
    }
    // Open fds are counted before the inspector connection the GC needs; RSS after the GC.
    const fds = fdKinds(stack.pid);
    const fdCount = Object.values(fds).reduce((a, b) => a + b, 0);
    if (inspector) await collectGarbage(inspector);
    sample('rest');
    return { sample: { ...samples.at(-1)!, fds: fdCount }, fds };
  };
  const load = async (phase: 'warm-up' | 'load', ms: number) => {
    sample(phase);
    const sampler = setInterval(() => sample(phase), options.sampleMs);
    const deadline = Date.now() + ms;
    await Promise.all(
      Array.from({ length: options.workers }, async (_, worker) => {
        for (let n = worker; Date.now() < deadline; n += options.workers) await session(worker, n);
      }),
    );
    clearInterval(sampler);
  };

  // The sign-ins above left the driver's keep-alive connections open: not the server's own.
  await dropClientConnections();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const before = { sample: (sample('rest'), samples.at(-1)!), fds: fdKinds(stack.pid) };
  await load('warm-up', options.warmupMs);
  const baseline = await rest();
  await load('load', options.durationMs - options.warmupMs);
  const end = await rest();
  if (process.env.SOAK_DEBUG) {
    for (const p of descendantsOf(stack.pid)) log(`left at rest: ${p.pid} ppid=${p.ppid} ${p.state} ${readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);
    // Sessions the server started and never ended, by its own log lines.
    const lines = stack.output().split('\n');
    const ended = new Set(lines.filter((l) => l.includes('"session ended"')).map((l) => /"session":"([^"]+)"/.exec(l)?.[1]));
    for (const l of lines) if (l.includes('"session started"') && !ended.has(/"session":"([^"]+)"/.exec(l)?.[1])) log(`never ended: ${l.slice(0, 300)}`);
    for (const l of lines) if (l.includes('"level":"warn"') || l.includes('"level":"error"')) log(`server said: ${l.slice(0, 300)}`);
  }
  const everything = descendantsOf(stack.pid).map((p) => p.pid);
  const exitCode = await stack.stop();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const leftAfterExit = everything.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }).length;
  const sorted = [...latencies].sort((a, b) => a - b);
  return { samples, totals, latency: { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? 0 }, exitCode, leftAfterExit, before, baseline, end, persistentZombies: [...persistentZombies] };
}

/** `calls` echo calls on one session, each answer checked against what was sent. */
export async function echoCalls(client: InstanceType<typeof Client>, label: string, calls: number, record: { latency(ms: number): void; wrong(err: Error): void }): Promise<void> {
  for (let i = 0; i < calls; i++) {
    const text = `${label}-c${i}`;
    const started = performance.now();
    const result = (await client.callTool({ name: 'echo', arguments: { text } })) as { content: Array<{ text: string }> };
    record.latency(performance.now() - started);
    if (result.content[0]?.text !== text) record.wrong(new Error(JSON.stringify(result).slice(0, 80)));
  }
}

/** A call the client never waits for: it drops the connection with the call in flight and never comes back. */
export async function vanishMidCall(client: InstanceType<typeof Client>): Promise<void> {
  const abort = new AbortController();
  const call = client.callTool({ name: 'slow', arguments: { ms: 2_000 } }, undefined, { signal: abort.signal }).catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 30));
  abort.abort();
  await call;
  await client.close();
}

/**
 * The driver's own idle keep-alive connections to the server are open fds of the server too:
 * drop them (a fresh global fetch dispatcher) before measuring at rest.
 */
async function dropClientConnections(): Promise<void> {
  const key = Symbol.for('undici.globalDispatcher.1');
  const slot = globalThis as unknown as Record<symbol, { close(): Promise<void>; constructor: new () => unknown } | undefined>;
  const current = slot[key];
  if (!current) return;
  slot[key] = new current.constructor() as typeof current;
  await current.close();
}

function parseIdle(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new Error(`idle timeout ${value} is not a duration`);
  return ms;
}
