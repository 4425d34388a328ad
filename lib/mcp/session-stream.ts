import { KEEPALIVE } from './sse.ts';

// A session's own stream: the GET stream of Streamable HTTP, or the one stream of legacy
// HTTP+SSE. One connection at a time (a new one replaces the old), kept alive with comments,
// and ended on purpose, with an SSE `retry` hint, before the platform's request limit (Cloud
// Run: 60 min) would cut it mid-message. What is written and what is kept for a reconnection
// is the session's business (session.ts); this is the connection.

export interface SessionStreamOptions {
  readonly keepaliveMs: number;
  /** The connection is ended after this (server.stream_timeout); the owner decides how (onExpired). */
  readonly streamMaxMs: number;
  readonly onExpired: () => void;
}

/** What a client is told to wait before reconnecting a stream the gateway ended on purpose. */
export const RECONNECT_MS = 1000;
const RETRY_HINT = new TextEncoder().encode(`retry: ${RECONNECT_MS}\n\n`);

interface Connection {
  readonly controller: ReadableStreamDefaultController<Uint8Array>;
  readonly keepalive: NodeJS.Timeout;
  readonly lifetime: NodeJS.Timeout;
}

export class SessionStream {
  readonly #options: SessionStreamOptions;
  #open?: Connection;

  constructor(options: SessionStreamOptions) {
    this.#options = options;
  }

  get isOpen(): boolean {
    return this.#open !== undefined;
  }

  /** A new connection, replacing the current one, starting with `initial`. */
  open(signal: AbortSignal, headers: Record<string, string>, initial: readonly Uint8Array[]): Response {
    this.close();
    let mine: Connection | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const keepalive = setInterval(() => controller.enqueue(KEEPALIVE), this.#options.keepaliveMs);
        keepalive.unref();
        const lifetime = setTimeout(() => mine === this.#open && this.#options.onExpired(), this.#options.streamMaxMs);
        lifetime.unref();
        mine = this.#open = { controller, keepalive, lifetime };
        for (const bytes of initial) controller.enqueue(bytes);
      },
      cancel: () => this.close(mine),
    });
    // A client that went away before we got here never fires 'abort': the stream would hold
    // the session busy (never reaped) forever.
    if (signal.aborted) queueMicrotask(() => this.close(mine));
    else signal.addEventListener('abort', () => this.close(mine), { once: true });
    return new Response(stream, { status: 200, headers: { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
  }

  /** Writes to the open connection; false when there is none. */
  write(bytes: Uint8Array): boolean {
    if (!this.#open) return false;
    try {
      this.#open.controller.enqueue(bytes);
      return true;
    } catch {
      // Closed by the client a moment ago; its cancel has not run yet.
      this.close();
      return false;
    }
  }

  /** Closes the connection; given one, only if it is still the current one (a replaced connection's late abort must not close its successor). */
  close(which?: Connection, retryHint = false): void {
    const open = this.#open;
    if (!open || (which !== undefined && which !== open)) return;
    clearInterval(open.keepalive);
    clearTimeout(open.lifetime);
    this.#open = undefined;
    try {
      if (retryHint) open.controller.enqueue(RETRY_HINT);
      open.controller.close();
    } catch {
      // Already closed by the client.
    }
  }
}
