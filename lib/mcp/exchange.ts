import { isResponse, type JsonRpcId, type JsonRpcMessage } from './jsonrpc.ts';
import { encodeEvent } from './sse.ts';

// One POST's worth of requests, waiting for their responses. The answer is JSON when the
// responses are all that arrive, and turns into an event stream as soon as the server sends
// anything else first (progress, logs, a sampling request); it ends with the last response.

export class Exchange {
  readonly pending = new Set<JsonRpcId>();
  readonly progressTokens = new Set<unknown>();
  readonly #collected: JsonRpcMessage[] = [];
  readonly #batch: boolean;
  readonly #headers: Record<string, string>;
  #controller?: ReadableStreamDefaultController<Uint8Array>;
  #resolve!: (response: Response) => void;
  readonly response = new Promise<Response>((resolve) => (this.#resolve = resolve));
  #finish!: () => void;
  /** Settles when the last response was written (JSON) or the stream closed. */
  readonly finished = new Promise<void>((resolve) => (this.#finish = resolve));
  #done = false;

  constructor(requests: readonly JsonRpcMessage[], batch: boolean, headers: Record<string, string>) {
    this.#batch = batch;
    this.#headers = headers;
    for (const r of requests) {
      this.pending.add(r.id!);
      const token = ((r.params as { _meta?: { progressToken?: unknown } } | undefined)?._meta ?? {}).progressToken;
      if (token !== undefined) this.progressTokens.add(token);
    }
  }

  get done(): boolean {
    return this.#done;
  }

  deliver(message: JsonRpcMessage, status = 200): void {
    if (this.#done) return;
    if (isResponse(message)) this.pending.delete(message.id!);
    if (this.#controller) {
      this.#controller.enqueue(encodeEvent(JSON.stringify(message), { event: 'message' }));
    } else if (isResponse(message)) {
      this.#collected.push(message);
      if (this.pending.size) return;
      const body = this.#batch ? this.#collected : this.#collected[0];
      this.#resolve(new Response(JSON.stringify(body), { status, headers: { ...this.#headers, 'content-type': 'application/json' } }));
      this.#done = true;
      this.#finish();
      return;
    } else {
      this.#startStream([...this.#collected.splice(0), message]);
    }
    if (!this.pending.size) this.end();
  }

  #startStream(first: JsonRpcMessage[]): void {
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
        for (const m of first) controller.enqueue(encodeEvent(JSON.stringify(m), { event: 'message' }));
      },
      cancel: () => this.end(),
    });
    this.#resolve(new Response(stream, { status: 200, headers: { ...this.#headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } }));
  }

  end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#finish();
    // A client that left before anything was sent still needs its promise settled.
    this.#resolve(new Response(null, { status: 499 }));
    try {
      this.#controller?.close();
    } catch {
      // The client already went away.
    }
  }
}
