// JSON-RPC 2.0 as MCP uses it, and the newline-delimited framing of the stdio transport.
// The gateway forwards messages as they are; it only looks at `id`, `method` and, for
// initialize, `params`/`result`.

export type JsonRpcId = string | number;

export interface JsonRpcMessage {
  jsonrpc: '2.0';
  id?: JsonRpcId | null;
  method?: string;
  params?: Record<string, unknown> | unknown[];
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

export const isRequest = (m: JsonRpcMessage): boolean => typeof m.method === 'string' && m.id !== undefined && m.id !== null;
export const isResponse = (m: JsonRpcMessage): boolean => m.method === undefined && m.id !== undefined && ('result' in m || 'error' in m);

/** JSON-RPC error codes the gateway answers with. */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  /** What MCP answers a tools/call of an unknown tool with. */
  InvalidParams: -32602,
  /** Implementation-defined server errors (-32000 to -32099). */
  BackendFailed: -32000,
  RequestTimeout: -32001,
  SessionNotFound: -32002,
} as const;

export function errorResponse(id: JsonRpcId | null | undefined, code: number, message: string): JsonRpcMessage {
  return { jsonrpc: '2.0', id: id ?? null, error: { code, message } };
}

/** A parsed JSON value that has the shape of a JSON-RPC 2.0 message. */
export function asMessage(value: unknown): JsonRpcMessage | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const m = value as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') return undefined;
  if (m.id !== undefined && m.id !== null && typeof m.id !== 'string' && typeof m.id !== 'number') return undefined;
  if (m.method !== undefined && typeof m.method !== 'string') return undefined;
  if (m.method === undefined && !('result' in m) && !('error' in m)) return undefined;
  return value as JsonRpcMessage;
}

/**
 * The text a message arrived as, when it arrived alone in it. Forwarding sends that text as it
 * came instead of serialising the parsed object again: the gateway reads a message's `id` and
 * `method`, never rewrites one in place (a changed message is a new object, with no text).
 */
const texts = new WeakMap<JsonRpcMessage, string>();

/**
 * Parses one line or body (throws when it isn't JSON); keeps its text for `textOf` when it is a
 * single message, unless `keepText` is false: a client's text is forwarded as it came only where
 * nothing is decided on its content, because parsers differ (two `name` keys in a tools/call:
 * JSON.parse keeps the last, some servers the first, and a tool policy would judge another tool
 * than the server runs). Re-serialised, the server sees exactly what the gateway read.
 */
export function parseMessages(text: string, keepText = true): { messages: Array<JsonRpcMessage | undefined>; batch: boolean } {
  const value: unknown = JSON.parse(text);
  if (Array.isArray(value)) return { messages: value.map(asMessage), batch: true };
  const message = asMessage(value);
  if (message && keepText) texts.set(message, text);
  return { messages: [message], batch: false };
}

/** The message as JSON text: the text it arrived as, when it has one. */
export function textOf(message: JsonRpcMessage): string {
  return texts.get(message) ?? JSON.stringify(message);
}

/** A message as one line of the stdio transport: its own text, unless that spans lines (pretty-printed JSON). */
export function lineOf(message: JsonRpcMessage): string {
  const text = texts.get(message);
  // A CR is a line end to some readers (Python's universal newlines): such text is re-serialised.
  return text !== undefined && !/[\r\n]/.test(text) ? text : JSON.stringify(message);
}

const NEWLINE = 0x0a;

/**
 * Splits a byte stream into lines: no length limit, chunk boundaries anywhere (inside a
 * multi-byte UTF-8 character too: lines are decoded only once complete), "\r\n" tolerated.
 */
export class LineFramer {
  #pending: Buffer[] = [];

  /** Feeds a chunk; returns the complete lines it finished, without their line ends. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, at);
      const line = this.#pending.length ? Buffer.concat([...this.#pending, piece]) : piece;
      this.#pending = [];
      const end = line.length && line[line.length - 1] === 0x0d ? line.length - 1 : line.length;
      if (end > 0) lines.push(line.toString('utf8', 0, end));
      start = at + 1;
    }
    if (start < chunk.length) this.#pending.push(chunk.subarray(start));
    return lines;
  }

  /** Bytes of an unfinished line held back. */
  get buffered(): number {
    return this.#pending.reduce((n, b) => n + b.length, 0);
  }
}
