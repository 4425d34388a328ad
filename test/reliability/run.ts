import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { soakPng } from './plot.ts';
import { runSoak, type SoakResult } from './soak.ts';
import { runTwoInstanceSoak, type TwoInstanceResult } from './two-instances.ts';

// `npm run reliability`: runs the reliability suites (hostile input, faults, races, properties,
// zero zombies; all of them also run in `npm test`) and the soak (not in `npm test`), and
// writes test/reliability/RESULTS.md, soak.png and soak.json.
//   --minutes N   soak length (default 5)    --workers N   concurrent clients (default 6)
//   --no-suites   soak only                 --plot-only   redraw soak.png from soak.json
//   --two-instance-minutes N   the two-instance phase's length (default 2; 0 leaves it out)

const ROOT = join(import.meta.dirname, '../..');
const OUT = import.meta.dirname;
const SUITES = ['test/hostile', 'test/properties', 'test/route/faults.test.ts', 'test/route/zombies.test.ts', 'test/route/resume.test.ts', 'test/oauth/races.test.ts', 'test/oauth/faults.test.ts', 'test/oauth/client-metadata.test.ts', 'test/store'];

const { values: args } = parseArgs({ options: { minutes: { type: 'string', default: '5' }, workers: { type: 'string', default: '6' }, 'no-suites': { type: 'boolean', default: false }, 'plot-only': { type: 'boolean', default: false }, 'two-instance-minutes': { type: 'string', default: '2' } } });

interface FileResult {
  file: string;
  passed: number;
  failed: number;
  skipped: number;
}

function runSuites(): { files: FileResult[]; seconds: number } {
  const report = join(mkdtempSync(join(tmpdir(), 'mcp-front-reliability-')), 'vitest.json');
  const started = Date.now();
  const run = spawnSync(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', ...SUITES, '--reporter=json', `--outputFile=${report}`], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (run.error) throw run.error;
  const json = JSON.parse(readFileSync(report, 'utf8')) as { testResults: Array<{ name: string; assertionResults: Array<{ status: string }> }> };
  const files = json.testResults.map((t) => ({
    file: relative(ROOT, t.name),
    passed: t.assertionResults.filter((a) => a.status === 'passed').length,
    failed: t.assertionResults.filter((a) => a.status === 'failed').length,
    skipped: t.assertionResults.filter((a) => a.status !== 'passed' && a.status !== 'failed').length,
  }));
  return { files: files.sort((a, b) => a.file.localeCompare(b.file)), seconds: Math.round((Date.now() - started) / 1000) };
}

function verdicts(soak: SoakResult) {
  const { before, baseline, end } = soak;
  const b = baseline.sample;
  const e = end.sample;
  const rssDelta = (e.rssMiB - b.rssMiB) / b.rssMiB;
  const maxZombies = Math.max(...soak.samples.map((s) => s.zombies));
  return [
    ['zombies after the soak', String(e.zombies), e.zombies === 0],
    ['zombies that lasted from one sample to the next (transient ones: a child exited, not yet reaped)', `${soak.persistentZombies.length} (at most ${maxZombies} at any sample)`, soak.persistentZombies.length === 0],
    ["live child processes at rest: before / after warm-up / after the soak (floor 1: the http route's dev backend)", `${before.sample.children} / ${b.children} / ${e.children}`, e.children <= before.sample.children],
    ['processes left after SIGTERM', String(soak.leftAfterExit), soak.leftAfterExit === 0],
    ['serve exit code on SIGTERM', String(soak.exitCode), soak.exitCode === 0],
    ['open fds at rest: before / after warm-up / after the soak', `${before.sample.fds} / ${b.fds} / ${e.fds}`, e.fds <= b.fds],
    ['RSS at rest: after warm-up → after the soak', `${b.rssMiB} → ${e.rssMiB} MiB (${rssDelta >= 0 ? '+' : ''}${(rssDelta * 100).toFixed(1)}%)`, Math.abs(rssDelta) <= 0.1],
    ['errors', `${soak.totals.errors} of ${soak.totals.calls} calls`, soak.totals.errors === 0],
  ] as Array<[string, string, boolean]>;
}

function twoInstanceVerdicts(r: TwoInstanceResult) {
  const documents = (c: keyof TwoInstanceResult['documentsAtRest']) => String(r.documentsAtRest[c] ?? 0);
  return [
    ['child processes of either instance at rest (leaked children)', String(r.childrenAtRest), r.childrenAtRest === 0],
    ['live session documents (`mcpSessions`) at rest (orphaned sessions)', documents('mcpSessions'), r.documentsAtRest.mcpSessions === 0],
    ['live relay frames (`mcpRelay`) at rest', documents('mcpRelay'), r.documentsAtRest.mcpRelay === 0],
    ['instance leases (`routeInstances`) left after SIGTERM', String(r.leasesAfterExit), r.leasesAfterExit === 0],
    ['instances\' exit codes on SIGTERM', r.exitCodes.join(', '), r.exitCodes.every((c) => c === 0)],
    ['processes left after SIGTERM', String(r.leftAfterExit), r.leftAfterExit === 0],
    ['errors', `${r.totals.errors} of ${r.totals.calls} calls`, r.totals.errors === 0],
  ] as Array<[string, string, boolean]>;
}

const WARMUP_S = 30;

async function main() {
  if (args['plot-only']) {
    // Redraw soak.png from soak.json (after a change to the chart), without running anything.
    const soak = JSON.parse(readFileSync(join(OUT, 'soak.json'), 'utf8')) as SoakResult;
    writeFileSync(join(OUT, 'soak.png'), await soakPng(soak.samples));
    return;
  }
  const minutes = Number(args.minutes);
  const workers = Number(args.workers);
  const suites = args['no-suites'] ? undefined : runSuites();
  console.log(`soak: ${minutes} min, ${workers} workers`);
  const soak = await runSoak({ durationMs: minutes * 60_000, workers, sampleMs: 5_000, warmupMs: WARMUP_S * 1000, idleTimeout: '20s', log: (line) => console.log(line) });
  const twoMinutes = Number(args['two-instance-minutes']);
  const two = twoMinutes > 0 ? await runTwoInstanceSoak({ durationMs: twoMinutes * 60_000, workers, idleTimeout: '20s', log: (line) => console.log(line) }) : undefined;
  writeFileSync(join(OUT, 'soak.json'), `${JSON.stringify({ ...soak, twoInstances: two }, null, 1)}\n`);
  writeFileSync(join(OUT, 'soak.png'), await soakPng(soak.samples));
  const rows = verdicts(soak);
  const loadSeconds = minutes * 60;
  const lines = [
    '# Reliability results',
    '',
    `Regenerated by \`npm run reliability\` (${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}). The suites below also run in \`npm test\`; the soak does not.`,
    '',
  ];
  if (suites) {
    const sum = (k: keyof Omit<FileResult, 'file'>) => suites.files.reduce((n, f) => n + f[k], 0);
    lines.push(
      '## Suites',
      '',
      `${sum('passed')} passed, ${sum('failed')} failed, ${sum('skipped')} skipped, in ${suites.seconds} s.`,
      '',
      '| file | passed | failed | skipped |',
      '| --- | ---: | ---: | ---: |',
      ...suites.files.map((f) => `| \`${f.file}\` | ${f.passed} | ${f.failed} | ${f.skipped} |`),
      '',
    );
  }
  lines.push(
    '## Soak',
    '',
    `A real \`mcp-front serve\` (SQLite store, dev sign-in) on loopback. ${workers} clients (the MCP SDK client) loop for ${minutes} min (the first ${WARMUP_S} s are a warm-up, followed by a rest; RSS and fds are compared at rest, after the warm-up and after the soak): each opens a session, over Streamable HTTP or legacy SSE, on the stdio route (a child process per session) or the http route, makes 1 to 5 \`echo\` calls checked against their answer, and closes it (DELETE for Streamable HTTP); one session in ten instead drops its connection in the middle of a 2 s call and never comes back, left to the idle reaper (\`idle_timeout: 20s\`). Samples every 5 s from /proc; each rest lasts until the reaper has run (2 × idle_timeout + 10 s); at the end the server is stopped with SIGTERM.`,
    '',
    '![soak](soak.png)',
    '',
    '| measure | value |',
    '| --- | ---: |',
    `| sessions opened | ${soak.totals.sessions} (${Object.entries(soak.totals.byKind).map(([k, n]) => `${k}: ${n}`).join(', ')}) |`,
    `| sessions that vanished mid-call | ${soak.totals.vanished} |`,
    `| calls made | ${soak.totals.calls} in ${loadSeconds} s (${Math.round(soak.totals.calls / loadSeconds)}/s) |`,
    `| errors | ${soak.totals.errors} |`,
    `| call latency p50 / p99 / max | ${soak.latency.p50.toFixed(2)} / ${soak.latency.p99.toFixed(2)} / ${soak.latency.max.toFixed(1)} ms |`,
    '',
    '| check | measured | holds |',
    '| --- | --- | :---: |',
    ...rows.map(([name, value, ok]) => `| ${name} | ${value} | ${ok ? 'yes' : '**no**'} |`),
    '',
  );
  if (Object.keys(soak.totals.errorKinds).length) {
    lines.push('Errors by kind:', '', ...Object.entries(soak.totals.errorKinds).map(([k, n]) => `- ${n} × ${k}`), '');
  }
  const kinds = (r: Record<string, number>) => Object.entries(r).sort((x, y) => y[1] - x[1]).map(([k, n]) => `${n} ${k}`).join(', ');
  lines.push('Open fds by kind at rest:', '', `- before the load: ${kinds(soak.before.fds)}`, `- after warm-up: ${kinds(soak.baseline.fds)}`, `- after the soak: ${kinds(soak.end.fds)}`, '');
  lines.push('Raw samples: [soak.json](soak.json).', '');
  const twoRows = two && !two.skipped ? twoInstanceVerdicts(two) : [];
  if (two) {
    lines.push('## Two instances', '');
    if (two.skipped) lines.push(`Left out: ${two.skipped}`, '');
    else {
      const seconds = twoMinutes * 60;
      lines.push(
        `Two route instances (\`services/route/main.ts\`, the Cloud Run entrypoint) of the demo stdio route on the Firestore emulator, behind a loopback balancer that alternates requests between them, as Cloud Run spreads an API client's requests: each session has one owner, which runs its child, and every other request is relayed to it through Firestore. ${workers} clients (the MCP SDK client, Streamable HTTP) loop for ${twoMinutes} min as above (1 to 5 checked \`echo\` calls, then DELETE, through whichever instance the balancer picks; one session in ten vanishes mid-call and is left to its owner's idle reaper). After a rest (2 × idle_timeout + 10 s) the run counts the children of both instances and the live documents, then stops both with SIGTERM.`,
        '',
        '| measure | value |',
        '| --- | ---: |',
        `| sessions opened | ${two.totals.sessions} (${two.totals.vanished} vanished mid-call) |`,
        `| calls made | ${two.totals.calls} in ${seconds} s (${Math.round(two.totals.calls / seconds)}/s) |`,
        `| requests per instance | ${two.requestsPerInstance.join(' / ')} |`,
        `| call latency p50 / p99 / max | ${two.latency.p50.toFixed(2)} / ${two.latency.p99.toFixed(2)} / ${two.latency.max.toFixed(1)} ms |`,
        '',
        '| check | measured | holds |',
        '| --- | --- | :---: |',
        ...twoRows.map(([name, value, ok]) => `| ${name} | ${value} | ${ok ? 'yes' : '**no**'} |`),
        '',
      );
      if (Object.keys(two.totals.errorKinds).length) lines.push('Errors by kind:', '', ...Object.entries(two.totals.errorKinds).map(([k, n]) => `- ${n} × ${k}`), '');
    }
  }
  writeFileSync(join(OUT, 'RESULTS.md'), lines.join('\n'));
  console.log(`wrote ${relative(ROOT, join(OUT, 'RESULTS.md'))}`);
  for (const [name, value, ok] of [...rows, ...twoRows]) console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${value}`);
  if (two?.skipped) console.log(`two-instance phase left out: ${two.skipped}`);
  process.exitCode = [...rows, ...twoRows].every(([, , ok]) => ok) && (!suites || suites.files.every((f) => f.failed === 0)) ? 0 : 1;
}

await main();
