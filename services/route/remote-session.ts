import { isRequest, type JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { RelayGoneError, type Relay } from '../../lib/mcp/relay.ts';
import type { McpSession } from '../../lib/mcp/session.ts';
import type { SessionOwnership } from './ownership.ts';

// A session another instance owns, as this instance serves it: every POST and GET (and a
// legacy SSE session's POST to /message) is relayed to the owner (lib/mcp/relay.ts) and its
// answer streamed back. While an exchange is open the owner's lease is checked every lease/3
// (one read): an owner that died before answering is replaced (this instance takes the session
// over and serves the call itself; a legacy session is over instead); one that dies during a
// stream ends that stream, and the client's next request finds the new owner.

/** How a route finds a session again after its owner changed: the registry's sessionFor (or legacySessionFor), without the relay's retry. */
export type FindSession = () => Promise<McpSession | RemoteSession | undefined>;

export interface RemoteSessionDeps {
  readonly relay: Relay;
  readonly ownership: SessionOwnership;
  readonly leaseMs: number;
  /** The owner answers a call within the route timeout (with an error, at worst): past this plus a margin, the relay lost it. */
  readonly requestTimeoutMs: number;
  readonly find: FindSession;
}

/** How long a GET waits for the owner to open its stream; a POST waits the route timeout plus this. */
const RELAY_MARGIN_MS = 10_000;

export class RemoteSession {
  readonly id: string;
  readonly userSub: string;
  readonly owner: string;
  readonly #deps: RemoteSessionDeps;

  constructor(id: string, userSub: string, owner: string, deps: RemoteSessionDeps) {
    this.id = id;
    this.userSub = userSub;
    this.owner = owner;
    this.#deps = deps;
  }

  post(messages: readonly JsonRpcMessage[], batch: boolean, signal: AbortSignal, headers: Record<string, string>): Promise<Response> {
    const expectsAnswer = messages.some(isRequest);
    return this.#relay(
      signal,
      headers,
      this.#deps.requestTimeoutMs + RELAY_MARGIN_MS,
      (s) => this.#deps.relay.call(this.owner, { kind: 'post', session: this.id, messages: [...messages], batch, headers: { 'mcp-session-id': this.id } }, s, { expectsAnswer }),
      (next) => next.post(messages, batch, signal, headers),
    );
  }

  /** Legacy HTTP+SSE: 202 once the owner handed the messages over; their answers go out on the owner's stream. */
  postLegacy(messages: readonly JsonRpcMessage[], signal: AbortSignal, headers: Record<string, string>): Promise<Response> {
    return this.#relay(
      signal,
      headers,
      this.#deps.requestTimeoutMs + RELAY_MARGIN_MS,
      (s) => this.#deps.relay.call(this.owner, { kind: 'legacy', session: this.id, messages: [...messages] }, s),
      (next) => next.postLegacy(messages, signal, headers),
    );
  }

  openStream(signal: AbortSignal, headers: Record<string, string>): Promise<Response> {
    return this.#relay(signal, headers, RELAY_MARGIN_MS, (s) => this.#deps.relay.call(this.owner, { kind: 'get', session: this.id, headers: { 'mcp-session-id': this.id } }, s), async (next) => next.openStream(signal, headers));
  }

  async #relay(signal: AbortSignal, headers: Record<string, string>, answerWithinMs: number, call: (signal: AbortSignal) => Promise<Response>, again: (next: McpSession | RemoteSession) => Promise<Response>): Promise<Response> {
    const exchange = new AbortController();
    const ownerGone = this.#watchOwner(exchange.signal);
    const stop = () => exchange.abort();
    signal.addEventListener('abort', stop, { once: true });
    // Bounds the wait for the answer (its head, for a stream) only: a stream then lasts as long as it lasts.
    const late = new AbortController();
    const deadline = setTimeout(() => late.abort(), answerWithinMs);
    let response: Response;
    try {
      response = await call(AbortSignal.any([signal, ownerGone, late.signal]));
    } catch (err) {
      stop();
      if (signal.aborted) return new Response(null, { status: 499 });
      if (late.signal.aborted && !ownerGone.aborted) {
        return new Response(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: `instance ${this.owner}, which runs the session, did not answer within ${answerWithinMs / 1000} s` } }), {
          status: 504,
          headers: { ...headers, 'content-type': 'application/json' },
        });
      }
      if (!(err instanceof RelayGoneError) && !ownerGone.aborted) throw err;
      // The owner is gone (or let the session go) before answering: whoever runs it now serves the call.
      const next = await this.#deps.find();
      if (!next || (next instanceof RemoteSession && next.owner === this.owner)) return notFound(headers);
      return again(next);
    } finally {
      clearTimeout(deadline);
    }
    const merged = { ...Object.fromEntries(response.headers), ...headers };
    if (!response.body || !(response.headers.get('content-type') ?? '').includes('text/event-stream')) {
      stop();
      return new Response(response.body, { status: response.status, headers: merged });
    }
    // An event stream: the owner is watched as long as it is open.
    const watched = response.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ flush: stop }));
    return new Response(watched, { status: response.status, headers: merged });
  }

  /** Aborts once the owner's lease lapsed; stops when `until` aborts. */
  #watchOwner(until: AbortSignal): AbortSignal {
    const gone = new AbortController();
    const check = async () => {
      if (until.aborted) return;
      const alive = await this.#deps.ownership.alive(this.owner).catch(() => true);
      if (until.aborted) return;
      if (!alive) return void gone.abort();
      timer = setTimeout(check, this.#deps.leaseMs / 3);
      timer.unref();
    };
    let timer = setTimeout(check, this.#deps.leaseMs / 3);
    timer.unref();
    until.addEventListener('abort', () => clearTimeout(timer), { once: true });
    return gone.signal;
  }
}

function notFound(headers: Record<string, string>): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32002, message: 'session not found: initialize again' } }), { status: 404, headers: { ...headers, 'content-type': 'application/json' } });
}
