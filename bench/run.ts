import { cpus, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { directStdio, mcpFront, mcpProxy, rssMiB, ROOT, stdioBridges, supergateway, type Target } from './targets.ts';
import { countedCallsPerToolCall, oauthFunctionColdStart, routeServiceColdStart, tokenThroughput } from './server-metrics.ts';

// `npm run bench [-- --quick]`: every target and metric in one run on this machine, written to
// bench/RESULTS.md (a table with ratios to the direct stdio floor) and bench/results.json.
// Bounded loops only; nothing here is a test and nothing here asserts a threshold.

const quick = process.argv.includes('--quick');
/** The commit measured; "+changes" when the working tree differs from it (a result nobody can reproduce from the log). */
const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
const commit = `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? '+changes' : ''}`;
// --quick must finish in under two minutes on two cores: smaller samples, 25 open sessions.
const N = quick ? { setup: 5, echo: 150, big: 30, seconds: 0.5, sessions: 25 } : { setup: 30, echo: 1000, big: 200, seconds: 3, sessions: 100 };

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const round = (x: number) => Math.round(x * 100) / 100;

interface Row {
  target: string;
  version: string;
  setupP50: number;
  setupP95: number;
  echoP50: number;
  echoP99: number;
  bigP50: number;
  bigP99: number;
  throughput: Record<number, number>;
  rssIdle?: number;
  rss100?: number;
  perSessionKiB?: number;
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const start = performance.now();
  const value = await fn();
  return [performance.now() - start, value];
}

async function measure(target: Target): Promise<Row> {
  const setup: number[] = [];
  for (let i = 0; i < N.setup; i++) {
    const [ms, session] = await timed(async () => {
      const s = await target.connect();
      await s.client.listTools();
      return s;
    });
    setup.push(ms);
    await session.close();
  }
  const { client, close } = await target.connect();
  for (let i = 0; i < 50; i++) await client.callTool({ name: 'echo', arguments: { text: 'warm' } });
  const echo: number[] = [];
  for (let i = 0; i < N.echo; i++) echo.push((await timed(() => client.callTool({ name: 'echo', arguments: { text: 'hello' } })))[0]);
  const big: number[] = [];
  for (let i = 0; i < N.big; i++) big.push((await timed(() => client.callTool({ name: 'big', arguments: { kb: 100 } })))[0]);
  // Throughput: C calls in flight on one session, for a fixed time.
  const throughput: Record<number, number> = {};
  for (const c of [1, 8, 32]) {
    let done = 0;
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
  }
  await close();
  const row: Row = {
    target: target.name,
    version: target.version,
    setupP50: round(pct(setup, 50)),
    setupP95: round(pct(setup, 95)),
    echoP50: round(pct(echo, 50)),
    echoP99: round(pct(echo, 99)),
    bigP50: round(pct(big, 50)),
    bigP99: round(pct(big, 99)),
    throughput,
  };
  if (target.pid) {
    await new Promise((r) => setTimeout(r, 500));
    row.rssIdle = round(rssMiB(target.pid));
    const open = [];
    for (let i = 0; i < N.sessions; i++) open.push(await target.connect());
    await new Promise((r) => setTimeout(r, 500));
    row.rss100 = round(rssMiB(target.pid));
    row.perSessionKiB = Math.round(((row.rss100 - row.rssIdle) * 1024) / N.sessions);
    for (const s of open) await s.close();
  }
  return row;
}

const rows: Row[] = [];
const front = await mcpFront();
const targets: Target[] = [directStdio(), ...front.targets];
try {
  for (const make of [() => supergateway('streamableHttp'), () => supergateway('sse'), () => mcpProxy()]) targets.push(await make());
  targets.push(...(await stdioBridges(front.baseUrl)));
  for (const target of targets) {
    process.stderr.write(`measuring ${target.name}…\n`);
    rows.push(await measure(target));
  }
} finally {
  for (const t of targets) await t.stop();
  await front.stop();
}
process.stderr.write('measuring the authorization server and store…\n');
const server = {
  serveColdStartMs: round(front.coldStartMs),
  routeColdStartMs: round(await routeServiceColdStart()),
  oauthColdStartMs: round(await oauthFunctionColdStart()),
  tokenPerSecondSqlite: await tokenThroughput('sqlite', N.seconds),
  tokenPerSecondFirestore: quick ? undefined : await tokenThroughput('firestore', N.seconds),
  storeOpsPerToolCall: await countedCallsPerToolCall(),
};

const READING = [
  '## Reading this table',
  '',
  '- Set-up of the stdio targets is dominated by starting the demo server itself (a Node process, ~250 ms here). mcp-front starts one per session, by design: sessions of different users never share a server. supergateway in SSE mode and mcp-proxy share one child among all their clients, which is why their set-up is ~10 ms; it is not the same isolation.',
  '- supergateway (SSE) answers each POST with 202 and sends the result on the already-open stream, one HTTP response fewer per call; with one shared child it can edge ahead on p50. Among per-session gateways (mcp-front, supergateway Streamable HTTP) compare like with like.',
  '- The http route adds a second HTTP hop (gateway → demo server over Streamable HTTP), so it sits above the stdio route by about one loopback round trip.',
  '- RSS is the gateway process alone (children are separate processes); KiB/session is the RSS growth with the open sessions divided by their number.',
  '- The CPU profile behind the numbers: bench/profile/TOP.md (`npm run bench:profile`). On this 2-core VM figures move ±30% between runs: compare within one run.',
  '',
];

const floor = rows[0]!;
const ratio = (x: number, base: number) => `${round(x)} (${round(x / base)}×)`;
const lines = [
  '# Benchmark results',
  '',
  `Run ${new Date().toISOString()} at commit ${commit} on ${cpus().length}× ${cpus()[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, loopback only. ${quick ? '`--quick` run (small samples).' : ''}`,
  'Every target serves the bundled demo server; latencies in ms, client-side, one session, sequential; throughput is calls/s with C calls in flight on one session. Ratios are to the direct stdio floor.',
  '',
  `| target | version | setup p50 | setup p95 | echo p50 | echo p99 | 100 KB p50 | 100 KB p99 | C=1 | C=8 | C=32 | RSS idle MiB | RSS ${N.sessions} sessions MiB | KiB/session |`,
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((r) =>
    [r.target, r.version, ratio(r.setupP50, floor.setupP50), ratio(r.setupP95, floor.setupP95), ratio(r.echoP50, floor.echoP50), ratio(r.echoP99, floor.echoP99), ratio(r.bigP50, floor.bigP50), ratio(r.bigP99, floor.bigP99), r.throughput[1], r.throughput[8], r.throughput[32], r.rssIdle ?? '–', r.rss100 ?? '–', r.perSessionKiB ?? '–'].join(' | ').replace(/^/, '| ').concat(' |'),
  ),
  '',
  'Added latency over the floor (echo): ' + rows.slice(1).map((r) => `${r.target}: p50 +${round(r.echoP50 - floor.echoP50)} ms, p99 +${round(r.echoP99 - floor.echoP99)} ms`).join('; ') + '.',
  '',
  '## Authorization server and store',
  '',
  '| metric | value |',
  '| --- | --- |',
  `| \`mcp-front serve\` process start to ready (both routes, store, keys) | ${server.serveColdStartMs} ms |`,
  `| route service (services/route/main.ts) start to listening | ${server.routeColdStartMs} ms |`,
  `| OAuth function (Functions Framework) start to first answered request | ${server.oauthColdStartMs} ms |`,
  `| /token (refresh_token grant) on SQLite, 8 in flight | ${server.tokenPerSecondSqlite} req/s |`,
  `| /token on the Firestore emulator, 8 in flight | ${server.tokenPerSecondFirestore ?? 'not measured in --quick'} ${server.tokenPerSecondFirestore ? 'req/s' : ''} |`,
  `| store reads / writes per tools/call (hot path) | ${server.storeOpsPerToolCall.reads} / ${server.storeOpsPerToolCall.writes} |`,
  '',
  ...READING,
];
mkdirSync(join(ROOT, 'bench'), { recursive: true });
writeFileSync(join(ROOT, 'bench/RESULTS.md'), lines.join('\n'));
writeFileSync(join(ROOT, 'bench/results.json'), `${JSON.stringify({ date: new Date().toISOString(), commit, quick, rows, server }, null, 2)}\n`);
process.stdout.write(lines.join('\n'));
