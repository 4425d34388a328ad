import type { McpSession } from '../../lib/mcp/session.ts';
import type { AccessTokenClaims } from '../../lib/tokens/access-token.ts';
import type { SessionRecord } from './registry.ts';

// A session's record in the sessions store, for Streamable HTTP sessions (registry.ts) and
// legacy SSE ones (legacy-sessions.ts) alike, and the shape of the ids it is kept under.

/** What a session's record says of who started it (the token's claims). */
export type RecordedClaims = Pick<AccessTokenClaims, 'sub' | 'client_id'> & { email?: string };

/** The store's record of a session (an owned one also names its owner and epoch, added by the caller). */
export function sessionRecord(route: string, session: McpSession, claims: RecordedClaims, now: number, createdAt = now): SessionRecord {
  return {
    route,
    userSub: claims.sub,
    email: claims.email ?? null,
    clientId: claims.client_id,
    protocolVersion: session.protocolVersion,
    initializeParams: session.initializeParams ?? null,
    createdAt,
    lastSeen: now,
    ...(session.credentialVersion ? { credentialVersion: session.credentialVersion } : {}),
  };
}

/** The shape of the session ids this gateway gives out: anything else names no session, and is never looked up. */
export const isSessionId = (id: string | null | undefined): id is string => !!id && /^[A-Za-z0-9_-]{16,64}$/.test(id);

