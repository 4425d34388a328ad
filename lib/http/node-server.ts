import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { lazyBody } from './body.ts';
import { clientIp } from './client-ip.ts';
import { madeAnswer, requestUrl, type Handler, type RequestContext } from './types.ts';
import type { Logger } from '../log.ts';

// The node:http adapter: a few lines between Node's server and the web-standard handlers.
// It streams both ways (SSE is written chunk by chunk, never buffered) and aborts the
// Request's signal when the client goes away so handlers can stop work and reap children.

export interface ServeOptions {
  host: string;
  port: number;
  log: Logger;
  /** Proxies in front of this server whose X-Forwarded-For entries are believed (client-ip.ts; default 0: none). */
  trustedProxies?: number;
  /** How long close() lets in-flight requests finish before cutting them (default 5 s). */
  drainMs?: number;
  /** A request (headers and body) not fully received within this is answered 408: slow-body clients hold nothing for long (default 30 s). */
  requestTimeoutMs?: number;
}

export interface RunningServer {
  readonly port: number;
  readonly server: Server;
  /** Stops accepting connections and waits for open ones to finish (idle keep-alive sockets are closed). */
  close(): Promise<void>;
}

/** Thrown when the port is taken, so entrypoints can say so without a stack trace. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  constructor(host: string, port: number) {
    super(`port ${port} on ${host} is already in use: stop the other process or choose another port (server.port / --port)`);
  }
}

/**
 * The web Request for a Node request. The handler runs at once: its body stays in Node's stream
 * until the handler reads it, after checking the caller (body.ts).
 */
function toRequest(req: IncomingMessage, signal: AbortSignal): Request {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : lazyBody(req);
  return new Request(requestUrl(req.headers.host, req.url, 'http'), { method: req.method, headers, signal, body, duplex: 'half' } as RequestInit);
}

async function writeResponse(response: Response, res: ServerResponse): Promise<void> {
  const made = madeAnswer(response);
  if (made) {
    // An MCP answer, already JSON text: written as it was made, the Response never read back.
    res.writeHead(response.status, { ...made.headers, 'content-length': String(Buffer.byteLength(made.text)) }).end(made.text);
    return;
  }
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, key) => {
    if (key !== 'set-cookie') headers[key] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  if (response.body && !(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    // A whole answer (JSON, HTML): one write, no stream pumping.
    const body = Buffer.from(await response.arrayBuffer());
    headers['content-length'] = String(body.length);
    res.writeHead(response.status, headers).end(body);
    return;
  }
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  // Node holds the head until the first body write: an event stream with nothing to say yet
  // would reach the client only with its first keep-alive, and clients time out the open.
  res.flushHeaders();
  const reader = response.body.getReader();
  const onClose = () => void reader.cancel().catch(() => undefined);
  res.once('close', onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise<void>((resolve) => res.once('drain', resolve).once('close', resolve));
      if (res.destroyed) break;
    }
  } finally {
    res.off('close', onClose);
    res.end();
  }
}

export function toNodeListener(handler: Handler, options: Pick<ServeOptions, 'log' | 'trustedProxies'>) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const traceHeader = req.headers['x-cloud-trace-context'];
    const ctx: RequestContext = { clientIp: clientIp(req.headers['x-forwarded-for'], req.socket.remoteAddress, options.trustedProxies ?? 0), trace: typeof traceHeader === 'string' ? traceHeader.split('/')[0] : undefined };
    let request: Request;
    try {
      request = toRequest(req, abort.signal);
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request","error_description":"malformed request line or headers"}');
      return;
    }
    handler(request, ctx)
      .then((response) => writeResponse(response, res))
      .catch((err: unknown) => {
        options.log.error('unhandled error in request handler', { error: err instanceof Error ? err.stack : String(err), path: req.url?.split('?')[0] });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"server_error"}');
        else res.destroy();
      });
  };
}

/** Serves `handler` on host:port (0 = any free port). */
export function serveHandler(handler: Handler, options: ServeOptions): Promise<RunningServer> {
  const requestTimeout = options.requestTimeoutMs ?? 30_000;
  const server = createServer(
    // Response streams (SSE) may last for hours: the timeout covers only receiving the request.
    { keepAliveTimeout: 65_000, requestTimeout, headersTimeout: Math.min(requestTimeout, 60_000), connectionsCheckingInterval: Math.min(requestTimeout, 30_000) / 2 },
    toNodeListener(handler, options),
  );
  // Connections with no request in flight, which close() ends at once, and those whose last
  // answer goes out during the drain. Node's own closeIdleConnections() leaves a connection
  // that never sent a request (a client's spare socket), or that goes idle after it was
  // called, open until a timeout, holding shutdown for the whole drain period.
  const sockets = new Set<Socket>();
  const busy = new Set<Socket>();
  let closing = false;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    busy.add(req.socket);
    res.once('close', () => {
      busy.delete(req.socket);
      // Shutting down: a connection whose last answer just went out is not kept alive.
      if (closing) req.socket.end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new PortInUseError(options.host, options.port) : err));
    server.listen(options.port, options.host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : options.port;
      resolve({
        port,
        server,
        close: async () => {
          // In-flight requests get a grace period to finish (SIGTERM drain); then they're cut.
          closing = true;
          const closed = new Promise<void>((done) => server.close(() => done()));
          server.closeIdleConnections();
          for (const socket of sockets) if (!busy.has(socket)) socket.destroy();
          const force = setTimeout(() => server.closeAllConnections(), options.drainMs ?? 5000);
          await closed;
          clearTimeout(force);
        },
      });
    });
  });
}
