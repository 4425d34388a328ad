import { spawn, spawnSync } from 'node:child_process';
import { freePort } from '../../cli/dev-backend.ts';

// The Firestore emulator from the Google Cloud SDK, on a free loopback port, for one test file.
// `gcloud` leaves a shell wrapper and a JVM behind when it is signalled alone, so the emulator
// runs in its own process group and the whole group is ended.

export interface FirestoreEmulator {
  /** host:port, for FIRESTORE_EMULATOR_HOST. */
  readonly host: string;
  stop(): Promise<void>;
  /** Stops the emulator but remembers how to start it again on the same port (fault tests). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** SIGSTOP: the emulator hangs with its data intact, like a partition; every RPC waits. */
  freeze(): void;
  /** SIGCONT: it answers again, queued RPCs included. */
  thaw(): void;
}

export type EmulatorOrSkip = FirestoreEmulator | { readonly skip: string };

const READY_TIMEOUT_MS = 60_000;

function hasGcloud(): boolean {
  return spawnSync('gcloud', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Starts the emulator, or says in one line why this machine can't. CI has gcloud: there a missing one fails. */
export async function startFirestoreEmulator(): Promise<EmulatorOrSkip> {
  if (!hasGcloud()) {
    const reason = 'gcloud not installed: Firestore emulator tests skipped';
    if (process.env.CI) throw new Error(`${reason} — but CI must run them`);
    return { skip: reason };
  }
  // No GCE metadata server on a test machine: stop google-auth-library from probing for one.
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let group = await launch(host);
  return {
    host,
    stop: async () => endGroup(group),
    pause: async () => endGroup(group),
    resume: async () => {
      group = await launch(host);
    },
    freeze: () => process.kill(-group, 'SIGSTOP'),
    thaw: () => process.kill(-group, 'SIGCONT'),
  };
}

async function launch(host: string): Promise<number> {
  const child = spawn('gcloud', ['emulators', 'firestore', 'start', `--host-port=${host}`, '--quiet'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' },
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8192);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the Firestore emulator exited with ${child.exitCode}:\n${output}`);
    const ready = await fetch(`http://${host}/`, { signal: AbortSignal.timeout(1000) }).then(
      (res) => res.ok,
      () => false,
    );
    if (ready) {
      child.stdout.removeAllListeners('data').resume();
      child.stderr.removeAllListeners('data').resume();
      return child.pid!;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await endGroup(child.pid!);
  throw new Error(`the Firestore emulator did not become ready on ${host} within ${READY_TIMEOUT_MS / 1000} s:\n${output}`);
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function endGroup(pgid: number): Promise<void> {
  if (!groupAlive(pgid)) return;
  process.kill(-pgid, 'SIGCONT'); // a frozen group can't act on SIGTERM
  process.kill(-pgid, 'SIGTERM');
  for (let i = 0; i < 50 && groupAlive(pgid); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
  for (let i = 0; i < 50 && groupAlive(pgid); i++) await new Promise((resolve) => setTimeout(resolve, 100));
}

/**
 * Deadlines for stores on the emulator in tests about what the store does, not how fast: a
 * cold emulator's first calls, and contended transactions serialised by the SDK's backoff,
 * outlast the production deadlines on a loaded two-core machine. Tests of the deadlines
 * themselves use the production values.
 */
export const BEHAVIOUR_DEADLINES = { callMs: 60_000, transactionMs: 110_000 } as const;
