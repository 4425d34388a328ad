import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Logger } from '../log.ts';
import { BackendError, type Backend, type BackendEvents } from './backend.ts';
import { LineFramer, lineOf, parseMessages, type JsonRpcMessage } from './jsonrpc.ts';
import { sessionContainer } from './session-container.ts';

// One stdio MCP server process per session. It leads its own process group, so ending the
// session ends everything it started (a server that forks a helper leaves no orphan), and it
// sees only the environment its route declares. A `docker run` command's container is outside
// that group: it gets a name per session and is removed by name when the session ends.

export interface StdioChildOptions {
  readonly command: readonly string[];
  /** The complete environment: nothing of the gateway's leaks in unless listed in `inherit`. */
  readonly environment: Readonly<Record<string, string>>;
  readonly inherit: readonly string[];
  /** Set by the gateway over everything else: the session's user (MCP_FRONT_USER_EMAIL, MCP_FRONT_USER_SUB). */
  readonly gatewayEnvironment?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** The MCP session this child serves: names its container when the command is `docker run`. */
  readonly sessionId: string;
  /** SIGTERM first; SIGKILL to the whole group after this. */
  readonly killGraceMs?: number;
  /** How long `docker rm -f` may take at the session's end before it is given up on. */
  readonly containerRemoveTimeoutMs?: number;
  readonly log: Logger;
}

const STDERR_LINE_MAX = 4096;

export function childEnvironment(options: Pick<StdioChildOptions, 'environment' | 'inherit' | 'gatewayEnvironment'>, parent: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  // PATH so the command resolves; HOME because many servers (npx, git) misbehave without it.
  for (const name of ['PATH', 'HOME', ...options.inherit]) {
    const value = parent[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...options.environment, ...options.gatewayEnvironment };
}

export function startStdioChild(options: StdioChildOptions, events: BackendEvents): Backend {
  const container = sessionContainer(options.command, options.sessionId);
  const [program, ...args] = container?.command ?? options.command;
  if (!program) throw new BackendError('the route has no command to run', { status: 500 });
  const env = childEnvironment(options);
  const child: ChildProcessWithoutNullStreams = spawn(program, args, {
    env,
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const log = options.log.child({ pid: child.pid, ...(container ? { container: container.name } : {}) });
  const graceMs = options.killGraceMs ?? 3000;
  let exited = false;
  let closing = false;
  let reported = false;
  const report = (reason: string) => {
    if (reported || closing) return;
    reported = true;
    events.closed(reason);
  };
  const gone = new Promise<void>((resolve) => {
    child.once('close', (code, signal) => {
      exited = true;
      resolve();
      report(`the MCP server exited (${signal ?? `code ${code}`})`);
    });
  });
  child.once('error', (err) => {
    log.error('MCP server could not start', { error: err.message, command: program });
    report(`the MCP server could not start: ${err.message}`);
  });

  const framer = new LineFramer();
  child.stdout.on('data', (chunk: Buffer) => {
    for (const line of framer.push(chunk)) {
      let parsed: ReturnType<typeof parseMessages>;
      try {
        parsed = parseMessages(line);
      } catch {
        log.warn('MCP server wrote a line that is not JSON', { stream: 'stdout', text: line.slice(0, STDERR_LINE_MAX) });
        continue;
      }
      for (const message of parsed.messages) {
        if (message) events.message(message);
        else log.warn('MCP server wrote JSON that is not a JSON-RPC message', { stream: 'stdout', text: line.slice(0, STDERR_LINE_MAX) });
      }
    }
  });
  const stderr = new LineFramer();
  child.stderr.on('data', (chunk: Buffer) => {
    for (const line of stderr.push(chunk)) log.warn(line.slice(0, STDERR_LINE_MAX), { stream: 'stderr' });
  });
  // A write to a dead child must not crash the gateway: 'close' reports the exit.
  child.stdin.on('error', () => undefined);

  let corked = false;
  const uncork = () => {
    corked = false;
    child.stdin.uncork();
  };

  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group is already gone.
    }
  };

  return {
    pid: child.pid,
    async send(message: JsonRpcMessage): Promise<void> {
      if (exited || closing) throw new BackendError('the MCP server has exited');
      // The messages of one turn of the event loop go to the pipe in one write: one wake-up of
      // the server for several calls in flight, not one each.
      if (!corked) {
        corked = true;
        child.stdin.cork();
        setImmediate(uncork);
      }
      // Back-pressure: wait for the pipe to drain rather than buffer without bound.
      if (!child.stdin.write(`${lineOf(message)}\n`)) await new Promise<void>((resolve) => child.stdin.once('drain', resolve).once('close', resolve));
    },
    async close(): Promise<void> {
      closing = true;
      if (child.pid === undefined) return;
      if (!exited) {
        child.stdin.end();
        signalGroup('SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        await gone;
        clearTimeout(timer);
      }
      // The leader is reaped; anything it left in its group goes too.
      signalGroup('SIGKILL');
      if (container) await removeContainer(container.removeCommand, { env, cwd: options.cwd, timeoutMs: options.containerRemoveTimeoutMs ?? 10_000, log });
    },
  };
}

/** Runs `<engine> rm -f <name>`: bounded, and a failure is logged, never thrown, so the session still ends. */
function removeContainer(command: readonly string[], options: { env: Record<string, string>; cwd?: string; timeoutMs: number; log: Logger }): Promise<void> {
  const [program, ...args] = command as [string, ...string[]];
  return new Promise((resolve) => {
    execFile(program, args, { env: options.env, cwd: options.cwd, timeout: options.timeoutMs, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      // `--rm` may have removed it already, or be removing it: either way the goal is reached.
      if (err && !/no such container|already in progress/i.test(stderr)) options.log.warn('could not remove the session\'s container', { command: command.join(' '), error: err.message, stderr: stderr.slice(0, STDERR_LINE_MAX) });
      resolve();
    });
  });
}
