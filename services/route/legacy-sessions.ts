import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import type { McpSession } from '../../lib/mcp/session.ts';
import type { Store } from '../../lib/store/store.ts';
import type { SessionOwnership } from './ownership.ts';
import type { RouteClaims, SessionRecord } from './registry.ts';
import { isSessionId, sessionRecord } from './session-record.ts';
import type { FindSession, RemoteSession } from './remote-session.ts';

// Legacy HTTP+SSE sessions (2024-11-05) across instances. Such a session lives exactly as long
// as its SSE stream, on the instance holding it: that instance owns it, and it is never resumed
// elsewhere (an owner gone took the stream with it: the session is over). Its record names the
// owner so that a POST to /message landing on another instance (Cloud Run's balancer keeps no
// client on one) is relayed there. The record is written once, before the stream's `endpoint`
// event goes out (the client's first POST may land anywhere), never refreshed, deleted when the
// session ends (ownership.forget), and expires with the stream's longest life anyway.

/** A legacy record outlives its stream's longest life by this much: the instances' clocks differ. */
const RECORD_MARGIN_MS = 60_000;

export interface LegacySessionsDeps {
  readonly route: string;
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  /** server.stream_timeout: the stream, and so the session, ends by then. */
  readonly streamTimeoutMs: number;
  readonly sessions: ReadonlyMap<string, McpSession>;
  /** Undefined on a single process (SQLite): its sessions are its own, nothing is recorded. */
  readonly ownership: SessionOwnership | undefined;
  /** Ends a session whose user replaced their credential since; true then (registry.ts). */
  readonly credentialChanged: (session: McpSession, claims: RouteClaims) => boolean;
  readonly remote: (id: string, claims: RouteClaims, owner: string, find: FindSession) => RemoteSession;
}

export function legacySessions(deps: LegacySessionsDeps) {
  const { store, clock, log, sessions, ownership } = deps;

  /** Records a session whose stream opens here. A store outage leaves it working for the POSTs that land here. */
  const record = async (session: McpSession, claims: RouteClaims): Promise<void> => {
    if (!ownership) return;
    const now = clock.now();
    const doc: SessionRecord = { ...sessionRecord(deps.route, session, claims, now), protocolVersion: '2024-11-05', initializeParams: null, owner: ownership.instanceId, epoch: 1, legacy: true };
    try {
      await ownership.leased();
      await store.put('mcpSessions', session.id, doc, { expiresAt: now + deps.streamTimeoutMs + RECORD_MARGIN_MS });
    } catch (err) {
      return void log.warn('could not record the session', { session: session.id, error: String(err) });
    }
    ownership.adopt(session.id);
    if (session.ended) ownership.forget(session.id);
  };

  /** The session a POST to /message names: the one held here (no store read), or one a live instance holds, relayed to. */
  const find = async (id: string, claims: RouteClaims): Promise<McpSession | RemoteSession | undefined> => {
    const live = sessions.get(id);
    // Another user's session looks exactly like a missing one: nothing about it leaks.
    if (live) return live.legacy && live.userSub === claims.sub && !deps.credentialChanged(live, claims) ? live : undefined;
    if (!ownership || !isSessionId(id)) return undefined;
    const doc = await store.get<SessionRecord>('mcpSessions', id);
    if (!doc?.legacy || doc.route !== deps.route || doc.userSub !== claims.sub || doc.credentialVersion !== claims.credential?.version) return undefined;
    if (!doc.owner || doc.owner === ownership.instanceId || !(await ownership.alive(doc.owner))) return undefined;
    return deps.remote(id, claims, doc.owner, () => find(id, claims));
  };

  return { record, find };
}
