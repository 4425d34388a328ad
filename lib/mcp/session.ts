import type { Logger } from '../log.ts';
import { BackendError, type Backend, type MessageOrigin } from './backend.ts';
import { ErrorCode, errorResponse, isRequest, isResponse, textOf, type JsonRpcId, type JsonRpcMessage } from './jsonrpc.ts';
import { encodeEvent } from './sse.ts';
import { EventLog, GET_STREAM } from './event-log.ts';
import { Exchange } from './exchange.ts';
import { RECONNECT_MS, SessionStream } from './session-stream.ts';
import type { ToolPolicy } from './tool-policy.ts';

// One MCP session as the client sees it: the gateway's Mcp-Session-Id, its backend, and the
// open HTTP exchanges. Each POST that carries requests is an Exchange that ends when every
// request in it has its response; a response is JSON when nothing else arrives first, and
// becomes an event stream as soon as the server sends something else (progress, logs,
// sampling). Server messages unrelated to an open exchange go to the GET stream. Every event
// of those streams has an id and is kept a while (event-log.ts): a client whose stream broke
// off resumes it with a GET carrying Last-Event-ID, the GET stream and a POST's answer alike.

export interface SessionInfo {
  readonly id: string;
  readonly userSub: string;
  readonly clientId: string;
  /** The version of the user's own credential the backend was started with (routes[].user_credential). */
  readonly credentialVersion?: string;
}

export interface SessionOptions extends SessionInfo {
  readonly log: Logger;
  /** Bound on each request (the route's `timeout`). */
  readonly requestTimeoutMs: number;
  readonly keepaliveMs: number;
  /**
   * A GET (or legacy SSE) stream is ended after this, with an SSE `retry` hint, before the
   * platform's request limit (Cloud Run: 60 min) would cut it mid-message.
   */
  readonly streamMaxMs: number;
  /** Called once when the session is over, whatever ended it. */
  readonly onEnd: (session: McpSession) => void;
  /** Legacy HTTP+SSE (2024-11-05): every server message, responses too, goes to the one stream. */
  readonly legacy?: boolean;
  /** One call per answered tools/call: the audit line (never arguments or results). */
  readonly onToolCall?: (call: { tool: string; durationMs: number; outcome: 'ok' | 'tool_error' | 'error' | 'refused' }) => void;
  /** The route's tool policy: hidden tools are left out of tools/list answers, and calls of them answered here. */
  readonly toolPolicy?: ToolPolicy;
}

/**
 * Notifications about the session as a whole, never about one request: whatever is in flight,
 * they go to the GET stream, the one for messages unrelated to a request.
 */
const SESSION_NOTIFICATIONS = new Set(['notifications/resources/updated', 'notifications/resources/list_changed', 'notifications/tools/list_changed', 'notifications/prompts/list_changed']);

/**
 * A request of a client that takes priming events (2025-11-25 on) still unanswered after this
 * becomes a primed event stream (Exchange.streamNow): if its connection breaks off later, the
 * client can resume it. Quicker answers stay plain JSON.
 */
const STREAM_AFTER_MS = 250;

/** The first protocol version whose clients take priming events: empty data with an id (SEP-1699). */
const PRIMING_SINCE = '2025-11-25';

/** How a client asks for the session's stream: its protocol version, and where it left off, if it is resuming. */
export interface StreamRequest {
  readonly protocolVersion?: string;
  readonly lastEventId?: string | null;
}

export class McpSession implements SessionInfo {
  readonly id: string;
  readonly userSub: string;
  readonly clientId: string;
  readonly credentialVersion?: string;
  protocolVersion = '2025-03-26';
  initializeParams: unknown;
  lastActivity = Date.now();
  backend!: Backend;
  readonly #options: SessionOptions;
  readonly #byId = new Map<JsonRpcId, Exchange>();
  readonly #open = new Set<Exchange>();
  readonly #events = new EventLog();
  readonly #stream: SessionStream;
  /** The newest GET-stream event written to a connection: those after it wait for the next GET. */
  #getWritten = 0;
  /** Legacy transport: requests not answered yet, failed with an error if the session ends. */
  readonly #legacyPending = new Set<JsonRpcId>();
  /** tools/call requests in flight: which tool, since when (for the audit line). */
  readonly #calls = new Map<JsonRpcId, { tool: string; started: number }>();
  /** The client's tools/list requests in flight, whose answers the tool policy filters. */
  readonly #toolLists = new Set<JsonRpcId>();
  /** The gateway's own requests to the backend (re-initialization), by id. */
  readonly #internal = new Map<JsonRpcId, (response: JsonRpcMessage) => void>();
  #ended = false;
  /** The legacy stream reached server.stream_timeout: its end carries the retry hint. */
  #streamExpired = false;

  constructor(options: SessionOptions) {
    this.#options = options;
    this.id = options.id;
    this.userSub = options.userSub;
    this.clientId = options.clientId;
    this.#stream = new SessionStream({ keepaliveMs: options.keepaliveMs, streamMaxMs: options.streamMaxMs, onExpired: () => this.#expireStream() });
    if (options.credentialVersion !== undefined) this.credentialVersion = options.credentialVersion;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Legacy HTTP+SSE (2024-11-05): the session lives as long as its one stream. */
  get legacy(): boolean {
    return this.#options.legacy ?? false;
  }

  /** Resolves once no request of this session is waiting for its answer (shutdown drain); one the client cancelled isn't. */
  async drained(): Promise<void> {
    for (let waiting = [...this.#open].filter((e) => e.waiting); waiting.length; waiting = [...this.#open].filter((e) => e.waiting)) {
      await Promise.race(waiting.map((e) => e.finished));
    }
  }

  /** Busy sessions are never reaped as idle. */
  get busy(): boolean {
    return this.#open.size > 0 || this.#stream.isOpen;
  }

  /** From the backend; `origin` when its transport tells which stream the message came on. */
  receive(received: JsonRpcMessage, origin?: MessageOrigin): void {
    const message = this.#filtered(received);
    if (isResponse(message) && this.#calls.size) this.#audit(message);
    if (this.#options.legacy) {
      if (isResponse(message)) this.#legacyPending.delete(message.id!);
      return this.#toStream(message);
    }
    if (isResponse(message)) {
      const own = this.#internal.get(message.id!);
      if (own) {
        this.#internal.delete(message.id!);
        return own(message);
      }
      const exchange = this.#byId.get(message.id!);
      if (!exchange) return void this.#options.log.log('DEBUG', 'response for no open request', { id: String(message.id) });
      this.#byId.delete(message.id!);
      return exchange.deliver(message);
    }
    const target = this.#callFor(message, origin);
    if (target) return target.deliver(message);
    this.#toStream(message);
  }

  /**
   * The call in flight a server notification or request belongs with, if any: the one on whose
   * answer stream it came, or whose progress token it names; for a stdio server, which tells
   * neither for logs, sampling or elicitation, the only call in flight. With several in flight
   * that is unknowable and the message goes to the GET stream: never onto another call's stream.
   */
  #callFor(message: JsonRpcMessage, origin: MessageOrigin | undefined): Exchange | undefined {
    if (typeof origin === 'object') return this.#byId.get(origin.request);
    if (origin === 'session' || SESSION_NOTIFICATIONS.has(message.method!)) return undefined;
    const open = [...this.#open].filter((e) => !e.done);
    const token = (message.params as { progressToken?: unknown } | undefined)?.progressToken;
    if (token !== undefined) return open.find((e) => e.progressTokens.has(token));
    return open.length === 1 ? open[0] : undefined;
  }

  /**
   * A POST: notifications and responses are handed over (202); requests wait for their
   * responses. `resumable`: the client can come back for an answer whose connection broke off
   * (false for a call without a session, which has no id to come back with).
   */
  async post(messages: readonly JsonRpcMessage[], batch: boolean, signal: AbortSignal, headers: Record<string, string>, options: { protocolVersion?: string; resumable?: boolean } = {}): Promise<Response> {
    this.lastActivity = Date.now();
    // Gone while we were getting ready (a call without a session waits for its server to start):
    // send nothing; an abort listener added now would never fire, and the call would run on.
    if (signal.aborted) return new Response(null, { status: 499 });
    const requests = messages.filter(isRequest);
    const refused = new Set(requests.filter((r) => this.#hidden(r) !== undefined));
    this.#noteCancellations(messages);
    if (!requests.length) {
      try {
        for (const m of messages) await this.backend.send(m);
      } catch (err) {
        return backendFailure(err, undefined, headers);
      }
      return new Response(null, { status: 202, headers });
    }
    const primed = (options.protocolVersion ?? this.protocolVersion) >= PRIMING_SINCE;
    const exchange = new Exchange(requests, { batch, headers, events: this.#events, resumable: options.resumable ?? true, primeRetryMs: primed ? RECONNECT_MS : undefined });
    for (const r of requests) {
      if (refused.has(r)) continue;
      this.#byId.set(r.id!, exchange);
      this.#track(r);
    }
    this.#open.add(exchange);
    // Never reaches the server: answered here, in the same exchange as the rest.
    for (const r of refused) exchange.deliver(this.#refuse(r));
    const timer = setTimeout(() => this.#expire(exchange), this.#options.requestTimeoutMs);
    // Not initialize: the route reads its JSON answer (the negotiated version), and a new server may take a while to start.
    const streamSoon = primed && !requests.some((r) => r.method === 'initialize') ? setTimeout(() => exchange.streamNow(), STREAM_AFTER_MS) : undefined;
    // A client that holds a place in the answer's stream may resume it: the calls go on (the
    // spec: a disconnection is not a cancellation). One that can't will never see the answers.
    const onAbort = () => exchange.resumable || this.#abandon(exchange, 'the client disconnected');
    signal.addEventListener('abort', onAbort, { once: true });
    void (async () => {
      for (const m of messages) {
        if (refused.has(m)) continue;
        try {
          await this.backend.send(m);
        } catch (err) {
          const status = err instanceof BackendError ? err.status : 502;
          for (const r of requests) {
            if (!exchange.pending.has(r.id!)) continue;
            this.#byId.delete(r.id!);
            this.#toolLists.delete(r.id!);
            exchange.deliver(errorResponse(r.id, ErrorCode.BackendFailed, (err as Error).message), status);
          }
          return;
        }
      }
    })();
    const response = await exchange.response;
    // The exchange stays registered while its stream is open; clean up when it ends.
    const cleanup = () => {
      clearTimeout(timer);
      clearTimeout(streamSoon);
      signal.removeEventListener('abort', onAbort);
      this.#open.delete(exchange);
    };
    void exchange.finished.then(cleanup);
    return response;
  }

  /**
   * Initializes the backend on the client's behalf, with the client's original initialize
   * params: a session this instance does not hold (another instance had it, or this one
   * restarted) carries on instead of answering 404. The server's answer is not the client's.
   */
  async initializeBackend(params: unknown): Promise<void> {
    const id = `mcp-front-init-${this.id.slice(0, 8)}-${Date.now()}`;
    const answered = new Promise<JsonRpcMessage>((resolve, reject) => {
      this.#internal.set(id, resolve);
      const timer = setTimeout(() => {
        this.#internal.delete(id);
        reject(new BackendError('the MCP server did not answer initialize in time', { status: 504 }));
      }, this.#options.requestTimeoutMs);
      timer.unref();
    });
    await this.backend.send({ jsonrpc: '2.0', id, method: 'initialize', params: params as Record<string, unknown> });
    const response = await answered;
    if (response.error) throw new BackendError(`the MCP server refused to initialize again: ${response.error.message}`);
    await this.backend.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  /**
   * GET: the stream for server messages not tied to a request; a new one replaces the old. It
   * starts with what the client missed: after its Last-Event-ID when it names a place in this
   * stream, else whatever no connection has carried yet. With a Last-Event-ID of a POST's
   * answer, it is that answer resumed instead (resumeAnswer).
   */
  openStream(signal: AbortSignal, headers: Record<string, string>, request: StreamRequest = {}): Response {
    this.lastActivity = Date.now();
    let after = this.#getWritten;
    if (request.lastEventId) {
      const at = this.#events.position(request.lastEventId);
      // As the SDK's server answers an event id it cannot place.
      if (!at) return streamError(400, `Last-Event-ID ${request.lastEventId.slice(0, 100)} is not an event id of this gateway`, headers);
      if (at.stream !== GET_STREAM) return this.#resumeAnswer(at.stream, at.seq, at.foreign, headers);
      // An id of another instance's (or a restarted one's) log: the events it knew of are gone; what this one holds is new to the client.
      if (!at.foreign) after = at.seq;
      if (at.foreign || !this.#events.holdsAfter(at.seq)) this.#options.log.log('INFO', 'GET stream resumed after events no longer held: some are lost', { session: this.id, lastEventId: request.lastEventId });
    }
    const initial = this.#events.after(GET_STREAM, after);
    // Nothing to replay: a priming event gives the client a place to resume from all the same.
    if (!initial.length && (request.protocolVersion ?? this.protocolVersion) >= PRIMING_SINCE) initial.push(this.#events.prime(GET_STREAM, RECONNECT_MS));
    this.#getWritten = this.#events.last;
    return this.#stream.open(signal, headers, initial);
  }

  /**
   * A POST's answer stream, resumed by a GET after event `seq`: what the client missed, then,
   * while requests in it are still waiting, the rest as it comes. An answer this session never
   * gave, or one whose events are gone, can't be resumed (400, as the SDK's server answers).
   */
  #resumeAnswer(stream: number, seq: number, foreign: boolean, headers: Record<string, string>): Response {
    const sse = { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
    const live = foreign ? undefined : [...this.#open].find((e) => e.stream === stream && !e.done);
    if (live) return new Response(live.resume(seq), { status: 200, headers: sse });
    const missed = foreign || !this.#events.issued(stream) ? [] : this.#events.after(stream, seq);
    if (!missed.length) return streamError(400, `the stream of event ${stream}.${seq} is over or no longer held here: nothing to resume`, headers);
    const replay = new ReadableStream<Uint8Array>({
      start: (controller) => {
        for (const bytes of missed) controller.enqueue(bytes);
        controller.close();
      },
    });
    return new Response(replay, { status: 200, headers: sse });
  }

  /**
   * Legacy HTTP+SSE: the stream that carries everything, opened by an `endpoint` event naming
   * where to POST. The session lives exactly as long as this stream. Its events have no ids:
   * the transport has no way to resume.
   */
  openLegacyStream(signal: AbortSignal, endpoint: string, headers: Record<string, string>): Response {
    const response = this.#stream.open(signal, headers, [encodeEvent(endpoint, { event: 'endpoint' })]);
    if (signal.aborted) queueMicrotask(() => void this.end('the SSE client disconnected'));
    else signal.addEventListener('abort', () => void this.end('the SSE client disconnected'), { once: true });
    return response;
  }

  /** Legacy HTTP+SSE: POSTed messages are handed over (202, or the error that stopped them); answers arrive on the stream. */
  async postLegacy(messages: readonly JsonRpcMessage[], signal: AbortSignal, headers: Record<string, string>): Promise<Response> {
    this.lastActivity = Date.now();
    if (signal.aborted) return new Response(null, { status: 499 });
    try {
      for (const m of messages) {
        if (isRequest(m) && this.#hidden(m) !== undefined) {
          this.#toStream(this.#refuse(m));
          continue;
        }
        if (isRequest(m)) this.#legacyPending.add(m.id!);
        if (isRequest(m)) this.#track(m);
        await this.backend.send(m);
      }
    } catch (err) {
      return backendFailure(err, undefined, headers);
    }
    return new Response('Accepted', { status: 202, headers });
  }

  /** Ends the session: pending requests fail, streams close, the backend is ended. */
  async end(reason: string): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    for (const [id, exchange] of this.#byId) exchange.deliver(errorResponse(id, ErrorCode.BackendFailed, reason), 502);
    this.#byId.clear();
    for (const [id, waiter] of this.#internal) waiter(errorResponse(id, ErrorCode.BackendFailed, reason));
    this.#internal.clear();
    // Legacy clients learn of the end on the stream itself, before it closes: no request hangs.
    for (const id of this.#legacyPending) this.#toStream(errorResponse(id, ErrorCode.BackendFailed, reason));
    this.#legacyPending.clear();
    for (const exchange of this.#open) exchange.end();
    this.#open.clear();
    this.#stream.close(undefined, this.#streamExpired);
    this.#options.onEnd(this);
    await this.backend?.close();
  }

  /**
   * The client's cancellations pass on to the server as they are; the requests they name are no
   * longer waited for. A server should not answer them, and the client would ignore it if it did.
   */
  #noteCancellations(messages: readonly JsonRpcMessage[]): void {
    for (const m of messages) {
      if (m.method !== 'notifications/cancelled') continue;
      const id = (m.params as { requestId?: JsonRpcId } | undefined)?.requestId;
      if (id !== undefined) this.#byId.get(id)?.cancelled.add(id);
    }
  }

  /** The tool a tools/call names when the route's policy hides it; undefined for any other request. */
  #hidden(request: JsonRpcMessage): string | undefined {
    const policy = this.#options.toolPolicy;
    if (!policy || request.method !== 'tools/call') return undefined;
    const tool = String((request.params as { name?: unknown } | undefined)?.name ?? '');
    return policy.permits(tool) ? undefined : tool;
  }

  /** The answer to a call of a hidden tool, and its audit line. */
  #refuse(request: JsonRpcMessage): JsonRpcMessage {
    const tool = this.#hidden(request)!;
    this.#options.onToolCall?.({ tool, durationMs: 0, outcome: 'refused' });
    return errorResponse(request.id, ErrorCode.InvalidParams, this.#options.toolPolicy!.refusal(tool));
  }

  /** Remembers what an answer to this request will need: the audit of a call, the filter of a list. */
  #track(request: JsonRpcMessage): void {
    if (request.method === 'tools/call' && this.#options.onToolCall) this.#calls.set(request.id!, { tool: String((request.params as { name?: unknown } | undefined)?.name ?? ''), started: performance.now() });
    if (request.method === 'tools/list' && this.#options.toolPolicy) this.#toolLists.add(request.id!);
  }

  /** A tools/list answer without the tools the policy hides (JSON or SSE from the backend: it is one message here). */
  #filtered(message: JsonRpcMessage): JsonRpcMessage {
    if (!this.#toolLists.size || !isResponse(message) || !this.#toolLists.has(message.id!)) return message;
    this.#toolLists.delete(message.id!);
    return 'result' in message ? { ...message, result: this.#options.toolPolicy!.filterList(message.result) } : message;
  }

  #audit(response: JsonRpcMessage): void {
    const call = this.#calls.get(response.id!);
    if (!call) return;
    this.#calls.delete(response.id!);
    const isError = (response.result as { isError?: unknown } | undefined)?.isError === true;
    this.#options.onToolCall?.({ tool: call.tool, durationMs: Math.round((performance.now() - call.started) * 10) / 10, outcome: response.error ? 'error' : isError ? 'tool_error' : 'ok' });
  }

  /** To the session's own stream: kept in the event log for a GET that comes later or resumes; legacy streams have no ids and keep nothing. */
  #toStream(message: JsonRpcMessage): void {
    if (this.#options.legacy) return void this.#stream.write(encodeEvent(textOf(message), { event: 'message' }));
    const bytes = this.#events.append(GET_STREAM, textOf(message));
    if (this.#stream.write(bytes)) this.#getWritten = this.#events.last;
  }

  /**
   * The stream's lifetime is up. Everything sent so far has been written; what the server sends
   * next waits in the event log for the client's next GET. A legacy session lives only as long
   * as its stream, so it ends (its pending requests are answered on the stream first).
   */
  #expireStream(): void {
    if (!this.#options.legacy) return this.#stream.close(undefined, true);
    this.#streamExpired = true;
    void this.end(`the stream reached its lifetime (server.stream_timeout): reconnect`);
  }

  /** The route timeout passed: the client gets an error, the server a cancellation. */
  #expire(exchange: Exchange): void {
    for (const id of [...exchange.pending]) {
      this.#byId.delete(id);
      this.#toolLists.delete(id);
      this.#audit(errorResponse(id, ErrorCode.RequestTimeout, 'timeout'));
      exchange.deliver(errorResponse(id, ErrorCode.RequestTimeout, `the MCP server did not answer within ${this.#options.requestTimeoutMs / 1000} s`));
      this.#cancel(id, 'timed out at the gateway');
    }
  }

  #abandon(exchange: Exchange, reason: string): void {
    for (const id of [...exchange.pending]) {
      this.#byId.delete(id);
      this.#toolLists.delete(id);
      this.#cancel(id, reason);
    }
    exchange.end();
    this.#open.delete(exchange);
  }

  #cancel(requestId: JsonRpcId, reason: string): void {
    this.backend.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason } }).catch(() => undefined);
  }
}

function backendFailure(err: unknown, id: JsonRpcId | undefined, headers: Record<string, string>): Response {
  const status = err instanceof BackendError ? err.status : 502;
  return new Response(JSON.stringify(errorResponse(id, ErrorCode.BackendFailed, (err as Error).message)), { status, headers: { ...headers, 'content-type': 'application/json' } });
}

function streamError(status: number, message: string, headers: Record<string, string>): Response {
  return new Response(JSON.stringify(errorResponse(undefined, ErrorCode.InvalidRequest, message)), { status, headers: { ...headers, 'content-type': 'application/json' } });
}
