import type { Clock } from '../../lib/clock.ts';
import { isLoopbackHost, routeResources, type Config, type RouteConfig } from '../../lib/config/config.ts';
import type { RequestContext } from '../../lib/http/types.ts';
import { readBodyLimited } from '../../lib/http/body.ts';
import type { Logger } from '../../lib/log.ts';
import { randomToken } from '../../lib/random.ts';
import type { Store } from '../../lib/store/store.ts';
import { InvalidTokenError, type AccessTokenClaims, type AccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import { BackendError, type Backend } from '../../lib/mcp/backend.ts';
import { StoreUnavailableError } from '../../lib/store/store.ts';
import { startHttpBackend } from '../../lib/mcp/http-backend.ts';
import { asMessage, ErrorCode, errorResponse, isRequest, type JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { McpSession } from '../../lib/mcp/session.ts';
import { startStdioChild } from '../../lib/mcp/stdio-child.ts';

// A route: one MCP endpoint behind the gateway's sign-in. Checks, in order: Origin (DNS
// rebinding), the bearer token and its audience, the protocol version, the body; then the
// session. The hot path reads nothing from the store: tokens verify locally (cached), sessions
// live in this instance's memory.

export interface RouteServiceDeps {
  readonly config: Config;
  readonly route: RouteConfig;
  readonly store: Store;
  readonly verifier: AccessTokenVerifier;
  readonly clock: Clock;
  readonly log: Logger;
  /** SSE keepalive comment interval (tests shorten it). */
  readonly keepaliveMs?: number;
}

export interface RouteService {
  handle(req: Request, ctx: RequestContext): Promise<Response>;
  /** Lets calls in flight finish (up to `drainMs`), then ends every session and child; resolves once all are gone. */
  close(drainMs?: number): Promise<void>;
  sessionCount(): number;
  /** Child pids of live stdio sessions (tests check none outlives its session). */
  childPids(): number[];
}

/** What the store keeps of a session, so any instance can carry it on. */
interface SessionRecord {
  [key: string]: unknown;
  route: string;
  userSub: string;
  email: string | null;
  clientId: string;
  protocolVersion: string;
  initializeParams: unknown;
  createdAt: number;
  lastSeen: number;
}

const ANONYMOUS: AccessTokenClaims = { iss: '', sub: 'anonymous', email: '', aud: '', exp: Number.MAX_SAFE_INTEGER, iat: 0, client_id: 'anonymous', scope: '', jti: '' };

export const SUPPORTED_PROTOCOL_VERSIONS = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25'];
/** What a request without MCP-Protocol-Version means (Streamable HTTP, 2025-06-18 §2.7). */
const DEFAULT_PROTOCOL_VERSION = '2025-03-26';
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const CORS_ALLOW_HEADERS = 'authorization, content-type, mcp-session-id, mcp-protocol-version, last-event-id';
const CORS_EXPOSE_HEADERS = 'www-authenticate, mcp-session-id, mcp-protocol-version';

export function createRouteService(deps: RouteServiceDeps): RouteService {
  const { config, route, log } = deps;
  const issuer = config.oauth.issuer;
  const resources = routeResources(issuer, route);
  const endpoint = `${route.path}/mcp`;
  const sessions = new Map<string, McpSession>();
  const allowedOrigins = new Set([new URL(issuer).origin, ...config.server.allowedOrigins]);
  const loopbackIssuer = isLoopbackHost(new URL(issuer).hostname);
  let closing = false;

  const originAllowed = (origin: string): boolean => {
    if (allowedOrigins.has(origin)) return true;
    // Local work: the MCP Inspector and other tools on any loopback port.
    try {
      return loopbackIssuer && isLoopbackHost(new URL(origin).hostname);
    } catch {
      return false;
    }
  };

  const corsHeaders = (req: Request): Record<string, string> => {
    const origin = req.headers.get('origin');
    if (!origin || !originAllowed(origin)) return {};
    return { 'access-control-allow-origin': origin, 'access-control-expose-headers': CORS_EXPOSE_HEADERS, vary: 'origin' };
  };

  const rpcError = (status: number, code: number, message: string, headers: Record<string, string> = {}, id?: JsonRpcMessage['id']) =>
    new Response(JSON.stringify(errorResponse(id, code, message)), { status, headers: { ...headers, 'content-type': 'application/json' } });

  const unauthorized = (pathname: string, cors: Record<string, string>, err?: InvalidTokenError) => {
    const metadata = `${issuer}/.well-known/oauth-protected-resource${pathname}`;
    const scope = config.oauth.scopes.join(' ');
    const challenge = err
      ? `Bearer error="invalid_token", error_description="${err.message.replaceAll('"', "'")}", resource_metadata="${metadata}", scope="${scope}"`
      : `Bearer resource_metadata="${metadata}", scope="${scope}"`;
    const body = { error: err ? 'invalid_token' : 'unauthorized', error_description: err?.message ?? 'sign in: this MCP server needs an access token' };
    return new Response(JSON.stringify(body), { status: 401, headers: { ...cors, 'content-type': 'application/json', 'www-authenticate': challenge } });
  };

  const startBackend = (session: McpSession): Backend => {
    const events = { message: (m: JsonRpcMessage) => session.receive(m), closed: (reason: string) => void session.end(reason) };
    const backendLog = log.child({ session: session.id });
    if (route.type === 'stdio') {
      return startStdioChild({ command: route.command, environment: route.environment, inherit: route.inheritEnv, log: backendLog }, events);
    }
    return startHttpBackend({ url: route.backend!, headers: route.headers, googleIdTokenAudience: route.googleIdTokenAudience, log: backendLog }, events);
  };

  const openSession = (claims: Pick<AccessTokenClaims, 'sub' | 'client_id'>, id = randomToken(24), legacy = false): McpSession => {
    const session = new McpSession({
      id,
      legacy,
      userSub: claims.sub,
      clientId: claims.client_id,
      log,
      requestTimeoutMs: route.timeout,
      keepaliveMs: deps.keepaliveMs ?? 15_000,
      // The audit trail: who called which tool, how long it took, how it ended. Never arguments or results.
      onToolCall: (call) => log.info('tools/call', { audit: true, session: id, user: claims.sub, client: claims.client_id, route: route.path, ...call }),
      onEnd: (s) => {
        sessions.delete(s.id);
        recordedAt.delete(s.id);
        // The record stays: another instance (or this one, restarted) may carry the session on.
        // Only the client's DELETE forgets it; otherwise it expires after idle_timeout.
        log.info('session ended', { session: s.id, user: s.userSub, client: s.clientId });
      },
    });
    session.backend = startBackend(session);
    sessions.set(session.id, session);
    return session;
  };

  /** When each session's record was last written: refreshed at most every idle_timeout/2. */
  const recordedAt = new Map<string, number>();
  const records = new Map<string, SessionRecord>();

  const recordSession = async (session: McpSession, claims: Pick<AccessTokenClaims, 'sub' | 'client_id'> & { email?: string }) => {
    const now = deps.clock.now();
    const record: SessionRecord = {
      route: route.path,
      userSub: claims.sub,
      email: claims.email ?? null,
      clientId: claims.client_id,
      protocolVersion: session.protocolVersion,
      initializeParams: session.initializeParams ?? null,
      createdAt: records.get(session.id)?.createdAt ?? now,
      lastSeen: now,
    };
    records.set(session.id, record);
    recordedAt.set(session.id, now);
    // One write per session start and per idle_timeout/2, never per call; a store outage must
    // not break the session itself, only its resumption elsewhere.
    await deps.store.put('mcpSessions', session.id, record, { expiresAt: now + route.idleTimeout }).catch((err: unknown) => log.warn('could not record the session', { error: String(err) }));
  };

  const touch = (session: McpSession) => {
    const last = recordedAt.get(session.id);
    const record = records.get(session.id);
    if (last === undefined || !record || deps.clock.now() - last < route.idleTimeout / 2) return;
    void recordSession(session, { sub: record.userSub, client_id: record.clientId, email: record.email ?? undefined });
  };

  /** Single flight per (session, user): concurrent requests for a session being resumed wait for one resumption. */
  const resuming = new Map<string, Promise<McpSession | undefined>>();

  const resume = async (id: string, sub: string): Promise<McpSession | undefined> => {
    // The only store read on a request path, and only for a session this instance doesn't hold.
    const record = await deps.store.get<SessionRecord>('mcpSessions', id);
    if (!record || record.route !== route.path || record.userSub !== sub) return undefined;
    const session = openSession({ sub: record.userSub, client_id: record.clientId }, id);
    session.protocolVersion = record.protocolVersion;
    session.initializeParams = record.initializeParams;
    records.set(id, record);
    recordedAt.set(id, deps.clock.now());
    try {
      await session.initializeBackend(record.initializeParams);
    } catch (err) {
      await session.end('could not resume the session');
      throw err;
    }
    log.info('session resumed', { session: id, user: sub, client: record.clientId });
    return session;
  };

  const sessionFor = async (id: string | null, claims: AccessTokenClaims): Promise<McpSession | undefined> => {
    if (!id || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) return undefined;
    const live = sessions.get(id);
    // Another user's session looks exactly like a missing one: nothing about it leaks.
    if (live) return live.userSub === claims.sub ? live : undefined;
    const key = `${id}\n${claims.sub}`;
    let pending = resuming.get(key);
    if (!pending) {
      pending = resume(id, claims.sub).finally(() => resuming.delete(key));
      resuming.set(key, pending);
    }
    return pending;
  };

  /** The POSTed JSON-RPC message or batch, or the error answer for a body that isn't one. */
  const readMessages = async (req: Request, cors: Record<string, string>): Promise<{ messages: JsonRpcMessage[]; batch: boolean } | Response> => {
    const text = await readBodyLimited(req, MAX_BODY_BYTES);
    if (text === undefined) return rpcError(413, ErrorCode.InvalidRequest, `the message is larger than ${MAX_BODY_BYTES} bytes`, cors);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return rpcError(400, ErrorCode.ParseError, 'the body is not JSON', cors);
    }
    const batch = Array.isArray(parsed);
    const items = batch ? (parsed as unknown[]) : [parsed];
    const messages = items.map(asMessage);
    if (!items.length || messages.some((m) => !m)) return rpcError(400, ErrorCode.InvalidRequest, 'not a JSON-RPC 2.0 message', cors);
    return { messages: messages as JsonRpcMessage[], batch };
  };

  const post = async (req: Request, claims: AccessTokenClaims, cors: Record<string, string>, protocolVersion: string): Promise<Response> => {
    const type = req.headers.get('content-type') ?? '';
    if (!type.toLowerCase().startsWith('application/json')) return rpcError(415, ErrorCode.InvalidRequest, 'Content-Type must be application/json', cors);
    const body = await readMessages(req, cors);
    if (body instanceof Response) return body;
    const { messages: valid, batch } = body;
    const initialize = valid.find((m) => m.method === 'initialize');
    const sessionId = req.headers.get('mcp-session-id');

    if (initialize) {
      if (valid.length !== 1 || !isRequest(initialize)) return rpcError(400, ErrorCode.InvalidRequest, 'initialize must be sent alone', cors, initialize.id);
      const mine = [...sessions.values()].filter((s) => s.userSub === claims.sub).length;
      if (mine >= route.maxSessionsPerUser) return rpcError(429, ErrorCode.InvalidRequest, `at most ${route.maxSessionsPerUser} sessions per user on ${route.path}; end one first`, cors, initialize.id);
      const session = openSession(claims);
      session.initializeParams = initialize.params;
      log.info('session started', { session: session.id, user: claims.sub, client: claims.client_id });
      const response = await session.post(valid, false, req.signal, { ...cors, 'mcp-session-id': session.id });
      const body = response.headers.get('content-type')?.includes('json') ? ((await response.clone().json()) as JsonRpcMessage) : undefined;
      const version = (body?.result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
      if (typeof version === 'string') session.protocolVersion = version;
      if (!response.ok || body?.error) {
        await session.end('initialize failed');
        return response;
      }
      await recordSession(session, claims);
      return response;
    }

    if (batch && protocolVersion !== '2025-03-26' && protocolVersion !== '2024-11-05') return rpcError(400, ErrorCode.InvalidRequest, `JSON-RPC batches are not part of MCP ${protocolVersion}`, cors);
    if (!sessionId) return statelessCall(valid, batch, claims, cors, protocolVersion, req.signal);
    const session = await sessionFor(sessionId, claims);
    if (!session) return rpcError(404, ErrorCode.SessionNotFound, 'session not found: initialize again', cors);
    touch(session);
    return session.post(valid, batch, req.signal, { ...cors, 'mcp-session-id': session.id });
  };

  /**
   * A call with no session (ChatGPT sends some that way): served by a session that lives for
   * this one exchange, initialized with neutral client params, ended when the answer is out.
   */
  const statelessCall = async (messages: JsonRpcMessage[], batch: boolean, claims: AccessTokenClaims, cors: Record<string, string>, protocolVersion: string, signal: AbortSignal): Promise<Response> => {
    if (!messages.some(isRequest)) return new Response(null, { status: 202, headers: cors });
    const session = openSession(claims);
    try {
      await session.initializeBackend({ protocolVersion, capabilities: {}, clientInfo: { name: 'mcp-front (no session)', version: '1.0.0' } });
    } catch (err) {
      await session.end('could not start a session for a call without one');
      return rpcError(502, ErrorCode.BackendFailed, (err as Error).message, cors, messages.find(isRequest)?.id);
    }
    const response = await session.post(messages, batch, signal, cors);
    if (!response.body || (response.headers.get('content-type') ?? '').includes('json')) {
      const body = await response.arrayBuffer();
      await session.end('call without a session answered');
      return new Response(body, { status: response.status, headers: response.headers });
    }
    const ended = new TransformStream<Uint8Array, Uint8Array>({ flush: () => void session.end('call without a session answered') });
    return new Response(response.body.pipeThrough(ended), { status: response.status, headers: response.headers });
  };

  /**
   * The HTTP+SSE transport of 2024-11-05, still what some clients speak: GET /<route>/sse opens
   * the session's stream, whose `endpoint` event names /<route>/message?session=… for POSTs.
   */
  const legacy = async (req: Request, url: URL, claims: AccessTokenClaims, cors: Record<string, string>): Promise<Response> => {
    if (url.pathname.endsWith('/sse')) {
      if (req.method !== 'GET') return new Response(null, { status: 405, headers: { ...cors, allow: 'GET' } });
      const mine = [...sessions.values()].filter((s) => s.userSub === claims.sub).length;
      if (mine >= route.maxSessionsPerUser) return rpcError(429, ErrorCode.InvalidRequest, `at most ${route.maxSessionsPerUser} sessions per user on ${route.path}`, cors);
      const session = openSession(claims, randomToken(24), true);
      log.info('session started', { session: session.id, user: claims.sub, client: claims.client_id, transport: 'sse' });
      return session.openLegacyStream(req.signal, `${route.path}/message?session=${session.id}`, cors);
    }
    if (req.method !== 'POST') return new Response(null, { status: 405, headers: { ...cors, allow: 'POST' } });
    const session = sessions.get(url.searchParams.get('session') ?? '');
    if (!session || session.userSub !== claims.sub) return rpcError(404, ErrorCode.SessionNotFound, 'session not found: open the SSE stream again', cors);
    const body = await readMessages(req, cors);
    if (body instanceof Response) return body;
    await session.postLegacy(body.messages);
    return new Response('Accepted', { status: 202, headers: cors });
  };

  const handle = async (req: Request): Promise<Response> => {
    try {
      return await serve(req);
    } catch (err) {
      if (err instanceof StoreUnavailableError) return rpcError(503, ErrorCode.BackendFailed, 'the session store is unavailable; try again shortly', { ...corsHeaders(req), 'retry-after': '5' });
      if (err instanceof BackendError) return rpcError(err.status, ErrorCode.BackendFailed, err.message, corsHeaders(req));
      throw err;
    }
  };

  const serve = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const cors = corsHeaders(req);
    const origin = req.headers.get('origin');
    if (origin && !originAllowed(origin)) return rpcError(403, ErrorCode.InvalidRequest, `Origin ${origin} is not allowed`);
    const legacyStream = `${route.path}/sse`;
    const legacyMessages = `${route.path}/message`;
    if (![endpoint, legacyStream, legacyMessages].includes(url.pathname)) return rpcError(404, ErrorCode.InvalidRequest, `no MCP endpoint at ${url.pathname}; use ${endpoint}`, cors);
    if (req.method === 'OPTIONS') {
      return new Response(null, { status: 204, headers: { ...cors, 'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS', 'access-control-allow-headers': CORS_ALLOW_HEADERS, 'access-control-max-age': '600' } });
    }
    if (closing) return rpcError(503, ErrorCode.BackendFailed, 'the route is shutting down', { ...cors, 'retry-after': '1' });

    let claims: AccessTokenClaims;
    if (config.server.insecureNoAuth) {
      claims = ANONYMOUS; // conformance testing on loopback only (refused at config load otherwise)
    } else {
      const header = req.headers.get('authorization') ?? '';
      const token = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header)?.[1];
      if (!token) return unauthorized(url.pathname, cors);
      try {
        claims = await deps.verifier.verify(token, resources);
      } catch (err) {
        if (err instanceof InvalidTokenError) return unauthorized(url.pathname, cors, err);
        throw err;
      }
    }

    if (url.pathname === legacyStream || url.pathname === legacyMessages) return legacy(req, url, claims, cors);

    const protocolVersion = req.headers.get('mcp-protocol-version') ?? DEFAULT_PROTOCOL_VERSION;
    if (!SUPPORTED_PROTOCOL_VERSIONS.includes(protocolVersion)) return rpcError(400, ErrorCode.InvalidRequest, `unsupported MCP-Protocol-Version ${protocolVersion}`, cors);

    switch (req.method) {
      case 'POST':
        return post(req, claims, cors, protocolVersion);
      case 'GET': {
        if (!(req.headers.get('accept') ?? '').includes('text/event-stream')) return rpcError(406, ErrorCode.InvalidRequest, 'Accept must include text/event-stream', cors);
        const session = await sessionFor(req.headers.get('mcp-session-id'), claims);
        if (!session) return rpcError(404, ErrorCode.SessionNotFound, 'session not found: initialize again', cors);
        return session.openStream(req.signal, { ...cors, 'mcp-session-id': session.id });
      }
      case 'DELETE': {
        const id = req.headers.get('mcp-session-id');
        const session = id ? sessions.get(id) : undefined;
        if (!session || session.userSub !== claims.sub) {
          // Held by another instance (or none): forget the record so nobody resumes it.
          const record = id && /^[A-Za-z0-9_-]{16,64}$/.test(id) ? await deps.store.get<SessionRecord>('mcpSessions', id) : undefined;
          if (!record || record.userSub !== claims.sub) return rpcError(404, ErrorCode.SessionNotFound, 'session not found', cors);
          await deps.store.delete('mcpSessions', id!);
          return new Response(null, { status: 204, headers: cors });
        }
        await session.end('the client ended the session');
        await deps.store.delete('mcpSessions', session.id);
        return new Response(null, { status: 204, headers: cors });
      }
      default:
        return new Response(null, { status: 405, headers: { ...cors, allow: 'GET, POST, DELETE, OPTIONS' } });
    }
  };

  // Idle sessions (no request, no open stream) are ended: their child would otherwise live forever.
  const reaper = setInterval(() => {
    const cutoff = Date.now() - route.idleTimeout;
    for (const session of sessions.values()) if (!session.busy && session.lastActivity < cutoff) void session.end('idle timeout');
  }, Math.min(30_000, Math.max(1000, route.idleTimeout / 4)));
  reaper.unref();

  return {
    handle,
    async close(drainMs = 8000) {
      // Cloud Run allows 10 s after SIGTERM: new requests get 503, calls in flight get to finish,
      // then every session and child ends.
      closing = true;
      clearInterval(reaper);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...sessions.values()].map((s) => s.drained())), new Promise((resolve) => (timer = setTimeout(resolve, drainMs)))]);
      clearTimeout(timer);
      await Promise.all([...sessions.values()].map((s) => s.end('the gateway is shutting down')));
    },
    sessionCount: () => sessions.size,
    childPids: () => [...sessions.values()].flatMap((s) => (s.backend?.pid ? [s.backend.pid] : [])),
  };
}
