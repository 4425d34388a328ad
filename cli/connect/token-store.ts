import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, fsyncSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '../../lib/random.ts';

// Where `connect` keeps what it must remember per server: the client registration and the
// tokens. One file per server (and client), mode 0600 in a 0700 directory, written atomically
// (temp file, fsync, rename). Sign-in and refresh happen under a lock file with a lease, so
// several `connect` processes (Claude Desktop starts them at will) share one sign-in.

export interface StoredGrant {
  server: string;
  resource: string;
  clientId: string;
  clientSecret?: string;
  redirectUri?: string;
  accessToken?: string;
  refreshToken?: string;
  /** Epoch ms. */
  expiresAt?: number;
  lifetimeMs?: number;
  /** `connect --all`: every resource the sign-in asked for; the grant covers those the user may use. */
  resources?: string[];
  /** `connect --all`: a token for each route the sign-in covers. */
  perResource?: Record<string, { accessToken: string; expiresAt: number; lifetimeMs: number }>;
}

export function connectDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.MCP_FRONT_CONNECT_DIR ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'mcp-front', 'connect');
}

export class GrantFile {
  readonly path: string;
  readonly #lock: string;
  constructor(dir: string, resource: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const name = sha256(resource).slice(0, 32);
    this.path = join(dir, `${name}.json`);
    this.#lock = join(dir, `${name}.lock`);
  }

  read(): StoredGrant | undefined {
    try {
      return JSON.parse(readFileSync(this.path, 'utf8')) as StoredGrant;
    } catch {
      return undefined;
    }
  }

  write(grant: StoredGrant): void {
    const temp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify(grant, null, 2), { mode: 0o600 });
    const fd = openSync(temp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, this.path);
  }

  /** Deletes the tokens only if the file still holds the one that failed (another process may have refreshed already). */
  forgetTokensIf(failedRefreshToken: string | undefined): void {
    const current = this.read();
    if (!current || current.refreshToken !== failedRefreshToken) return;
    const { accessToken: _a, refreshToken: _r, expiresAt: _e, ...rest } = current;
    this.write(rest);
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }

  /** Runs `fn` holding the lock; a lock older than its lease (a crashed holder) is taken over. */
  async withLock<T>(fn: () => Promise<T>, leaseMs = 5 * 60_000): Promise<T> {
    for (;;) {
      try {
        const fd = openSync(this.#lock, 'wx', 0o600);
        writeFileSync(fd, JSON.stringify({ pid: process.pid, until: Date.now() + leaseMs }));
        closeSync(fd);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let holder: { pid: number; until: number } | undefined;
        try {
          holder = JSON.parse(readFileSync(this.#lock, 'utf8')) as { pid: number; until: number };
        } catch {
          holder = undefined; // being written right now
        }
        if (holder && (holder.until < Date.now() || !alive(holder.pid))) rmSync(this.#lock, { force: true });
        else await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    try {
      return await fn();
    } finally {
      rmSync(this.#lock, { force: true });
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function listGrants(dir: string): StoredGrant[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as StoredGrant);
  } catch {
    return [];
  }
}
