import type { Logger } from '../log.ts';
import { googleIdTokenHeader } from '../gcp.ts';
import { BackendError, type Backend, type BackendEvents } from './backend.ts';
import { asMessage, isRequest, type JsonRpcMessage } from './jsonrpc.ts';
import { readEvents } from './sse.ts';

// A `type: http` route's server: every client message is POSTed to the backend; JSON and
// event-stream answers come back as messages, event by event, never buffered whole. The
// backend gets our credentials for it (static headers or a Google ID token) and, if the route
// says so, our signed statement of who the user is; never the user's own token.

export interface HttpBackendOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly googleIdTokenAudience?: string;
  /** Headers made fresh for each request: the identity assertion (lib/tokens/identity-assertion.ts). */
  readonly identityHeaders?: () => Promise<Readonly<Record<string, string>>>;
  readonly log: Logger;
}

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

  const pump = async (body: ReadableStream<Uint8Array>, observe: (message: JsonRpcMessage) => void) => {
    for await (const event of readEvents(body)) {
      if (event.event !== 'message') continue;
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
  const observe = (message: JsonRpcMessage) => {
    const result = message.result as { protocolVersion?: unknown } | undefined;
    if (!protocolVersion && result && typeof result.protocolVersion === 'string') protocolVersion = result.protocolVersion;
    events.message(message);
  };

  const openServerStream = async () => {
    if (closed) return; // the session ended while its initialize was answered
    const abort = new AbortController();
    streams.add(abort);
    try {
      const res = await fetch(options.url, { method: 'GET', headers: await headersFor('text/event-stream'), signal: abort.signal });
      if (!res.ok || !res.body || closed) {
        await res.body?.cancel();
        return; // 405: the server has no stream for us, which the spec allows.
      }
      await pump(res.body, observe);
    } catch (err) {
      if (!abort.signal.aborted) options.log.warn('backend event stream ended', { error: String(err) });
    } finally {
      streams.delete(abort);
    }
  };

  return {
    async send(message: JsonRpcMessage): Promise<void> {
      if (closed) throw new BackendError('the session is closed');
      let res: Response;
      try {
        res = await fetch(options.url, { method: 'POST', headers: { ...Object.fromEntries(await headersFor('application/json, text/event-stream')), 'content-type': 'application/json' }, body: JSON.stringify(message) });
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
      const seen = (m: JsonRpcMessage) => {
        if (!answered && m.id === message.id && ('result' in m || 'error' in m)) answered = true;
        observe(m);
      };
      // Responses stream back while send() has already returned: the session matches them by id.
      const consume = type.includes('text/event-stream')
        ? pump(res.body, seen)
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
      if (initialized) void openServerStream();
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
