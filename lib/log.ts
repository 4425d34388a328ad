// Structured JSON logs in Cloud Logging's format (one object a line on stdout/stderr).
// Never log tokens, secrets, tool arguments or results: callers pass only what is safe.

export type Severity = 'DEBUG' | 'INFO' | 'NOTICE' | 'WARNING' | 'ERROR';

export interface Logger {
  log(severity: Severity, message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

const ORDER: Record<Severity, number> = { DEBUG: 0, INFO: 1, NOTICE: 2, WARNING: 3, ERROR: 4 };

export function createLogger(options: { minimum?: Severity; write?: (line: string, urgent: boolean) => void; base?: Record<string, unknown> } = {}): Logger {
  const minimum = ORDER[options.minimum ?? 'INFO'];
  const write = options.write ?? toStderr;
  const base = options.base ?? {};
  const logger: Logger = {
    log(severity, message, fields) {
      if (ORDER[severity] < minimum) return;
      write(JSON.stringify({ severity, message, ...base, ...fields, time: new Date().toISOString() }), severity === 'ERROR');
    },
    info: (m, f) => logger.log('INFO', m, f),
    warn: (m, f) => logger.log('WARNING', m, f),
    error: (m, f) => logger.log('ERROR', m, f),
    child: (fields) => createLogger({ ...options, base: { ...base, ...fields } }),
  };
  return logger;
}

/**
 * Lines to stderr, gathered for a few milliseconds and written at once: a write to a pipe
 * (Cloud Run's log collector, a supervisor's) is a system call and wakes its reader, and the
 * audit line of every tools/call would otherwise cost one of each, at every call. An error is
 * written at once, with whatever came before it; whatever is pending at exit is written
 * before the process ends (process.exit, an uncaught throw, a return from main alike).
 */
const GATHER_MS = 20;
const GATHER_MAX_CHARS = 64 * 1024;
let pending: string[] = [];
let pendingChars = 0;
let timer: NodeJS.Timeout | undefined;
function flush(): void {
  clearTimeout(timer);
  timer = undefined;
  if (!pending.length) return;
  const text = pending.join('');
  pending = [];
  pendingChars = 0;
  process.stderr.write(text);
}
function toStderr(line: string, urgent = false): void {
  pending.push(`${line}\n`);
  pendingChars += line.length + 1;
  if (urgent || pendingChars >= GATHER_MAX_CHARS) flush();
  else timer ??= setTimeout(flush, GATHER_MS).unref();
}
process.on('exit', flush);

/** A logger that keeps lines in memory, for tests that assert what was (not) logged. */
export function memoryLogger(): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ minimum: 'DEBUG', write: (line) => lines.push(JSON.parse(line)) });
  return Object.assign(logger, { lines });
}

export const silentLogger: Logger = createLogger({ write: () => {} });
