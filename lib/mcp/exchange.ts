import { jsonAnswer } from '../http/types.ts';
import type { EventLog } from './event-log.ts';
import { isResponse, textOf, type JsonRpcId, type JsonRpcMessage } from './jsonrpc.ts';

// One POST's worth of requests, waiting for their responses. The answer is JSON when the
// responses are all that arrive, and turns into an event stream as soon as the server sends
// anything else first (progress, logs, a sampling request); it ends with the last response.
// Once it is a stream, each event is recorded in the session's event log with its id: when the
// client's connection breaks off, the answer carries on into the log, and the client resumes it
// with a GET carrying Last-Event-ID (resume), getting what it missed and then the rest.

export interface ExchangeOptions {
  readonly batch: boolean;
  readonly headers: Record<string, string>;
  readonly events: EventLog;
  /** A dropped stream is kept for the client to resume; false when it can't (a call without a session): then the exchange ends with it. */
  readonly resumable: boolean;
  /** The reconnection delay of a priming event, for clients that take one (2025-11-25 on); none when undefined. */
  readonly primeRetryMs?: number;
}

export class Exchange {
  readonly pending = new Set<JsonRpcId>();
  readonly progressTokens = new Set<unknown>();
  /** Requests the client cancelled: their answers are not owed (a server should not send one), so nobody waits for them. */
  readonly cancelled = new Set<JsonRpcId>();
  /** The answer's stream in the event log, once it became an event stream. */
  stream?: number;
  readonly #collected: JsonRpcMessage[] = [];
  readonly #options: ExchangeOptions;
  /** The client connection the stream is written to, if one is attached. */
  #controller?: ReadableStreamDefaultController<Uint8Array>;
  #resolve!: (response: Response) => void;
  readonly response = new Promise<Response>((resolve) => (this.#resolve = resolve));
  #finish!: () => void;
  /** Settles when the last response was written (JSON) or recorded (stream), or the exchange was given up. */
  readonly finished = new Promise<void>((resolve) => (this.#finish = resolve));
  #done = false;

  constructor(requests: readonly JsonRpcMessage[], options: ExchangeOptions) {
    this.#options = options;
    for (const r of requests) {
      this.pending.add(r.id!);
      const token = ((r.params as { _meta?: { progressToken?: unknown } } | undefined)?._meta ?? {}).progressToken;
      if (token !== undefined) this.progressTokens.add(token);
    }
  }

  get done(): boolean {
    return this.#done;
  }

  /** Whether a request in it still waits for an answer the client wants. */
  get waiting(): boolean {
    for (const id of this.pending) if (!this.cancelled.has(id)) return true;
    return false;
  }

  /** Whether the client can come back for the rest: the answer is a stream whose events carry ids. */
  get resumable(): boolean {
    return this.#options.resumable && this.stream !== undefined;
  }

  deliver(message: JsonRpcMessage, status = 200): void {
    if (this.#done) return;
    if (isResponse(message)) this.pending.delete(message.id!);
    if (this.stream !== undefined) {
      this.#write(this.#options.events.append(this.stream, textOf(message)));
    } else if (isResponse(message)) {
      this.#collected.push(message);
      if (this.pending.size) return;
      const body = this.#options.batch ? `[${this.#collected.map(textOf).join(',')}]` : textOf(this.#collected[0]!);
      this.#resolve(jsonAnswer(body, status, this.#options.headers));
      this.#done = true;
      this.#finish();
      return;
    } else {
      this.#startStream([...this.#collected.splice(0), message]);
    }
    if (!this.pending.size) this.end();
  }

  /**
   * Turns a long wait into a primed event stream before anything else arrives: a connection
   * that breaks off later leaves the client a place to resume from, where a JSON answer would
   * be lost. Only for clients that take priming events.
   */
  streamNow(): void {
    if (this.#done || this.stream !== undefined || this.#options.primeRetryMs === undefined || !this.#options.resumable) return;
    this.#startStream([...this.#collected.splice(0)]);
  }

  #startStream(first: JsonRpcMessage[]): void {
    const { events, primeRetryMs, resumable } = this.#options;
    const stream = (this.stream = events.openStream());
    const initial = resumable && primeRetryMs !== undefined ? [events.prime(stream, primeRetryMs)] : [];
    for (const m of first) initial.push(events.append(stream, textOf(m)));
    this.#resolve(new Response(this.#connect(initial), { status: 200, headers: { ...this.#options.headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } }));
  }

  /** The client resuming this answer after event `seq`: what it missed, then the rest as it comes. */
  resume(seq: number): ReadableStream<Uint8Array> {
    return this.#connect(this.#options.events.after(this.stream!, seq));
  }

  /** A connection for the stream, replacing any other (a client resuming what it thinks broke off). */
  #connect(initial: Uint8Array[]): ReadableStream<Uint8Array> {
    this.#detach(this.#controller, true);
    let mine: ReadableStreamDefaultController<Uint8Array> | undefined;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        mine = controller;
        for (const bytes of initial) controller.enqueue(bytes);
        if (this.#done) controller.close();
        else this.#controller = controller;
      },
      cancel: () => {
        // The client went away: what follows goes to the log for its resume; without one to come, the exchange is over.
        this.#detach(mine, false);
        if (!this.#options.resumable) this.end();
      },
    });
  }

  #detach(controller: ReadableStreamDefaultController<Uint8Array> | undefined, close: boolean): void {
    if (!controller || controller !== this.#controller) return;
    this.#controller = undefined;
    if (!close) return;
    try {
      controller.close();
    } catch {
      // The client already went away.
    }
  }

  #write(bytes: Uint8Array): void {
    try {
      this.#controller?.enqueue(bytes);
    } catch {
      // The client's connection closed under us: the event is in the log for its resume.
      this.#controller = undefined;
    }
  }

  end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#finish();
    // A client that left before anything was sent still needs its promise settled.
    this.#resolve(new Response(null, { status: 499 }));
    this.#detach(this.#controller, true);
  }
}
