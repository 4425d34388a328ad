import { cpus, totalmem } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { cpuWindow, descendantPids, rssKiB } from './process-usage.ts';
import { renderResults, type Row, type RunInfo } from './report.ts';
import { directStdio, mcpFront, mcpProxy, ROOT, sdkServer, stdioBridges, supergateway, twoRouteInstances, type Connection, type Target } from './targets.ts';
import { countedCallsPerToolCall, oauthFunctionColdStart, routeServiceColdStart, TOKEN_PROVIDER, tokenThroughput } from './server-metrics.ts';

// `npm run bench [-- --quick]`: every target and metric in one run on this machine, written to
// bench/RESULTS.md (a table with ratios to the direct stdio floor, and the targets' ratios to
// the references) and bench/results.json. `--check`: whether those were measured at HEAD.
// Bounded loops only; nothing here is a test and nothing here asserts a threshold.

const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();

if (process.argv.includes('--check')) {
  const measured = (JSON.parse(readFileSync(join(ROOT, 'bench/results.json'), 'utf8')) as { commit: string; date: string }).commit;
  const head = git('rev-parse', '--short', 'HEAD');
  // The commit that records a run follows the one measured: what changed since, besides results, makes it stale.
  const RESULTS = new Set(['bench/RESULTS.md', 'bench/results.json', 'bench/profile/TOP.md', 'bench/profile/stdio-route.cpuprofile', 'test/reliability/RESULTS.md', 'test/reliability/soak.json', 'test/reliability/soak.png']);
  const changed = measured.endsWith('+changes') ? ['(uncommitted changes)'] : git('diff', '--name-only', measured, 'HEAD').split('\n').filter((f) => f && !RESULTS.has(f));
  const current = changed.length === 0;
  process.stdout.write(current ? `current: measured at ${measured}; nothing but results changed up to HEAD (${head})\n` : `stale: measured at ${measured}, HEAD is ${head}, ${changed.length} files changed since (${changed.slice(0, 3).join(', ')}${changed.length > 3 ? ', …' : ''})\n`);
  process.exit(current ? 0 : 1);
}

const quick = process.argv.includes('--quick');
/** The commit measured; "+changes" when the working tree differs from it (a result nobody can reproduce from the log). */
const commit = `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? '+changes' : ''}`;
// --quick: smaller samples, 25 open sessions, and too short a pause for memory to settle.
// settleMs: V8's memory reducer shrinks an idle process's heap ~10 s after its last burst of
// work (seen on this VM); RSS read before that includes garbage the next minute collects.
const N = quick ? { setup: 5, echo: 150, big: 30, seconds: 0.5, sessions: 25, settleMs: 2000 } : { setup: 30, echo: 1000, big: 200, seconds: 3, sessions: 100, settleMs: 12_000 };

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const round = (x: number) => Math.round(x * 100) / 100;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const echo = { name: 'echo', arguments: { text: 'hello' } };

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const start = performance.now();
  const value = await fn();
  return [performance.now() - start, value];
}

/** One set-up: connect, initialize, list the tools; the session is closed after it is timed. */
async function setupOnce(target: Target): Promise<number> {
  const [ms, session] = await timed(async () => {
    const s = await target.connect();
    await s.client.listTools();
    return s;
  });
  await session.close();
  return ms;
}

const floor = directStdio();

async function measure(target: Target): Promise<Row> {
  const setup: number[] = [];
  // Each set-up paired with one of the floor's (spawning the demo server directly) just before
  // it: the difference is what the target adds, free of the drift of a shared machine.
  const overFloor: number[] = [];
  for (let i = 0; i < N.setup; i++) {
    const base = target.role === 'floor' ? undefined : await setupOnce(floor);
    const ms = await setupOnce(target);
    setup.push(ms);
    if (base !== undefined) overFloor.push(ms - base);
  }
  // Memory before the load below: its garbage, collected while sessions open, would hide their growth.
  const memory = target.pids.length ? await sessionMemory(target) : {};
  const session = await target.connect();
  const { client } = session;
  for (let i = 0; i < 50; i++) await client.callTool({ name: 'echo', arguments: { text: 'warm' } });
  const echoes: number[] = [];
  for (let i = 0; i < N.echo; i++) echoes.push((await timed(() => client.callTool(echo)))[0]);
  const big: number[] = [];
  for (let i = 0; i < N.big; i++) big.push((await timed(() => client.callTool({ name: 'big', arguments: { kb: 100 } })))[0]);
  // Throughput: C calls in flight on one session, for a fixed time; CPU counted over the C=8 window.
  const children = () => (target.pids.length ? descendantPids(target.pids) : session.serverPid ? [session.serverPid] : []);
  const throughput: Record<number, number> = {};
  const cpu: Pick<Row, 'gatewayCpuUs' | 'childrenCpuUs' | 'clientCpuUs'> = {};
  for (const c of [1, 8, 32]) {
    let done = 0;
    const [gateway, servers, clientCpu] = [cpuWindow(() => target.pids), cpuWindow(children), process.cpuUsage()];
    const until = performance.now() + N.seconds * 1000;
    await Promise.all(
      Array.from({ length: c }, async () => {
        while (performance.now() < until) {
          await client.callTool({ name: 'echo', arguments: { text: 'x' } });
          done++;
        }
      }),
    );
    throughput[c] = Math.round(done / N.seconds);
    if (c !== 8) continue;
    const [gatewayUs, childrenUs, clientUs] = [gateway.end(), servers.end(), cpuOf(process.cpuUsage(clientCpu))];
    if (gatewayUs !== undefined) cpu.gatewayCpuUs = Math.round(gatewayUs / done);
    if (childrenUs !== undefined) cpu.childrenCpuUs = Math.round(childrenUs / done);
    cpu.clientCpuUs = Math.round(clientUs / done);
  }
  await session.close();
  const sessions: Pick<Row, 'sessionsThroughput' | 'wrongAnswers' | 'gatewayCpuUs' | 'childrenCpuUs' | 'clientCpuUs' | 'floorChildrenCpuUsAtRate'> = {};
  if (target.manySessions !== false) {
    sessions.sessionsThroughput = {};
    sessions.wrongAnswers = {};
    for (const count of SESSION_COUNTS) {
      const load = await manySessions(target, count);
      sessions.sessionsThroughput[count] = load.rate;
      sessions.wrongAnswers[count] = load.wrong;
      // CPU per call as the issue counts it: at 8 sessions, one call in flight on each.
      if (count !== 8) continue;
      Object.assign(sessions, { gatewayCpuUs: load.gatewayUs ?? cpu.gatewayCpuUs, childrenCpuUs: load.childrenUs ?? cpu.childrenCpuUs, clientCpuUs: load.clientUs });
      // A server's CPU per call depends on how often it is called (woken from idle at each
      // call, or kept busy): its cost behind this gateway is compared with the floor's own
      // servers called directly at the same rate.
      if (target.role !== 'floor' && target.pids.length) sessions.floorChildrenCpuUsAtRate = (await manySessions(floor, 8, load.rate)).childrenUs;
    }
  }
  return {
    target: target.name,
    version: target.version,
    role: target.role,
    setupP50: round(pct(setup, 50)),
    setupP95: round(pct(setup, 95)),
    ...(overFloor.length ? { setupOverFloorMs: round(pct(overFloor, 50)) } : {}),
    echoP50: round(pct(echoes, 50)),
    echoP99: round(pct(echoes, 99)),
    bigP50: round(pct(big, 50)),
    bigP99: round(pct(big, 99)),
    throughput,
    ...cpu,
    ...sessions,
    ...memory,
  };
}

const SESSION_COUNTS = [8, 32] as const;

/** User + system µs of a process.cpuUsage() difference. */
const cpuOf = (usage: NodeJS.CpuUsage) => usage.user + usage.system;

/**
 * Calls/s with `count` sessions open at once, one call in flight on each: the load of that many
 * users, each session with its own server where the gateway gives it one. Every answer is
 * checked against the text sent: a gateway that hands a session another's answer is counted.
 * CPU per call of the gateway and of the servers over the same window. With `pace`, calls/s
 * in all are held to it (each session's calls spaced evenly), for a comparison at equal rates.
 */
async function manySessions(target: Target, count: number, pace?: number): Promise<{ rate: number; wrong: number; gatewayUs?: number; childrenUs?: number; clientUs: number }> {
  const open: Connection[] = [];
  try {
    // Opened eight at a time, each warmed with one call before the window opens.
    for (let i = 0; i < count; i += 8) open.push(...(await Promise.all(Array.from({ length: Math.min(8, count - i) }, () => target.connect()))));
    await Promise.all(open.map((s) => s.client.callTool(echo)));
    const children = () => (target.pids.length ? descendantPids(target.pids) : open.flatMap((s) => (s.serverPid ? [s.serverPid] : [])));
    const [gateway, servers, clientCpu] = [cpuWindow(() => target.pids), cpuWindow(children), process.cpuUsage()];
    let done = 0;
    let wrong = 0;
    const started = performance.now();
    const until = started + N.seconds * 1000;
    await Promise.all(
      open.map(async (s, index) => {
        for (let n = 0; performance.now() < until; n++) {
          const due = pace ? started + (n * count * 1000) / pace - performance.now() : 0;
          if (due > 0) await pause(due);
          const text = `${index}:${n}`;
          const result = (await s.client.callTool({ name: 'echo', arguments: { text } })) as { content?: Array<{ text?: string }> };
          if (result.content?.[0]?.text !== text) wrong++;
          done++;
        }
      }),
    );
    const [gatewayUs, childrenUs, clientUs] = [gateway.end(), servers.end(), cpuOf(process.cpuUsage(clientCpu))];
    return { rate: Math.round(done / N.seconds), wrong, gatewayUs: gatewayUs === undefined ? undefined : Math.round(gatewayUs / done), childrenUs: childrenUs === undefined ? undefined : Math.round(childrenUs / done), clientUs: Math.round(clientUs / done) };
  } finally {
    await Promise.all(open.map((s) => s.close()));
    await pause(1000); // their servers exit before anything else is timed
  }
}

/** RSS growth per open session: N sessions, each having made one call, measured after a pause for GC to settle, against the same before opening them. */
async function sessionMemory(target: Target): Promise<Pick<Row, 'rssIdle' | 'rssOpen' | 'perSessionKiB' | 'childrenPerSessionKiB'>> {
  await pause(N.settleMs);
  await target.collectGarbage?.();
  const before = { gateway: rssKiB(target.pids), children: rssKiB(descendantPids(target.pids)) };
  const open = [];
  try {
    for (let i = 0; i < N.sessions; i++) {
      const session = await target.connect();
      open.push(session);
      await session.client.callTool(echo);
    }
    await pause(N.settleMs);
    await target.collectGarbage?.();
    const after = { gateway: rssKiB(target.pids), children: rssKiB(descendantPids(target.pids)) };
    return {
      rssIdle: round(before.gateway / 1024),
      rssOpen: round(after.gateway / 1024),
      perSessionKiB: Math.round((after.gateway - before.gateway) / N.sessions),
      childrenPerSessionKiB: Math.round((after.children - before.children) / N.sessions),
    };
  } finally {
    for (const session of open) await session.close();
    await pause(1000); // their servers exit before anything is timed
  }
}

const rows: Row[] = [];
const run: RunInfo = { date: new Date().toISOString(), commit, machine: `${cpus().length}× ${cpus()[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`, quick, sessions: N.sessions, settleSeconds: N.settleMs / 1000, skipped: [], failed: [], retried: [] };

/**
 * Measures each target in turn. One that fails is measured once more (a loaded emulator can
 * miss a 5 s deadline), and the first failure is reported with its figures; one that fails
 * twice is reported, and the others still measured.
 */
async function measureAll(targets: readonly Target[]): Promise<void> {
  for (const target of targets) {
    let firstFailure: string | undefined;
    for (let attempt = 1; attempt <= 2; attempt++) {
      process.stderr.write(`measuring ${target.name}${attempt > 1 ? ' (again)' : ''}…`);
      const started = performance.now();
      try {
        rows.push(await measure(target));
        process.stderr.write(` ${Math.round((performance.now() - started) / 1000)} s\n`);
        if (firstFailure) run.retried.push({ target: target.name, error: firstFailure });
        break;
      } catch (err) {
        const error = (err as Error).message.split('\n')[0]!;
        process.stderr.write(` failed: ${error}\n`);
        if (attempt === 2) run.failed.push({ target: target.name, error });
        firstFailure = error;
      }
    }
  }
}

/** Starts one target alone, measures it, stops it: no idle peer runs while another is measured. */
async function measureAlone(start: () => Promise<Target>): Promise<void> {
  const target = await start();
  try {
    await measureAll([target]);
  } finally {
    await target.stop();
  }
}

const front = await mcpFront();
try {
  await measureAll([floor]);
  await measureAlone(sdkServer);
  await measureAll(front.targets);
  // The emulator or an instance failing to start costs these two rows, not the run.
  const pairs = await twoRouteInstances().catch((err: Error) => ({ skip: `they did not start: ${err.message.split('\n')[0]}` }));
  if ('skip' in pairs) {
    process.stderr.write(`${pairs.skip}: the two-instance rows are left out\n`);
    run.skipped.push(`the two-instance rows (${pairs.skip})`);
  } else {
    try {
      await measureAll(pairs.targets);
    } finally {
      await pairs.stop();
    }
  }
  for (const start of [() => supergateway('streamableHttp'), () => supergateway('sse'), () => mcpProxy('stream'), () => mcpProxy('sse')]) await measureAlone(start);
  await measureAll(await stdioBridges(front.baseUrl));
} finally {
  await front.stop();
}
process.stderr.write('measuring the authorization server and store…\n');
const server = {
  serveColdStartMs: round(front.coldStartMs),
  routeColdStartMs: round(await routeServiceColdStart()),
  oauthColdStartMs: round(await oauthFunctionColdStart()),
  tokenProvider: TOKEN_PROVIDER,
  tokenPerSecondSqlite: await tokenThroughput('sqlite', N.seconds),
  tokenPerSecondFirestore: quick ? undefined : await tokenThroughput('firestore', N.seconds),
  storeOpsPerToolCall: await countedCallsPerToolCall(),
};

const lines = renderResults(rows, server, run);
mkdirSync(join(ROOT, 'bench'), { recursive: true });
writeFileSync(join(ROOT, 'bench/RESULTS.md'), lines.join('\n'));
writeFileSync(join(ROOT, 'bench/results.json'), `${JSON.stringify({ date: run.date, commit, quick, machine: run.machine, rows, failed: run.failed, retried: run.retried, skipped: run.skipped, server }, null, 2)}\n`);
process.stdout.write(lines.join('\n'));
