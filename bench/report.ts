import type { TargetRole } from './targets.ts';

// bench/RESULTS.md from one run's figures: the table of every target, the targets the
// performance work aims at (ratios to the references, computed from the same run), the
// authorization server and store, and how to read it all.

export interface Row {
  target: string;
  version: string;
  role: TargetRole;
  setupP50: number;
  setupP95: number;
  /** Median of (set-up − the floor's set-up just before it), over the paired set-ups. */
  setupOverFloorMs?: number;
  echoP50: number;
  echoP99: number;
  bigP50: number;
  bigP99: number;
  /** Calls/s with C calls in flight, by C. */
  throughput: Record<number, number>;
  /** Calls/s with S sessions open, one call in flight on each, by S. */
  sessionsThroughput?: Record<number, number>;
  /** Answers that were not the session's own (another session's echo), by S. */
  wrongAnswers?: Record<number, number>;
  /** µs of CPU of the gateway processes per echo call, over the 8-session window (the C=8 one where there is none). */
  gatewayCpuUs?: number;
  /** µs of CPU of their descendants (the floor: its own servers) per echo call, same window. */
  childrenCpuUs?: number;
  /** µs of CPU of the benchmark's own process (the MCP clients) per call, same window: the load generator's share of the machine. */
  clientCpuUs?: number;
  /** The floor's servers' µs per call when called directly at this target's 8-session rate. */
  floorChildrenCpuUsAtRate?: number;
  rssIdle?: number;
  rssOpen?: number;
  perSessionKiB?: number;
  /** The same RSS growth per session, of the gateway's descendants (one server per session, or a shared one). */
  childrenPerSessionKiB?: number;
}

export interface ServerFigures {
  serveColdStartMs: number;
  routeColdStartMs: number;
  oauthColdStartMs: number;
  tokenProvider: string;
  tokenPerSecondSqlite?: number;
  tokenPerSecondFirestore?: number;
  storeOpsPerToolCall: { reads: number; writes: number };
}

export interface RunInfo {
  date: string;
  commit: string;
  machine: string;
  quick: boolean;
  sessions: number;
  /** The pause before each RSS reading. */
  settleSeconds: number;
  /** Why the two-instance rows are absent, when they are. */
  skipped: string[];
  failed: Array<{ target: string; error: string }>;
  /** Targets measured on a second attempt, with the first attempt's failure. */
  retried: Array<{ target: string; error: string }>;
}

const round = (x: number) => Math.round(x * 100) / 100;
const dash = (x: number | undefined) => (x === undefined ? '–' : String(x));
const times = (x: number | undefined, base: number | undefined) => (x === undefined || !base ? '–' : `${round(x / base)}×`);
const tableRow = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;

const READING = (sessions: number, settleSeconds: number, floor: Row | undefined) => [
  '## Reading this table',
  '',
  `- Set-up of the stdio targets is dominated by starting the demo server itself (a Node process${floor ? `, ${Math.round(floor.setupP50)} ms here` : ''}). mcp-front starts one per session, by design: sessions of different users never share a server. supergateway in SSE mode and mcp-proxy share one child among all their clients, which is why their set-up is tens of ms at most; it is not the same isolation.`,
  '- supergateway (SSE) answers each POST with 202 and sends the result on the already-open stream, one HTTP response fewer per call; with one shared child it can edge ahead on p50. Among per-session gateways (mcp-front, supergateway Streamable HTTP) compare like with like.',
  '- The http route adds a second HTTP hop (gateway → demo server over Streamable HTTP), so it sits above the stdio route by about one loopback round trip.',
  "- The MCP SDK Streamable HTTP server is the demo server's own `--http` form (lib/mcp/sdk-sessions.ts: the SDK's transport, one per session; the tools in the same process; no auth), its own process: serving the same tools with no gateway at all, the reference for the gateways' CPU and p50.",
  "- The 2-instance rows are two route instances (services/route/main.ts) of /demo on the Firestore emulator behind the tests' balancer (a loopback proxy inside the benchmark process: one hop more than the single-instance rows); \"alternating\" relays every other call to the session's owner (so its p50 falls on the edge between relayed and direct calls), \"every call relayed\" all of them, and a relayed call costs 4 store reads and 4 writes (record and lease, the call frame, the answer frame, each deleted once read) where a call on the owner costs none (counted in test/route/relay-cost.test.ts); CPU and RSS are both instances summed.",
  '- Gateway CPU/call is the user + system CPU of the gateway processes (utime + stime in /proc/<pid>/stat) over the 8-session throughput window divided by the calls made in it (for the rows measured on one session only, its C=8 window); children CPU/call is the same for their descendants (the servers they started: for the http route its backend; for the direct floor the servers its clients started). Clock ticks are 10 ms: `--quick` windows are short and their CPU figures coarse.',
  '- Client CPU/call is the benchmark process itself (the MCP SDK clients on undici\'s fetch, and for the two-instance rows the balancer) over the same window: the load generator runs on the same two cores as the gateway and its servers, so calls/s are bounded by all three together, and a transport whose client costs more per call (Streamable HTTP, one fetch and one JSON body read per call, against SSE\'s POST answered 202 and an event on the open stream) gets fewer calls/s through the same gateway cost.',
  '- Many sessions: S clients, each with its own session, one call in flight on each, every answer compared with the text its session sent. A gateway sharing one server among sessions must keep their request ids apart; one that hands a session another\'s answer is shown with its count of wrong answers and is no reference for the ratios.',
  `- RSS is the gateway processes alone (children are separate processes). KiB/session: RSS with ${sessions} sessions open, each having made one call, after a pause for GC to settle (${settleSeconds} s: V8's memory reducer shrinks an idle heap after ~10 s) and, for mcp-front's serve process, a full GC asked through its inspector, minus RSS before opening them measured the same way, divided by ${sessions}; measured before the latency and throughput load, whose garbage would hide the growth; server KiB/session is the same growth of their descendants (a whole stdio server per session for mcp-front and supergateway Streamable HTTP, one shared one for the others).`,
  '- The CPU profile behind the numbers: bench/profile/TOP.md (`npm run bench:profile`). On this 2-core VM figures move ±30% between runs, more when other work shares it: compare within one run.',
  '',
];

export function renderResults(rows: readonly Row[], server: ServerFigures, run: RunInfo): string[] {
  const floor = rows.find((r) => r.role === 'floor');
  const sdk = rows.find((r) => r.role === 'sdk-server');
  const ratio = (x: number, base: number | undefined) => (base ? `${round(x)} (${round(x / base)}×)` : String(round(x)));
  const peers = rows.filter((r) => r.role === 'peer');
  const best = (c: number) => peers.reduce<Row | undefined>((top, r) => (!top || r.throughput[c]! > top.throughput[c]! ? r : top), undefined);
  const [best8, best32] = [best(8), best(32)];
  // Among many sessions, only a peer that gave every session its own answers is a reference.
  const bestSessions = (n: number) => peers.filter((r) => r.sessionsThroughput?.[n] !== undefined && !r.wrongAnswers?.[n]).reduce<Row | undefined>((top, r) => (!top || r.sessionsThroughput![n]! > top.sessionsThroughput![n]! ? r : top), undefined);
  const [bestS8, bestS32] = [bestSessions(8), bestSessions(32)];
  const sessionsCell = (r: Row, n: number) => (r.sessionsThroughput?.[n] === undefined ? '–' : `${r.sessionsThroughput[n]}${r.wrongAnswers?.[n] ? ` (${r.wrongAnswers[n]} wrong answers)` : ''}`);
  const bestName = (r: Row | undefined, value: number | undefined) => (r ? `${r.target}, ${value}` : '–');
  return [
    '# Benchmark results',
    '',
    `Measured ${run.date} at commit ${run.commit} on ${run.machine}, loopback only. ${run.quick ? '`--quick` run (small samples).' : ''}`,
    run.commit.endsWith('+changes')
      ? `Measured with uncommitted changes on top of ${run.commit.replace('+changes', '')}: no commit reproduces these figures exactly; \`npm run bench\` at yours measures again.`
      : `If HEAD is not ${run.commit} these figures are stale: \`node bench/run.ts --check\` says so, \`npm run bench\` measures again.`,
    '',
    'Every target serves the bundled demo server; latencies in ms, client-side, one session, sequential; throughput is calls/s, with C calls in flight on one session, and with 8 or 32 sessions open at once, one call in flight on each (every answer checked against what its session sent). Ratios are to the direct stdio floor.',
    '',
    tableRow(['target', 'version', 'setup p50', 'setup p95', 'echo p50', 'echo p99', '100 KB p50', '100 KB p99', 'C=1', 'C=8', 'C=32', '8 sessions', '32 sessions', 'gateway CPU µs/call', 'children CPU µs/call', 'client CPU µs/call', 'RSS idle MiB', `RSS ${run.sessions} sessions MiB`, 'KiB/session']),
    tableRow(Array(19).fill('---')),
    ...rows.map((r) =>
      tableRow([r.target, r.version, ratio(r.setupP50, floor?.setupP50), ratio(r.setupP95, floor?.setupP95), ratio(r.echoP50, floor?.echoP50), ratio(r.echoP99, floor?.echoP99), ratio(r.bigP50, floor?.bigP50), ratio(r.bigP99, floor?.bigP99), r.throughput[1]!, r.throughput[8]!, r.throughput[32]!, sessionsCell(r, 8), sessionsCell(r, 32), dash(r.gatewayCpuUs), dash(r.childrenCpuUs), dash(r.clientCpuUs), dash(r.rssIdle), dash(r.rssOpen), dash(r.perSessionKiB)]),
    ),
    '',
    ...run.skipped.map((reason) => `Not measured: ${reason}.`),
    ...run.failed.map((f) => `Not measured: ${f.target} failed twice, the second time: ${f.error}`),
    ...run.retried.map((f) => `Measured on a second attempt: ${f.target}; the first failed: ${f.error}`),
    ...(floor ? ['Added latency over the floor (echo): ' + rows.filter((r) => r !== floor).map((r) => `${r.target}: p50 +${round(r.echoP50 - floor.echoP50)} ms, p99 +${round(r.echoP99 - floor.echoP99)} ms`).join('; ') + '.', ''] : []),
    '## Targets',
    '',
    `Ratios from this run: CPU and echo p50 to the MCP SDK server's (${dash(sdk?.gatewayCpuUs)} µs/call, ${dash(sdk?.echoP50)} ms); calls/s to the best peer's that gave every session its own answers (8 sessions: ${bestName(bestS8, bestS8?.sessionsThroughput?.[8])}; 32 sessions: ${bestName(bestS32, bestS32?.sessionsThroughput?.[32])}), and on one session to the best peer's (C=8: ${bestName(best8, best8?.throughput[8])}; C=32: ${bestName(best32, best32?.throughput[32])}); children CPU to the floor's own servers called directly at the same rate (8 sessions, calls paced to the target's 8-session rate: a server woken for each call costs more per call than a busy one, ${dash(floor?.childrenCpuUs)} µs/call at the floor's own full rate), CPU figures at 8 sessions; set-up over the floor's: the median difference to a floor set-up (spawning the demo server) made just before each.`,
    '',
    tableRow(['target', "gateway CPU/call ÷ SDK server's", "8 sessions ÷ best peer's", "32 sessions ÷ best peer's", "one session, C=8 ÷ best peer's", "C=32 ÷ best peer's", "echo p50 ÷ SDK server's", "children CPU/call ÷ floor's at the same rate", "setup − floor's (ms, paired)", 'KiB/session', 'server KiB/session']),
    tableRow(Array(11).fill('---')),
    ...rows.map((r) =>
      tableRow([r.target, times(r.gatewayCpuUs, sdk?.gatewayCpuUs), times(r.sessionsThroughput?.[8], bestS8?.sessionsThroughput?.[8]), times(r.sessionsThroughput?.[32], bestS32?.sessionsThroughput?.[32]), times(r.throughput[8], best8?.throughput[8]), times(r.throughput[32], best32?.throughput[32]), times(r.echoP50, sdk?.echoP50), times(r.childrenCpuUs, r.floorChildrenCpuUsAtRate), dash(r.setupOverFloorMs), dash(r.perSessionKiB), dash(r.childrenPerSessionKiB)]),
    ),
    '',
    '## Authorization server and store',
    '',
    '| metric | value |',
    '| --- | --- |',
    `| \`mcp-front serve\` process start to ready (both routes, store, keys) | ${server.serveColdStartMs} ms |`,
    `| route service (services/route/main.ts) start to listening | ${server.routeColdStartMs} ms |`,
    `| OAuth function (Functions Framework) start to first answered request | ${server.oauthColdStartMs} ms |`,
    `| /token (refresh_token grant) on SQLite, 8 in flight, users signed in with the \`${server.tokenProvider}\` provider (never re-checked upstream at refresh) | ${server.tokenPerSecondSqlite ?? '–'} req/s |`,
    `| /token on the Firestore emulator, same grants and provider, 8 in flight | ${server.tokenPerSecondFirestore === undefined ? (run.quick ? 'not measured in --quick' : 'no emulator') : `${server.tokenPerSecondFirestore} req/s`} |`,
    `| store reads / writes per tools/call (hot path, one instance) | ${server.storeOpsPerToolCall.reads} / ${server.storeOpsPerToolCall.writes} |`,
    '',
    ...READING(run.sessions, run.settleSeconds, floor),
  ];
}
