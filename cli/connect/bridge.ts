import { LineFramer, asMessage, isRequest, type JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import type { Authorizer } from './auth.ts';

// stdio ⇄ Streamable HTTP. Messages cross unchanged in both directions (requests, responses,
// notifications, server-to-client requests, batches); the bridge only adds the token, the
// session and protocol headers. A session the server forgot is initialized again with the
// client's own initialize params; a lost connection fails pending requests at once.
//
// The client's first messages wait while a sign-in is in progress: the client starts us when it
// wants the server, so there is no earlier moment to sign in. `mcp-front login <url>` signs in
// ahead of time for clients whose initialize timeout is shorter than a sign-in.

export interface BridgeOptions {
  readonly url: string;
  readonly auth: Authorizer;
  readonly input: NodeJS.ReadableStream;
  readonly output: (line: string) => void;
  readonly log: (line: string) => void;
}

export async function runBridge(options: BridgeOptions): Promise<void> {
  const { url, auth, output } = options;
  let sessionId: string | undefined;
  let protocolVersion: string | undefined;
  let initializeParams: JsonRpcMessage['params'];
  let serverStream: AbortController | undefined;
  const emit = (m: unknown) => output(JSON.stringify(m));
  const failed = (m: JsonRpcMessage, reason: string) => {
    if (isRequest(m)) emit({ jsonrpc: '2.0', id: m.id, error: { code: -32000, message: `mcp-front connect: ${reason}` } });
  };

  const headersFor = (token: string, accept = 'application/json, text/event-stream') => ({
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
    accept,
    ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
    ...(protocolVersion ? { 'mcp-protocol-version': protocolVersion } : {}),
  });

  const relay = async (res: Response, onMessage: (m: JsonRpcMessage) => void) => {
    if (!res.body || res.status === 202) return void (await res.body?.cancel());
    if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      for await (const event of readEvents(res.body)) {
        if (event.event !== 'message' || !event.data) continue;
        const value = JSON.parse(event.data) as unknown;
        for (const item of Array.isArray(value) ? value : [value]) {
          const m = asMessage(item);
          if (m) onMessage(m);
        }
      }
      return;
    }
    const value = (await res.json()) as unknown;
    for (const item of Array.isArray(value) ? value : [value]) {
      const m = asMessage(item);
      if (m) onMessage(m);
    }
  };

  /** Legacy HTTP+SSE (2024-11-05): where to POST, once the server's stream named it. */
  let legacyEndpoint: Promise<string> | undefined;
  const post = async (body: unknown, token: string) => fetch(legacyEndpoint ? await legacyEndpoint : url, { method: 'POST', headers: headersFor(token), body: JSON.stringify(body) });

  /**
   * The server answered the initialize POST with 404/405: an older server. Open its SSE stream
   * (the same URL, GET); its `endpoint` event says where messages go, and answers come back on it.
   */
  const openLegacy = (token: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const abort = new AbortController();
      serverStream = abort;
      void (async () => {
        const res = await fetch(url, { method: 'GET', headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: abort.signal });
        if (!res.ok || !res.body) throw new Error(`the server offers neither Streamable HTTP nor SSE (HTTP ${res.status})`);
        for await (const event of readEvents(res.body)) {
          if (event.event === 'endpoint') resolve(new URL(event.data, url).toString());
          else if (event.event === 'message' && event.data) {
            const m = asMessage(JSON.parse(event.data));
            if (m) emit(m);
          }
        }
      })().catch((err: unknown) => {
        reject(err as Error);
        if (!abort.signal.aborted) options.log(`mcp-front connect: SSE stream ended: ${(err as Error).message}`);
      });
    });

  const openServerStream = async () => {
    serverStream?.abort();
    const abort = new AbortController();
    serverStream = abort;
    try {
      const res = await fetch(url, { method: 'GET', headers: headersFor(await auth.accessToken(), 'text/event-stream'), signal: abort.signal });
      if (res.ok) await relay(res, emit);
      else await res.body?.cancel();
    } catch (err) {
      if (!abort.signal.aborted) options.log(`mcp-front connect: server stream ended: ${(err as Error).message}`);
    }
  };

  /** The server lost our session: initialize again with the client's params, silently. */
  const reinitialize = async (token: string) => {
    sessionId = undefined;
    const res = await post({ jsonrpc: '2.0', id: 'mcp-front-connect-reinit', method: 'initialize', params: initializeParams }, token);
    sessionId = res.headers.get('mcp-session-id') ?? undefined;
    await relay(res, () => undefined);
    await (await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, token)).body?.cancel();
    void openServerStream();
  };

  const forward = async (message: JsonRpcMessage | JsonRpcMessage[]) => {
    const first = Array.isArray(message) ? message[0] : message;
    const isInit = first?.method === 'initialize';
    if (isInit) initializeParams = first!.params;
    const all = Array.isArray(message) ? message : [message];
    try {
      let token = await auth.accessToken();
      let res = await post(message, token);
      if (res.status === 401) {
        await res.body?.cancel();
        token = await auth.renew(token);
        res = await post(message, token);
      }
      const challenge = res.headers.get('www-authenticate') ?? '';
      if (res.status === 403 && challenge.includes('insufficient_scope')) {
        await res.body?.cancel();
        token = await auth.stepUp(/scope="([^"]+)"/.exec(challenge)?.[1] ?? '');
        res = await post(message, token);
      }
      if (res.status === 404 && sessionId && !isInit) {
        await res.body?.cancel();
        await reinitialize(token);
        res = await post(message, token);
      }
      if (isInit && !legacyEndpoint && (res.status === 404 || res.status === 405)) {
        await res.body?.cancel();
        legacyEndpoint = openLegacy(token);
        res = await post(message, token);
      }
      if (isInit && res.ok) sessionId = res.headers.get('mcp-session-id') ?? undefined;
      if (!res.ok && res.status !== 202) {
        const text = await res.text();
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        const rpc = parsed ? asMessage(parsed) : undefined;
        if (rpc?.error) return emit(rpc);
        return all.forEach((m) => failed(m, `the server answered HTTP ${res.status}`));
      }
      await relay(res, (m) => {
        if (isInit && m.result && typeof (m.result as { protocolVersion?: unknown }).protocolVersion === 'string') {
          protocolVersion = (m.result as { protocolVersion: string }).protocolVersion;
        }
        emit(m);
      });
      if (first?.method === 'notifications/initialized' && !legacyEndpoint) void openServerStream();
    } catch (err) {
      options.log(`mcp-front connect: ${(err as Error).message}`);
      all.forEach((m) => failed(m, (err as Error).message));
    }
  };

  const framer = new LineFramer();
  const pending = new Set<Promise<void>>();
  await new Promise<void>((resolve) => {
    options.input.on('data', (chunk: Buffer) => {
      for (const line of framer.push(chunk)) {
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          options.log('mcp-front connect: ignored a line that is not JSON');
          continue;
        }
        const messages = (Array.isArray(value) ? value : [value]).map(asMessage).filter((m): m is JsonRpcMessage => m !== undefined);
        if (!messages.length) continue;
        const task = forward(Array.isArray(value) ? messages : messages[0]!).finally(() => pending.delete(task));
        pending.add(task);
      }
    });
    options.input.once('end', () => resolve());
  });
  await Promise.allSettled(pending);
  serverStream?.abort();
  if (sessionId) {
    const token = await auth.accessToken().catch(() => undefined);
    if (token) await fetch(url, { method: 'DELETE', headers: headersFor(token), signal: AbortSignal.timeout(5000) }).then((r) => r.body?.cancel(), () => undefined);
  }
}
