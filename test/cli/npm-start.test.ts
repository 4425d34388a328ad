import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../cli/dev-backend.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { descendantsOf, stillPresent } from '../support/process-table.ts';
import { exitOf, routeToken } from '../support/stack-process.ts';

// A supervisor, `timeout` or a container runtime stops `npm start` by sending SIGTERM to npm
// alone. npm forwards it to the script's process; the server must be that process (not a
// shell that dies and orphans it), so it shuts down and takes its children with it. Ctrl-C
// signals the whole foreground group, so the server gets SIGINT twice (the terminal's and
// npm's): the second must not cut its shutdown short.

const ROOT = join(import.meta.dirname, '../..');

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => socket.end(() => resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

async function until(condition: () => Promise<boolean> | boolean, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return condition();
}

/** Starts `npm start`, opens a stdio session, stops it with `stop(npm's pid)`, and checks nothing is left. */
async function startThenStop(stop: (pid: number) => void): Promise<void> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-npm-start-'));
  // Its own process group, as a shell's job is: the test's signals reach nothing else.
  const npm = spawn('npm', ['start'], { cwd: ROOT, env: { ...process.env, MCP_FRONT_PORT: String(port), MCP_FRONT_DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  npm.stdout!.setEncoding('utf8').on('data', (t: string) => (out += t));
  npm.stderr!.setEncoding('utf8').on('data', (t: string) => (out += t));
  const seen = new Set<number>();
  const note = () => descendantsOf(npm.pid!).forEach((p) => seen.add(p.pid));
  try {
    expect(await until(() => out.includes('mcp-front is up') || npm.exitCode !== null, 30_000), out).toBe(true);
    expect(out).toContain('mcp-front is up');

    // One stdio session too, so a per-session child is among the processes to end.
    const baseUrl = `http://127.0.0.1:${port}`;
    const token = await routeToken(dataDir, baseUrl, '/demo');
    const client = new Client({ name: 'npm-start-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${baseUrl}/demo/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    note();
    // The server, its dev backend and the session's child at least.
    expect(seen.size, out).toBeGreaterThanOrEqual(3);

    stop(npm.pid!);
    const code = await Promise.race([exitOf(npm), new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
    await client.close().catch(() => undefined);
    expect(code, out).toBe(0);
    expect(await until(() => stillPresent([...seen]).length === 0, 5_000), JSON.stringify(stillPresent([...seen]))).toBe(true);
    expect(await portAnswers(port)).toBe(false);
  } finally {
    // On failure, leave nothing running for the next test.
    for (const pid of [npm.pid!, ...seen]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // ESRCH: already gone, as it should be
      }
    }
  }
}

describe('npm start', () => {
  it('SIGTERM to the npm process alone (a supervisor, timeout, a container) stops the server and every process it started; npm exits 0', () => startThenStop((pid) => process.kill(pid, 'SIGTERM')), 60_000);

  it("SIGINT to npm's whole process group (Ctrl-C) stops the server and every process it started; npm exits 0", () => startThenStop((pid) => process.kill(-pid, 'SIGINT')), 60_000);
});
