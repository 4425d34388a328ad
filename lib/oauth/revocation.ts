import type { Clock } from '../clock.ts';
import { sha256 } from '../random.ts';
import type { Store } from '../store/store.ts';
import { putGrant, userKey, type GrantRecord, type RefreshRecord, type UserRecord } from './grants.ts';
import { deleteUserCredentialsByEmail } from './user-credentials.ts';

// Ending grants: an administrator's (`mcp-front revoke --user/--client`), a client's (RFC 7009),
// the user's own (the account page). A revoked grant's refresh tokens stop working at once;
// access tokens already issued die within token_ttl (routes verify them offline).

/** `mcp-front revoke --user`: every grant of the user ends, and no refresh of an older grant succeeds. */
export async function revokeUser(store: Store, clock: Clock, email: string): Promise<number> {
  const now = clock.now();
  await store.put('users', userKey(email), { email: email.toLowerCase(), revokedAt: now } satisfies UserRecord);
  const grants = await store.find<GrantRecord>('grants', 'email', email.toLowerCase());
  for (const { id, doc } of grants) if (!doc.revokedAt) await putGrant(store, id, { ...doc, revokedAt: now, revokedReason: 'user revoked by an administrator' });
  for (const { id } of await store.find('browserSessions', 'email', email.toLowerCase())) await store.delete('browserSessions', id);
  // Their own credentials for routes are of no use to anyone now, and are secrets: gone.
  await deleteUserCredentialsByEmail(store, email);
  return grants.filter((g) => !g.doc.revokedAt).length;
}

/** The account page's revoke button: only a grant of this user; false when it is not theirs or already over. */
export async function revokeGrantOfUser(store: Store, clock: Clock, grantId: string, userSub: string): Promise<boolean> {
  return store.transaction(async (tx) => {
    const grant = await tx.get<GrantRecord>('grants', grantId);
    if (!grant || grant.userSub !== userSub || grant.revokedAt) return false;
    putGrant(tx, grantId, { ...grant, revokedAt: clock.now(), revokedReason: 'revoked by the user on the account page' });
    return true;
  });
}

/**
 * A grant is live until revoked or until its refresh token, last rotated at lastUsedAt, expires.
 * One from before lastUsedAt was recorded may have been refreshed since its creation: live.
 */
export function grantIsLive(grant: GrantRecord, now: number, refreshTtlMs: number): boolean {
  return !grant.revokedAt && (grant.lastUsedAt === undefined || grant.lastUsedAt + refreshTtlMs > now);
}

/** `mcp-front revoke --client`: every grant of the client ends. */
export async function revokeClient(store: Store, clock: Clock, clientId: string): Promise<number> {
  const now = clock.now();
  const grants = await store.find<GrantRecord>('grants', 'clientId', clientId);
  for (const { id, doc } of grants) if (!doc.revokedAt) await putGrant(store, id, { ...doc, revokedAt: now, revokedReason: 'client revoked by an administrator' });
  await store.delete('clients', clientId);
  return grants.filter((g) => !g.doc.revokedAt).length;
}

/** Revokes the grant a refresh token belongs to (RFC 7009); unknown tokens are not an error. */
export async function revokeByRefreshToken(store: Store, clock: Clock, token: string, clientId: string): Promise<void> {
  await store.transaction(async (tx) => {
    const record = await tx.get<RefreshRecord>('refreshTokens', sha256(token));
    if (!record || record.clientId !== clientId) return;
    const grant = await tx.get<GrantRecord>('grants', record.grantId);
    if (grant && !grant.revokedAt) putGrant(tx, record.grantId, { ...grant, revokedAt: clock.now(), revokedReason: 'revoked by the client' });
  });
}
