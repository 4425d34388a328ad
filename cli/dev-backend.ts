import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import type { HttpRouteConfig } from '../lib/config/config.ts';
import type { Logger } from '../lib/log.ts';

// `dev_backend`: for local work `serve` starts an http route's backend itself, on a free
// loopback port, so `npm start` needs nothing else running. Never used in production
// (config load refuses it for a non-loopback issuer).

/**
 * The program for a locally run command's first word. A bare `node` is the Node running the
 * gateway, not the first `node` on PATH: machines often keep an older system Node there (the
 * project pins Node 24 as a dev dependency), and the demo servers need Node 24's type
 * stripping. Local `serve` only: in a route image, `node` is the server image's own Node.
 */
export function programFor(name: string): string {
  return name === 'node' ? process.execPath : name;
}

/** A dev backend that could not start or never listened: the user's command, so one line, no stack trace. */
export class DevBackendError extends Error {
  override readonly name = 'DevBackendError';
  readonly code = 'DEV_BACKEND_FAILED';
}

export interface DevBackend {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => socket.end(() => resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startDevBackend(route: HttpRouteConfig, log: Logger, readyWithinMs = 20_000): Promise<DevBackend> {
  const spec = route.devBackend!;
  const port = await freePort();
  const [program, ...args] = spec.command;
  // Its own process group, so stopping it also ends anything it started.
  const child = spawn(programFor(program!), args, {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), NODE_OPTIONS: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => log.warn('dev backend stderr', { route: route.path, stream: 'stderr', text: text.slice(0, 2000) }));
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new DevBackendError(`dev backend for ${route.path} could not start: ${err.message}`)));
    child.once('exit', (code, signal) => reject(new DevBackendError(`dev backend for ${route.path} exited (${signal ?? code}) before it listened on port ${port}`)));
  });
  failed.catch(() => undefined);
  const deadline = Date.now() + readyWithinMs;
  for (;;) {
    if (await Promise.race([portAnswers(port), failed])) break;
    if (Date.now() > deadline) {
      killGroup(child, 'SIGKILL');
      throw new DevBackendError(`dev backend for ${route.path} did not listen on port ${port} within ${readyWithinMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}${spec.path}`,
    pid: child.pid!,
    async stop() {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
      await exited(child);
      clearTimeout(timer);
    },
  };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
