import type { JsonRpcId, JsonRpcMessage } from './jsonrpc.ts';

// What an MCP session talks to: a stdio child (stdio-child.ts) or a remote Streamable HTTP
// server (http-backend.ts). Both are message pipes; the session (session.ts) matches
// responses to requests and decides how each reaches the client.

export interface Backend {
  /** Hands one client message to the server; rejects with BackendError when it can't. */
  send(message: JsonRpcMessage): Promise<void>;
  /** Ends the server side (kills the child's process group, DELETEs the remote session). Resolves once it is gone. */
  close(): Promise<void>;
  /** The child's pid, for stdio backends. */
  readonly pid?: number;
}

/**
 * Which stream a server message came on, when the transport tells: the answer to one client
 * request (Streamable HTTP's POST stream), or the session's own stream (its GET stream).
 * A stdio server's messages carry no such thing.
 */
export type MessageOrigin = { readonly request: JsonRpcId } | 'session';

export interface BackendEvents {
  /** A message from the server: a response, a notification or a server-to-client request. */
  message(message: JsonRpcMessage, origin?: MessageOrigin): void;
  /** The server went away on its own (the child exited, the remote stream failed for good). */
  closed(reason: string): void;
}

/** The server could not be reached or failed at the transport level: answered 502 with a JSON-RPC error. */
export class BackendError extends Error {
  override readonly name = 'BackendError';
  readonly status: number;
  constructor(message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.status = options.status ?? 502;
  }
}
