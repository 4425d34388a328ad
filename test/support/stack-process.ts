import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../cli/dev-backend.ts';
import { systemClock } from '../../lib/clock.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';

// Starts `mcp-front serve` as a real process on a free loopback port, the way a user does.

export interface StackProcess {
  readonly baseUrl: string;
  readonly pid: number;
  readonly dataDir: string;
  output(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: the crash Cloud Run's instance loss looks like. */
  kill(): Promise<void>;
}

export const CLI = join(import.meta.dirname, '../../cli/mcp-front.ts');

export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Writes `yaml` to a temp file (or uses examples/local.yaml when omitted) and starts serve. */
export async function startStackProcess(options: { yaml?: string; env?: Record<string, string>; port?: number; dataDir?: string; nodeArgs?: string[]; serveArgs?: string[] } = {}): Promise<StackProcess> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'mcp-front-test-'));
  const args = [...(options.nodeArgs ?? []), CLI, 'serve', ...(options.serveArgs ?? [])];
  if (options.yaml) {
    const file = join(dataDir, 'config.yaml');
    writeFileSync(file, options.yaml);
    args.push('--config', file);
  }
  const child = spawn(process.execPath, args, {
    cwd: join(import.meta.dirname, '../..'),
    env: { ...process.env, MCP_FRONT_PORT: String(port), MCP_FRONT_DATA_DIR: dataDir, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (t: string) => (out += t));
  child.stderr!.setEncoding('utf8').on('data', (t: string) => (out += t));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within 30 s:\n${out}`)), 30_000);
    const check = () => {
      if (out.includes('mcp-front is up')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before it was up:\n${out}`));
    });
  });
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    dataDir,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      return exitOf(child);
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exitOf(child);
    },
  };
}

/** An access token for one route of a running local stack, signed with the key in its SQLite store: no sign-in needed. */
export async function routeToken(dataDir: string, baseUrl: string, routePath: string): Promise<string> {
  const store = await openSqliteStore({ file: join(dataDir, 'mcp-front.sqlite'), clock: systemClock });
  try {
    const keys = await loadKeySet(store, systemClock);
    return (await signAccessToken(keys.current, baseUrl, 600_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${baseUrl}${routePath}/mcp`, client_id: 'c', scope: 'mcp' })).token;
  } finally {
    await store.close();
  }
}
