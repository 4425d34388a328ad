import { execFileSync, spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { descendantsOf } from '../test/support/process-table.ts';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../cli/dev-backend.ts';
import { Client, StreamableHTTPClientTransport } from '../lib/mcp/sdk.ts';
import { authorizeWithDevSignIn } from '../test/support/oauth-client.ts';
import { ROOT } from './targets.ts';

// `npm run bench:profile`: a V8 CPU profile of `serve` while the stdio route answers echo calls
// (32 in flight), saved as bench/profile/stdio-route.cpuprofile (open it in Chrome DevTools or
// speedscope for the flame graph) with the top self-time functions in bench/profile/TOP.md.
// V8 samples wall-clock time: on cores shared with the client and the stdio server, a write
// that wakes one of them is charged the time it then runs. With two cores or more, `serve` gets
// one of its own (taskset) and everything else the others, so the profile is serve's own cost.

const CALLS = Number(process.env.PROFILE_CALLS ?? 20_000);
const out = join(ROOT, 'bench/profile');
const scratch = mkdtempSync(join(tmpdir(), 'mcp-front-prof-'));
mkdirSync(out, { recursive: true });
const port = await freePort();
const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${scratch}`, 'cli/mcp-front.ts', 'serve'], { cwd: ROOT, env: { ...process.env, MCP_FRONT_PORT: String(port), MCP_FRONT_DATA_DIR: scratch }, stdio: ['ignore', 'pipe', 'ignore'] });
let text = '';
child.stdout.on('data', (c: Buffer) => (text += c.toString()));
while (!text.includes('mcp-front is up')) await new Promise((r) => setTimeout(r, 20));
/** Pins `pid` (all its threads) to the given CPUs; false when taskset is missing or refuses. */
const pin = (pid: number, list: string) => {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const last = cpus().length - 1;
const others = last > 0 ? `0-${last - 1}` : '';
const pinned = last > 0 && pin(child.pid!, String(last)) && pin(process.pid, others);
const base = `http://127.0.0.1:${port}`;
const tokens = await authorizeWithDevSignIn(base, { email: 'profile@example.com', resource: `${base}/demo/mcp` });
const client = new Client({ name: 'profile', version: '1' });
const transport = new StreamableHTTPClientTransport(new URL(`${base}/demo/mcp`), { requestInit: { headers: { authorization: `Bearer ${tokens.access_token}` } } });
await client.connect(transport);
// The session's stdio server inherited serve's core: it goes to the others.
if (pinned) for (const { pid } of descendantsOf(child.pid!)) pin(pid, others);
let left = CALLS;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (left-- > 0) await client.callTool({ name: 'echo', arguments: { text: 'profile' } });
}));
await transport.terminateSession();
await client.close();
const exited = new Promise((r) => child.once('exit', r));
child.kill('SIGTERM');
await exited;

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const file = readdirSync(scratch).find((f) => f.endsWith('.cpuprofile'))!;
renameSync(join(scratch, file), join(out, 'stdio-route.cpuprofile'));
const profile = JSON.parse(readFileSync(join(out, 'stdio-route.cpuprofile'), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const byFunction = new Map<string, number>();
let total = 0;
for (const node of profile.nodes) {
  const us = self.get(node.id) ?? 0;
  total += us;
  const where = node.callFrame.url ? `${node.callFrame.url.replace(`file://${ROOT}/`, '').replace(/.*node_modules\//, 'node_modules/')}:${node.callFrame.lineNumber + 1}` : '';
  const key = `${node.callFrame.functionName || '(anonymous)'} ${where}`.trim();
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
}
// Shares of the time serve was busy: idle (waiting for the client or the server) is left out.
const idle = byFunction.get('(idle)') ?? 0;
const busy = total - idle;
const top = [...byFunction.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 25);
const where = pinned ? `alone on CPU ${last} (the client and the stdio server on the others)` : 'sharing the cores with the client and the stdio server (a write that wakes one of them is charged the time it then runs)';
const lines = [
  '# CPU profile of the stdio route',
  '',
  `${CALLS} echo calls, 32 in flight, one session. Self time of the serve process, ${where}, as a share of the time it was busy: ${(busy / 1000).toFixed(0)} ms busy, ${((busy / CALLS) | 0)} µs per call (start-up included), idle ${((idle / total) * 100).toFixed(0)}% of the run. Flame graph: open stdio-route.cpuprofile in Chrome DevTools (Performance) or speedscope.`,
  '',
  '| self % of busy | function |',
  '| --- | --- |',
  ...top.map(([k, us]) => `| ${((us / busy) * 100).toFixed(1)} | \`${k}\` |`),
  '',
];
writeFileSync(join(out, 'TOP.md'), lines.join('\n'));
process.stdout.write(lines.join('\n'));
