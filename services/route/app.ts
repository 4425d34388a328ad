import type { Clock } from '../../lib/clock.ts';
import { isLoopbackHost, routeResources, type Config, type RouteConfig } from '../../lib/config/config.ts';
import { madeAnswer, urlOf, type HttpRequest, type RequestContext } from '../../lib/http/types.ts';
import { readBodyLimited } from '../../lib/http/body.ts';
import type { Logger } from '../../lib/log.ts';
import { randomToken } from '../../lib/random.ts';
import type { Store } from '../../lib/store/store.ts';
import { InvalidTokenError, type AccessTokenClaims, type AccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import type { SigningKey } from '../../lib/tokens/keys.ts';
import { BackendError } from '../../lib/mcp/backend.ts';
import { StoreUnavailableError } from '../../lib/store/store.ts';
import { ErrorCode, errorResponse, isRequest, parseMessages, type JsonRpcMessage } from '../../lib/mcp/jsonrpc.ts';
import { createSessionRegistry, type RouteClaims, type SessionRecord, type SessionRegistryDeps } from './registry.ts';
import { isSessionId } from './session-record.ts';
import { routeCredentialOpener } from '../../lib/tokens/route-credential.ts';
import type { CredentialKeySet } from '../../lib/tokens/credential-keys.ts';

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
  /** The identity-assertion key, for an http route with `identity: assertion` (lib/tokens/keys.ts). */
  readonly assertionKey?: SigningKey;
  /** This route's own credential keys, newest first, for a route with `user_credential` (lib/tokens/credential-keys.ts). */
  readonly credentialKeys?: CredentialKeySet;
  /** One owner per session across instances (registry.ts, ownership.ts). */
  readonly ownership?: SessionRegistryDeps['ownership'];
}

export interface RouteService {
  handle(req: HttpRequest, ctx: RequestContext): Promise<Response>;
  /** Lets calls in flight finish (up to `drainMs`), then ends every session and child; resolves once all are gone. */
  close(drainMs?: number): Promise<void>;
  sessionCount(): number;
  /** Everything held in memory about sessions (live ones, their records, resumptions): zero when none is live. */
  heldEntries(): number;
  /** Child pids of live stdio sessions (tests check none outlives its session). */
  childPids(): number[];
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

  const corsHeaders = (req: HttpRequest): Record<string, string> => {
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

  const registry = createSessionRegistry(deps);
  const { sessions, openSession, recordSession, recordLegacySession, touch, sessionFor, legacySessionFor } = registry;
  if (route.userCredential && !deps.credentialKeys) throw new Error(`${route.path}: user_credential needs the route's credential key`);
  const openCredential = route.userCredential && deps.credentialKeys ? routeCredentialOpener(deps.credentialKeys, route.path) : undefined;

  /**
   * Whether another session may start here: the instance's cap comes first (503 + Retry-After,
   * so the client retries and Cloud Run scales out instead of this instance running out of
   * memory), then the user's own (429).
   */
  const refuseNewSession = (claims: RouteClaims, cors: Record<string, string>, id?: JsonRpcMessage['id']): Response | undefined => {
    if (sessions.size >= route.maxSessionsPerInstance) {
      return rpcError(503, ErrorCode.BackendFailed, `this instance of ${route.path} holds its ${route.maxSessionsPerInstance} sessions; retry shortly`, { ...cors, 'retry-after': '2' }, id);
    }
    const mine = [...sessions.values()].filter((s) => s.userSub === claims.sub).length;
    if (mine >= route.maxSessionsPerUser) return rpcError(429, ErrorCode.InvalidRequest, `at most ${route.maxSessionsPerUser} sessions per user on ${route.path}; end one first`, cors, id);
    return undefined;
  };

  /** The POSTed JSON-RPC message or batch, or the error answer for a body that isn't one. */
  const readMessages = async (req: HttpRequest, cors: Record<string, string>): Promise<{ messages: JsonRpcMessage[]; batch: boolean } | Response> => {
    // Both transports: a text/plain POST is what a web page can send without a preflight.
    if (!(req.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json')) return rpcError(415, ErrorCode.InvalidRequest, 'Content-Type must be application/json', cors);
    const text = await readBodyLimited(req, MAX_BODY_BYTES);
    if (text === undefined) return rpcError(413, ErrorCode.InvalidRequest, `the message is larger than ${MAX_BODY_BYTES} bytes`, cors);
    let parsed: ReturnType<typeof parseMessages>;
    try {
      // A route with a tool policy decides on content: the server gets what the policy judged (jsonrpc.ts).
      parsed = parseMessages(text, !route.tools);
    } catch {
      return rpcError(400, ErrorCode.ParseError, 'the body is not JSON', cors);
    }
    const { messages, batch } = parsed;
    if (!messages.length || messages.some((m) => !m)) return rpcError(400, ErrorCode.InvalidRequest, 'not a JSON-RPC 2.0 message', cors);
    return { messages: messages as JsonRpcMessage[], batch };
  };

  const post = async (req: HttpRequest, claims: RouteClaims, cors: Record<string, string>, protocolVersion: string): Promise<Response> => {
    const body = await readMessages(req, cors);
    if (body instanceof Response) return body;
    const { messages: valid, batch } = body;
    const initialize = valid.find((m) => m.method === 'initialize');
    const sessionId = req.headers.get('mcp-session-id');

    if (initialize) {
      if (valid.length !== 1 || !isRequest(initialize)) return rpcError(400, ErrorCode.InvalidRequest, 'initialize must be sent alone', cors, initialize.id);
      const full = refuseNewSession(claims, cors, initialize.id);
      if (full) return full;
      const session = openSession(claims);
      session.initializeParams = initialize.params;
      log.info('session started', { session: session.id, user: claims.sub, client: claims.client_id });
      const requested = (initialize.params as { protocolVersion?: unknown } | undefined)?.protocolVersion;
      const response = await session.post(valid, false, req.signal, { ...cors, 'mcp-session-id': session.id }, { protocolVersion: typeof requested === 'string' ? requested : protocolVersion });
      // The negotiated version, from the answer's text as it will be written (a JSON answer is one message here).
      const text = madeAnswer(response)?.text ?? (response.headers.get('content-type')?.includes('json') ? await response.clone().text() : undefined);
      const body = text === undefined ? undefined : (JSON.parse(text) as JsonRpcMessage);
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
    return session.post(valid, batch, req.signal, { ...cors, 'mcp-session-id': session.id }, { protocolVersion });
  };

  /**
   * A call with no session (ChatGPT sends some that way): served by a session that lives for
   * this one exchange, initialized with neutral client params, ended when the answer is out.
   */
  const statelessCall = async (messages: JsonRpcMessage[], batch: boolean, claims: RouteClaims, cors: Record<string, string>, protocolVersion: string, signal: AbortSignal): Promise<Response> => {
    if (!messages.some(isRequest)) return new Response(null, { status: 202, headers: cors });
    // A call without a session still runs a server (a child, on stdio routes): it counts.
    const full = refuseNewSession(claims, cors, messages.find(isRequest)?.id);
    if (full) return full;
    const session = openSession(claims);
    try {
      await session.initializeBackend({ protocolVersion, capabilities: {}, clientInfo: { name: 'mcp-front (no session)', version: '1.0.0' } });
    } catch (err) {
      await session.end('could not start a session for a call without one');
      return rpcError(502, ErrorCode.BackendFailed, (err as Error).message, cors, messages.find(isRequest)?.id);
    }
    const response = await session.post(messages, batch, signal, cors, { protocolVersion, resumable: false });
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
   * The instance holding the stream owns the session; a POST landing on another is relayed to
   * it (legacy-sessions.ts), as Cloud Run's balancer keeps no client on one instance.
   */
  const legacy = async (req: HttpRequest, url: URL, claims: RouteClaims, cors: Record<string, string>): Promise<Response> => {
    if (url.pathname.endsWith('/sse')) {
      if (req.method !== 'GET') return new Response(null, { status: 405, headers: { ...cors, allow: 'GET' } });
      const full = refuseNewSession(claims, cors);
      if (full) return full;
      const session = openSession(claims, randomToken(24), true);
      log.info('session started', { session: session.id, user: claims.sub, client: claims.client_id, transport: 'sse' });
      await recordLegacySession(session, claims);
      if (session.ended) return rpcError(502, ErrorCode.BackendFailed, 'the MCP server ended as the session started', cors);
      return session.openLegacyStream(req.signal, `${route.path}/message?session=${session.id}`, cors);
    }
    if (req.method !== 'POST') return new Response(null, { status: 405, headers: { ...cors, allow: 'POST' } });
    const session = await legacySessionFor(url.searchParams.get('session') ?? '', claims);
    if (!session) return rpcError(404, ErrorCode.SessionNotFound, 'session not found: open the SSE stream again', cors);
    const body = await readMessages(req, cors);
    if (body instanceof Response) return body;
    return session.postLegacy(body.messages, req.signal, cors);
  };

  const handle = async (req: HttpRequest): Promise<Response> => {
    try {
      return await serve(req);
    } catch (err) {
      if (err instanceof StoreUnavailableError) return rpcError(503, ErrorCode.BackendFailed, 'the session store is unavailable; try again shortly', { ...corsHeaders(req), 'retry-after': '5' });
      if (err instanceof BackendError) return rpcError(err.status, ErrorCode.BackendFailed, err.message, { ...corsHeaders(req), ...(err.status === 503 ? { 'retry-after': '2' } : {}) });
      throw err;
    }
  };

  const serve = async (req: HttpRequest): Promise<Response> => {
    const url = urlOf(req);
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

    let claims: RouteClaims;
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
      if (openCredential) {
        // The user's own credential, sealed for this route alone, rides in the token: no store
        // read. A token without one (issued before the route took credentials) or whose sealed
        // value doesn't open for this user here is refused like an invalid token, so the client
        // refreshes (and /token asks for the credential).
        const credential = typeof claims.cred === 'string' ? openCredential(claims.cred, claims.sub) : undefined;
        if (!credential) return unauthorized(url.pathname, cors, new InvalidTokenError('claims', `the access token carries no usable ${route.userCredential!.label} for ${route.path}; refresh it, or connect again`));
        claims = { ...claims, credential };
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
        return session.openStream(req.signal, { ...cors, 'mcp-session-id': session.id }, { protocolVersion, lastEventId: req.headers.get('last-event-id') });
      }
      case 'DELETE': {
        const id = req.headers.get('mcp-session-id');
        const session = id ? sessions.get(id) : undefined;
        if (!session || session.userSub !== claims.sub) {
          // Held by another instance (or none): forget the record so nobody resumes it.
          const record = isSessionId(id) ? await deps.store.get<SessionRecord>('mcpSessions', id) : undefined;
          // A record belongs to its user and its route: another route never forgets it.
          if (!record || record.userSub !== claims.sub || record.route !== route.path) return rpcError(404, ErrorCode.SessionNotFound, 'session not found', cors);
          await deps.store.delete('mcpSessions', id!);
          return new Response(null, { status: 204, headers: cors });
        }
        // The record goes first: a request still in flight for this session (the client's GET
        // stream) must find nothing to resume once the session is over.
        await deps.store.delete('mcpSessions', session.id);
        await session.end('the client ended the session');
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
      await registry.close();
    },
    sessionCount: () => sessions.size,
    heldEntries: registry.heldEntries,
    childPids: () => [...sessions.values()].flatMap((s) => (s.backend?.pid ? [s.backend.pid] : [])),
  };
}
