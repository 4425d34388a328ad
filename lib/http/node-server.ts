import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { NodeRequest } from './node-request.ts';
import { clientIp } from './client-ip.ts';
import { madeAnswer, type Handler, type HttpHandler, type RequestContext } from './types.ts';
import type { Logger } from '../log.ts';

// The node:http adapter: a few lines between Node's server and the handlers. Web-standard
// handlers get a web Request; the route services, which read only a few headers and the body,
// get the request as Node parsed it (node-request.ts: no Request, no web stream per call).
// It streams both ways (SSE is written chunk by chunk, never buffered) and aborts the
// request's signal when the client goes away so handlers can stop work and reap children.

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

type Options = Pick<ServeOptions, 'log' | 'trustedProxies'>;

/** A listener for handlers of web Requests (the SDK's web transport, the OAuth handlers). */
export function toNodeListener(handler: Handler, options: Options) {
  return listener((request, ctx) => handler(request.toWebRequest(), ctx), options);
}

/** A listener for handlers that read only what HttpRequest has (the route services): no web Request is made. */
export function toHttpListener(handler: HttpHandler, options: Options) {
  return listener(handler, options);
}

function listener(handler: (request: NodeRequest, ctx: RequestContext) => Promise<Response>, options: Options) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    let request: NodeRequest;
    try {
      request = new NodeRequest(req);
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request","error_description":"malformed request line or headers"}');
      return;
    }
    res.once('close', () => {
      if (!res.writableFinished) request.abort();
    });
    // Read as the handlers read them (node-request.ts): a repeated X-Forwarded-For is one list.
    const trace = request.headers.get('x-cloud-trace-context');
    const ctx: RequestContext = { clientIp: clientIp(request.headers.get('x-forwarded-for') ?? undefined, req.socket.remoteAddress, options.trustedProxies ?? 0), trace: trace?.split('/')[0] };
    let answer: Promise<Response>;
    try {
      answer = handler(request, ctx);
    } catch {
      // A web Request the platform's own constructor refuses (toWebRequest).
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request","error_description":"malformed request line or headers"}');
      return;
    }
    answer
      .then((response) => writeResponse(response, res))
      .catch((err: unknown) => {
        options.log.error('unhandled error in request handler', { error: err instanceof Error ? err.stack : String(err), path: req.url?.split('?')[0] });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"server_error"}');
        else res.destroy();
      });
  };
}

/** Serves `handler` (web Requests) on host:port (0 = any free port). */
export function serveHandler(handler: Handler, options: ServeOptions): Promise<RunningServer> {
  return listen(toNodeListener(handler, options), options);
}

/** Serves `handler` (HttpRequests read where Node parsed them) on host:port (0 = any free port). */
export function serveHttpHandler(handler: HttpHandler, options: ServeOptions): Promise<RunningServer> {
  return listen(toHttpListener(handler, options), options);
}

function listen(onRequest: (req: IncomingMessage, res: ServerResponse) => void, options: ServeOptions): Promise<RunningServer> {
  const requestTimeout = options.requestTimeoutMs ?? 30_000;
  const server = createServer(
    // Response streams (SSE) may last for hours: the timeout covers only receiving the request.
    { keepAliveTimeout: 65_000, requestTimeout, headersTimeout: Math.min(requestTimeout, 60_000), connectionsCheckingInterval: Math.min(requestTimeout, 30_000) / 2 },
    onRequest,
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
