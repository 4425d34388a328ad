import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { googleIdTokenHeader } from '../gcp.ts';
import { BackendError, type Backend, type BackendEvents, type MessageOrigin } from './backend.ts';
import { asMessage, isRequest, textOf, type JsonRpcMessage } from './jsonrpc.ts';
import { readEvents } from './sse.ts';

// A `type: http` route's server: every client message is POSTed to the backend; JSON and
// event-stream answers come back as messages, event by event, never buffered whole. The
// backend gets our credentials for it (static headers or a Google ID token) and, if the route
// says so, our signed statement of who the user is; never the user's own token. Each message
// is passed on with the stream it came on (a request's answer, or the session's GET stream),
// so the session can put it on the client's matching stream.

export interface HttpBackendOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly googleIdTokenAudience?: string;
  /** Headers made fresh for each request: the identity assertion (lib/tokens/identity-assertion.ts). */
  readonly identityHeaders?: () => Promise<Readonly<Record<string, string>>>;
  readonly log: Logger;
}

/** Where an event stream was read up to, to resume it there (SEP-1699). */
interface StreamCursor {
  lastEventId?: string;
  /** The reconnection delay the server last asked for (its `retry` field). */
  retryMs: number;
}

/** What the SDK's client waits before resuming a stream when the server names no delay. */
const DEFAULT_RETRY_MS = 1000;
/** Resumptions in a row that bring no new event before the answer is given up as broken. */
const MAX_IDLE_RESUMES = 3;
/** Failed attempts in a row to open the server's own stream before the session does without it. */
const MAX_STREAM_FAILURES = 3;

export function startHttpBackend(options: HttpBackendOptions, events: BackendEvents): Backend {
  let sessionId: string | undefined;
  let protocolVersion: string | undefined;
  let closed = false;
  const streams = new Set<AbortController>();

  const headersFor = async (accept: string): Promise<Headers> => {
    const headers = new Headers(options.headers);
    headers.set('accept', accept);
    if (sessionId) headers.set('mcp-session-id', sessionId);
    if (protocolVersion) headers.set('mcp-protocol-version', protocolVersion);
    if (options.googleIdTokenAudience) headers.set('authorization', await googleIdTokenHeader(options.googleIdTokenAudience));
    // Last: a static header of the same name can't stand in for the gateway's statement.
    if (options.identityHeaders) for (const [name, value] of Object.entries(await options.identityHeaders())) headers.set(name, value);
    return headers;
  };

  const pump = async (body: ReadableStream<Uint8Array>, observe: (message: JsonRpcMessage) => void, cursor?: StreamCursor) => {
    for await (const event of readEvents(body, (ms) => cursor && (cursor.retryMs = ms))) {
      if (cursor && event.id !== undefined) cursor.lastEventId = event.id;
      // An event without data only primes the stream for resumption (SEP-1699).
      if (event.event !== 'message' || event.data === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(event.data);
      } catch {
        options.log.warn('backend sent an SSE event that is not JSON', { text: event.data.slice(0, 500) });
        continue;
      }
      for (const item of Array.isArray(value) ? value : [value]) {
        const message = asMessage(item);
        if (message) observe(message);
      }
    }
  };

  // The initialize result names the protocol version later requests must carry.
  const observe = (message: JsonRpcMessage, origin?: MessageOrigin) => {
    const result = message.result as { protocolVersion?: unknown } | undefined;
    if (!protocolVersion && result && typeof result.protocolVersion === 'string') protocolVersion = result.protocolVersion;
    events.message(message, origin);
  };

  /**
   * GETs an event stream from the server, after `cursor.lastEventId` when there is one, and
   * reads it to its end. Resolves with the HTTP status: 200 once a stream was read.
   */
  const readStream = async (observeOne: (message: JsonRpcMessage) => void, cursor: StreamCursor): Promise<number> => {
    const abort = new AbortController();
    streams.add(abort);
    try {
      const headers = await headersFor('text/event-stream');
      if (cursor.lastEventId !== undefined) headers.set('last-event-id', cursor.lastEventId);
      const res = await fetch(options.url, { method: 'GET', headers, signal: abort.signal });
      if (!res.ok || !res.body || closed || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
        await res.body?.cancel();
        return res.ok ? 502 : res.status;
      }
      await pump(res.body, observeOne, cursor);
      return 200;
    } finally {
      streams.delete(abort);
    }
  };

  /**
   * Reads the event stream answering one request. The server may close it before the response
   * (SEP-1699 polling: the SDK's closeSSEStream); the answer then goes on over a GET carrying
   * the last event id, after the delay the server asked for.
   */
  const readAnswer = async (body: ReadableStream<Uint8Array>, seen: (message: JsonRpcMessage) => void, answered: () => boolean) => {
    const cursor: StreamCursor = { retryMs: DEFAULT_RETRY_MS };
    await pump(body, seen, cursor);
    for (let idle = 0; !answered() && cursor.lastEventId !== undefined && idle < MAX_IDLE_RESUMES; ) {
      await delay(cursor.retryMs, undefined, { ref: false });
      if (closed) return;
      const resumedAfter = cursor.lastEventId;
      if ((await readStream(seen, cursor)) !== 200) return;
      idle = cursor.lastEventId === resumedAfter ? idle + 1 : 0;
    }
  };

  /**
   * The server's stream for messages unrelated to a request (its GET), kept open while the
   * session lives: when the server ends it (SEP-1699 polling, a platform's request limit) it is
   * opened again after the delay the server asked for, resuming after the last event id. A
   * server without one (405) is left alone, and so is one whose stream keeps failing.
   */
  const keepServerStream = async () => {
    const cursor: StreamCursor = { retryMs: DEFAULT_RETRY_MS };
    for (let failures = 0; !closed && failures < MAX_STREAM_FAILURES; await delay(cursor.retryMs, undefined, { ref: false })) {
      try {
        const status = await readStream((m) => observe(m, 'session'), cursor);
        if (status === 405) return;
        failures = status === 200 ? 0 : failures + 1;
      } catch (err) {
        if (closed) return;
        options.log.warn('backend event stream ended', { error: String(err) });
        failures++;
      }
    }
  };

  return {
    async send(message: JsonRpcMessage): Promise<void> {
      if (closed) throw new BackendError('the session is closed');
      let res: Response;
      try {
        res = await fetch(options.url, { method: 'POST', headers: { ...Object.fromEntries(await headersFor('application/json, text/event-stream')), 'content-type': 'application/json' }, body: textOf(message) });
      } catch (err) {
        throw new BackendError(`the MCP server at ${new URL(options.url).host} is unreachable: ${(err as Error).cause ?? (err as Error).message}`, { cause: err });
      }
      const backendSession = res.headers.get('mcp-session-id');
      const initialized = message.method === 'initialize' && res.ok;
      if (initialized && backendSession) sessionId = backendSession;
      if (res.status === 202 || !res.body) {
        await res.body?.cancel();
        return;
      }
      if (!res.ok && !(res.headers.get('content-type') ?? '').includes('json')) {
        await res.body.cancel();
        throw new BackendError(`the MCP server answered HTTP ${res.status}`);
      }
      const type = res.headers.get('content-type') ?? '';
      // A request's response must come on its own POST's answer: when that answer ends without
      // it (a malformed stream, a wrong id), the client hears so now, not at the route timeout.
      let answered = !isRequest(message);
      const origin: MessageOrigin | undefined = isRequest(message) ? { request: message.id! } : undefined;
      const seen = (m: JsonRpcMessage) => {
        if (!answered && m.id === message.id && ('result' in m || 'error' in m)) answered = true;
        observe(m, origin);
      };
      // Responses stream back while send() has already returned: the session matches them by id.
      const consume = type.includes('text/event-stream')
        ? readAnswer(res.body, seen, () => answered)
        : res.json().then((value: unknown) => {
            for (const item of Array.isArray(value) ? value : [value]) {
              const parsed = asMessage(item);
              if (parsed) seen(parsed);
              else if (isRequest(message)) throw new BackendError(`the MCP server answered HTTP ${res.status} without a JSON-RPC message`);
            }
          });
      const fail = (why: string) => {
        if (!closed) events.message({ jsonrpc: '2.0', id: message.id ?? null, error: { code: -32000, message: why } });
      };
      consume.then(
        () => answered || fail('the MCP server ended its answer without a response to this request'),
        (err: unknown) => fail(`the MCP server's answer broke off: ${String(err)}`),
      );
      if (initialized) void keepServerStream();
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const stream of streams) stream.abort();
      if (!sessionId) return;
      // Tell the server the session is over (it may answer 405: then it times out on its own).
      await fetch(options.url, { method: 'DELETE', headers: await headersFor('application/json'), signal: AbortSignal.timeout(5000) }).then(
        (res) => res.body?.cancel(),
        (err: unknown) => options.log.warn('could not end the backend session', { error: String(err) }),
      );
    },
  };
}
