import type { Config, RouteConfig } from '../../lib/config/config.ts';
import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { Backend, BackendEvents } from '../../lib/mcp/backend.ts';
import { startHttpBackend } from '../../lib/mcp/http-backend.ts';
import { McpSession } from '../../lib/mcp/session.ts';
import { startStdioChild } from '../../lib/mcp/stdio-child.ts';
import { randomToken } from '../../lib/random.ts';
import { BackendError } from '../../lib/mcp/backend.ts';
import type { Store } from '../../lib/store/store.ts';
import type { AccessTokenClaims } from '../../lib/tokens/access-token.ts';
import { sessionAssertions } from '../../lib/tokens/identity-assertion.ts';
import type { SigningKey } from '../../lib/tokens/keys.ts';
import { compileToolPolicy } from '../../lib/mcp/tool-policy.ts';
import type { RouteCredential } from '../../lib/tokens/route-credential.ts';
import { startRelay, type RelayServe } from '../../lib/mcp/relay.ts';
import { startOwnership, type SessionOwnership } from './ownership.ts';
import { RemoteSession, type FindSession } from './remote-session.ts';
import { isSessionId, sessionRecord, type RecordedClaims } from './session-record.ts';
import { legacySessions } from './legacy-sessions.ts';

// A route's sessions: the ones this instance holds (each with its backend: a child process or
// an HTTP MCP server), their records in the store (written once, refreshed every
// idle_timeout/2), and resumption of a session another instance started, from its record.

/** What the store keeps of a session, so any instance can carry it on. */
export interface SessionRecord {
  [key: string]: unknown;
  route: string;
  userSub: string;
  email: string | null;
  clientId: string;
  protocolVersion: string;
  initializeParams: unknown;
  createdAt: number;
  lastSeen: number;
  /** The version (never the value) of the user's own credential the session runs with. */
  credentialVersion?: string;
  /** The instance running the session's server (ownership.ts); null once it let the session go. */
  owner?: string | null;
  /** Fencing epoch: one more at each takeover. */
  epoch?: number;
  /** Legacy HTTP+SSE: relayed to its owner while it lives, never resumed elsewhere (legacy-sessions.ts). */
  legacy?: true;
}

/** Default instance lease (ownership.ts): renewed every third of it. */
export const DEFAULT_LEASE_MS = 30_000;

export interface SessionRegistryDeps {
  readonly config: Pick<Config, 'server' | 'oauth'>;
  readonly route: RouteConfig;
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly keepaliveMs?: number;
  /** Signs identity assertions; required by an http route with `identity: assertion`. */
  readonly assertionKey?: SigningKey;
  /**
   * One owner per session (ownership.ts, relay.ts). Engaged by default when the store is shared
   * by instances (Firestore); a single process on SQLite keeps sessions to itself and pays nothing.
   */
  readonly ownership?: { readonly engaged?: boolean; readonly leaseMs?: number };
}

/** Whose session it is: from the access token, or from the session record when resuming. */
type SessionUser = Pick<AccessTokenClaims, 'sub' | 'client_id'> & { readonly email?: string; readonly credential?: RouteCredential };

/** A verified access token, with the user's own credential opened from it when the route takes one. */
export type RouteClaims = AccessTokenClaims & { readonly credential?: RouteCredential };

export function createSessionRegistry(deps: SessionRegistryDeps) {
  const { route, log } = deps;
  const sessions = new Map<string, McpSession>();
  const toolPolicy = route.tools ? compileToolPolicy(route.tools, route.path) : undefined;
  const assertionKey = route.type === 'http' && route.identity === 'assertion' ? deps.assertionKey : undefined;
  if (route.type === 'http' && route.identity === 'assertion' && !assertionKey) throw new Error(`${route.path}: identity: assertion needs the assertion signing key`);

  // The backend learns who the user is from the gateway alone: a stdio child (one user per
  // session) from its environment, an http backend from a signed assertion if the route asks.
  const startBackend = (session: McpSession, user: SessionUser): Backend => {
    const events: BackendEvents = { message: (m, origin) => session.receive(m, origin), closed: (reason: string) => void session.end(reason) };
    const backendLog = log.child({ session: session.id });
    // The user's own credential goes to their session's server alone: this child's environment,
    // or this session's requests to the backend.
    const inject = route.userCredential?.inject;
    if (route.type === 'stdio') {
      const gatewayEnvironment = { MCP_FRONT_USER_SUB: user.sub, MCP_FRONT_USER_EMAIL: user.email ?? '', ...(inject && user.credential ? { [inject.name]: user.credential.value } : {}) };
      return startStdioChild({ command: route.command, environment: route.environment, inherit: route.inheritEnv, gatewayEnvironment, sessionId: session.id, log: backendLog }, events);
    }
    const identityHeaders = assertionKey
      ? sessionAssertions(assertionKey, deps.clock, { issuer: deps.config.oauth.issuer, sub: user.sub, email: user.email ?? '', audience: route.backend!, route: route.path })
      : undefined;
    const headers = inject?.kind === 'header' && user.credential ? { ...route.headers, [inject.name]: inject.template.replaceAll('{credential}', user.credential.value) } : route.headers;
    return startHttpBackend({ url: route.backend!, headers, googleIdTokenAudience: route.googleIdTokenAudience, identityHeaders, log: backendLog }, events);
  };

  const openSession = (claims: SessionUser, id = randomToken(24), legacy = false): McpSession => {
    const session = new McpSession({
      id,
      legacy,
      userSub: claims.sub,
      clientId: claims.client_id,
      ...(claims.credential ? { credentialVersion: claims.credential.version } : {}),
      log,
      requestTimeoutMs: route.timeout,
      streamMaxMs: deps.config.server.streamTimeout,
      keepaliveMs: deps.keepaliveMs ?? 15_000,
      // The audit trail: who called which tool, how long it took, how it ended. Never arguments or results.
      onToolCall: (call) => log.info('tools/call', { audit: true, session: id, user: claims.sub, client: claims.client_id, route: route.path, ...call }),
      toolPolicy,
      onEnd: (s) => {
        sessions.delete(s.id);
        // The record in the store stays: another instance (or this one, restarted) may carry the
        // session on. Only the client's DELETE forgets it; otherwise it expires after idle_timeout.
        // A legacy session, over with its stream, is forgotten at once (legacy-sessions.ts).
        if (s.legacy) ownership?.forget(s.id);
        else ownership?.release(s.id);
        recordedAt.delete(s.id);
        records.delete(s.id);
        log.info('session ended', { session: s.id, user: s.userSub, client: s.clientId });
      },
    });
    session.backend = startBackend(session, claims);
    sessions.set(session.id, session);
    return session;
  };

  /** When each session's record was last written: refreshed at most every idle_timeout/2. */
  const recordedAt = new Map<string, number>();
  const records = new Map<string, SessionRecord>();

  const recordSession = async (session: McpSession, claims: RecordedClaims) => {
    const now = deps.clock.now();
    const record = sessionRecord(route.path, session, claims, now, records.get(session.id)?.createdAt);
    const first = !records.has(session.id);
    records.set(session.id, record);
    recordedAt.set(session.id, now);
    // One write per session start and per idle_timeout/2, never per call; a store outage must
    // not break the session itself, only its resumption elsewhere.
    const failed = (err: unknown) => log.warn('could not record the session', { error: String(err) });
    if (!ownership) return void (await deps.store.put('mcpSessions', session.id, record, { expiresAt: now + route.idleTimeout }).catch(failed));
    // Owned: a new session's record names this instance (after its lease is written); a refresh
    // lands only while the session is still ours, so it never brings back a deleted record.
    if (session.ended) return;
    const epoch = ownership.epochOf(session.id);
    if (epoch === undefined) {
      if (!first) return;
      try {
        await ownership.leased();
        await deps.store.put('mcpSessions', session.id, { ...record, owner: ownership.instanceId, epoch: 1 }, { expiresAt: now + route.idleTimeout });
        ownership.adopt(session.id);
      } catch (err) {
        failed(err);
      }
      return;
    }
    await ownership.refresh(session.id, { ...record, owner: ownership.instanceId, epoch }, now + route.idleTimeout).catch(failed);
  };

  const touch = ({ id }: { readonly id: string }) => {
    const last = recordedAt.get(id);
    const record = records.get(id);
    const session = sessions.get(id);
    if (last === undefined || !record || !session || deps.clock.now() - last < route.idleTimeout / 2) return;
    void recordSession(session, { sub: record.userSub, client_id: record.clientId, email: record.email ?? undefined });
  };

  /** Single flight per (session, user): concurrent requests for a session being resumed wait for one resumption. */
  const resuming = new Map<string, Promise<McpSession | RemoteSession | undefined>>();

  const resume = async (id: string, claims: RouteClaims): Promise<McpSession | RemoteSession | undefined> => {
    const sub = claims.sub;
    // The only store read on a request path, and only for a session this instance doesn't hold.
    let record = await deps.store.get<SessionRecord>('mcpSessions', id);
    if (!record || record.legacy || record.route !== route.path || record.userSub !== sub) return undefined;
    // Started with a credential the user has since replaced: over (the client initializes anew).
    if (record.credentialVersion !== claims.credential?.version) return undefined;
    const full = () => new BackendError(`this instance of ${route.path} holds its ${route.maxSessionsPerInstance} sessions; retry shortly`, { status: 503 });
    if (!ownership && sessions.size >= route.maxSessionsPerInstance) throw full();
    if (ownership) {
      // Owned elsewhere by a live instance: relay. Otherwise (no owner, or its lease lapsed) take it over.
      for (let attempt = 0; ; attempt++) {
        if (record.owner && record.owner !== ownership.instanceId && (await ownership.alive(record.owner))) return remote(id, claims, record.owner);
        if (sessions.size >= route.maxSessionsPerInstance) throw full();
        const taken = await ownership.takeOver(id, record, deps.clock.now() + route.idleTimeout);
        if (taken) {
          record = taken as SessionRecord;
          break;
        }
        record = await deps.store.get<SessionRecord>('mcpSessions', id);
        if (!record || record.route !== route.path || record.userSub !== sub || attempt === 2) return undefined;
      }
    }
    const session = openSession({ sub: record.userSub, client_id: record.clientId, ...(record.email ? { email: record.email } : {}), ...(claims.credential ? { credential: claims.credential } : {}) }, id);
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

  /**
   * A token carrying another version of the user's credential than the session was started with:
   * the user replaced (or deleted and gave again) their credential, and this token was issued
   * since. The session ends, its record too, and the client initializes a new one, whose server
   * gets the credential as it is now.
   */
  const credentialChanged = (session: McpSession, claims: RouteClaims): boolean => {
    if (session.credentialVersion === claims.credential?.version) return false;
    log.info('session ended: the user replaced their credential', { session: session.id, user: session.userSub });
    void deps.store.delete('mcpSessions', session.id).catch((err: unknown) => log.warn('could not forget the session', { error: String(err) }));
    void session.end('the user replaced their credential for this route');
    return true;
  };

  const sessionFor = async (id: string | null, claims: RouteClaims): Promise<McpSession | RemoteSession | undefined> => {
    if (!isSessionId(id)) return undefined;
    const live = sessions.get(id);
    // Another user's session looks exactly like a missing one: nothing about it leaks.
    if (live) return live.userSub === claims.sub && !credentialChanged(live, claims) ? live : undefined;
    const key = `${id}\n${claims.sub}\n${claims.credential?.version ?? ''}`;
    let pending = resuming.get(key);
    if (!pending) {
      pending = resume(id, claims).finally(() => resuming.delete(key));
      resuming.set(key, pending);
    }
    return pending;
  };

  /** What this instance keeps in memory about sessions, all told: zero once every session ended (the soak found a leak here). */
  const heldEntries = () => sessions.size + records.size + recordedAt.size + resuming.size + (relay?.openStreams() ?? 0);

  // ---- one owner per session (ownership.ts), calls relayed to it (lib/mcp/relay.ts) ----
  const leaseMs = deps.ownership?.leaseMs ?? deps.config.server.sessionLease ?? DEFAULT_LEASE_MS;
  const ownership: SessionOwnership | undefined =
    (deps.ownership?.engaged ?? deps.store.kind === 'firestore')
      ? startOwnership({ store: deps.store, clock: deps.clock, log, route: route.path, leaseMs, recordTtlMs: route.idleTimeout, onLost: (id, reason) => void sessions.get(id)?.end(`this instance no longer runs the session: ${reason}`) })
      : undefined;
  /** The owner's side of a relayed call: answered exactly as a call made here. */
  const serveRelayed: RelayServe = async (call, signal) => {
    const session = sessions.get(call.session);
    if (!session || session.ended) return undefined;
    if (call.kind === 'legacy') return session.legacy ? session.postLegacy(call.messages, signal, {}) : undefined;
    touch(session);
    return call.kind === 'post' ? session.post(call.messages, call.batch, signal, call.headers) : session.openStream(signal, call.headers);
  };
  const relay = ownership ? startRelay({ store: deps.store, instanceId: ownership.instanceId, clock: deps.clock, log, serve: serveRelayed, keepaliveMs: deps.keepaliveMs ?? 15_000 }) : undefined;
  const remote = (id: string, claims: RouteClaims, owner: string, find: FindSession = () => sessionFor(id, claims)) =>
    new RemoteSession(id, claims.sub, owner, { relay: relay!, ownership: ownership!, leaseMs, requestTimeoutMs: route.timeout, find });
  const legacy = legacySessions({ route: route.path, store: deps.store, clock: deps.clock, log, streamTimeoutMs: deps.config.server.streamTimeout, sessions, ownership, credentialChanged, remote });

  /** Ends this instance's part: its relayed streams, its listeners, its lease (after its sessions ended and let go). */
  const close = async () => {
    relay?.close();
    await ownership?.close();
  };

  return { sessions, openSession, recordSession, recordLegacySession: legacy.record, touch, sessionFor, legacySessionFor: legacy.find, credentialChanged, heldEntries, close, instanceId: ownership?.instanceId };
}
