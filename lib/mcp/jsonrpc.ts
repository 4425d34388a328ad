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
