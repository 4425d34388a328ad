import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// Log lines are gathered for a few milliseconds and written to stderr at once (lib/log.ts):
// however the process ends, none is lost, and an error line goes out before the next turn.

const LOG = join(import.meta.dirname, '../../lib/log.ts');

/** Runs `body` in a fresh Node with `log` (a stderr logger) in scope; its exit status and the lines it wrote. */
function run(body: string): { status: number | null; lines: Array<{ message: string; severity: string }> } {
  const script = `import { createLogger } from ${JSON.stringify(LOG)};\nconst log = createLogger();\n${body}`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  const lines = out.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { message: string; severity: string });
  return { status: out.status, lines };
}

describe('log lines on stderr', () => {
  it.each([
    ['the process returns from main', ''],
    ['process.exit() right after', 'process.exit(3);'],
    ['an uncaught throw right after', "throw new Error('boom');"],
    ['an exit from a signal handler', "process.once('SIGTERM', () => process.exit(0)); process.kill(process.pid, 'SIGTERM'); setTimeout(() => {}, 5000);"],
  ])('none is lost when %s', (_name, ending) => {
    const { lines } = run(`for (let i = 0; i < 500; i++) log.info('line ' + i, { i });\n${ending}`);
    expect(lines.map((l) => l.message)).toEqual(Array.from({ length: 500 }, (_, i) => `line ${i}`));
  });

  it('writes lines logged over many turns, in order, while the process lives on', () => {
    const { status, lines } = run(`
      let n = 0;
      const next = () => { log.info('turn ' + n); if (++n < 50) setImmediate(next); };
      next();
      // Still running 200 ms later: by then every line must have been written without an exit.
      setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200);
    `);
    expect(status).toBe(null); // killed: no exit handler ran
    expect(lines.map((l) => l.message)).toEqual(Array.from({ length: 50 }, (_, i) => `turn ${i}`));
  });

  it('writes an error line at once, with the lines before it, before the process dies without an exit handler', () => {
    const { lines } = run(`log.info('before'); log.error('the error'); process.kill(process.pid, 'SIGKILL');`);
    expect(lines.map((l) => [l.severity, l.message])).toEqual([
      ['INFO', 'before'],
      ['ERROR', 'the error'],
    ]);
  });
});
