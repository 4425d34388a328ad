import type { Clock } from '../clock.ts';
import type { RouteConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { randomToken } from '../random.ts';
import type { Store } from '../store/store.ts';
import type { CredentialKeys } from '../tokens/credential-keys.ts';
import { OAuthError } from './errors.ts';
import { ServiceOAuthError, type ServiceOAuth, type ServiceTokens } from './service-oauth.ts';
import { credentialId, openUserCredential, sealUserCredential, storedCredential, type UserCredentialRecord } from './user-credentials.ts';

// Each user's own account at a route's service (routes[].user_oauth), once connected: its
// tokens are kept as a user credential is (one record per user and route, sealed under the
// sealing key with the user and route as additional data), and its access token is what goes
// into the access token for the route, sealed for that route (functions/oauth/token.ts): the
// route can't tell it from a typed-in credential. /token renews it first when it is (nearly)
// expired; each renewal is a new version, so sessions started with the old one end and their
// client's new session gets the new token (a stdio child's environment can't change).

/** A service token with less than this left is renewed before it goes into an access token. */
export const SERVICE_TOKEN_MARGIN_MS = 5 * 60_000;

interface SealedServiceTokens {
  access_token: string;
  refresh_token?: string;
}

/** The service's tokens in the clear, or undefined when the record is not a service account or does not open for this user and route. */
export function openServiceTokens(keys: CredentialKeys, record: UserCredentialRecord, expected: { userSub: string; route: string }): ServiceTokens | undefined {
  if (record.kind !== 'service-account') return undefined;
  const plain = openUserCredential(keys, record, expected);
  if (plain === undefined) return undefined;
  const sealed = JSON.parse(plain) as SealedServiceTokens;
  return { accessToken: sealed.access_token, ...(sealed.refresh_token ? { refreshToken: sealed.refresh_token } : {}), ...(record.expiresAt !== undefined ? { expiresAt: record.expiresAt } : {}) };
}

/** What the route gets for this record: the typed-in credential, or the service account's access token. */
export function deliveredCredential(keys: CredentialKeys, record: UserCredentialRecord, expected: { userSub: string; route: string }): string | undefined {
  return record.kind === 'service-account' ? openServiceTokens(keys, record, expected)?.accessToken : openUserCredential(keys, record, expected);
}

/** A connected account that can still give a token: it opens, and is not expired past renewing. */
export function serviceAccountUsable(keys: CredentialKeys, record: UserCredentialRecord | undefined, expected: { userSub: string; route: string }, now: number): boolean {
  const tokens = record && openServiceTokens(keys, record, expected);
  return tokens !== undefined && (tokens.refreshToken !== undefined || tokens.expiresAt === undefined || tokens.expiresAt > now);
}

/**
 * Stores the service's tokens for the user and route, a new version. With `replacing`, only if
 * the stored record is still that version (a concurrent /token may have renewed it already: its
 * tokens win, ours are dropped). A refresh answer without a refresh_token keeps the old one.
 */
export async function saveServiceTokens(
  store: Store,
  clock: Clock,
  keys: CredentialKeys,
  user: { sub: string; email: string },
  route: string,
  tokens: ServiceTokens,
  replacing?: { version: string; refreshToken?: string },
): Promise<boolean> {
  const id = credentialId(user.sub, route);
  const now = clock.now();
  const refreshToken = tokens.refreshToken ?? replacing?.refreshToken;
  const sealed: SealedServiceTokens = { access_token: tokens.accessToken, ...(refreshToken ? { refresh_token: refreshToken } : {}) };
  return store.transaction(async (tx) => {
    const previous = await tx.get<UserCredentialRecord>('userCredentials', id);
    if (replacing && previous?.version !== replacing.version) return false;
    const record: UserCredentialRecord = {
      userSub: user.sub,
      email: user.email.toLowerCase(),
      route,
      sealed: sealUserCredential(keys, user.sub, route, JSON.stringify(sealed)),
      version: randomToken(12),
      createdAt: replacing && previous ? previous.createdAt : now,
      updatedAt: now,
      kind: 'service-account',
      ...(tokens.expiresAt !== undefined ? { expiresAt: tokens.expiresAt } : {}),
    };
    tx.put('userCredentials', id, record);
    return true;
  });
}

export interface RenewalDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly credentialKeys: CredentialKeys;
  readonly serviceOAuth: ServiceOAuth;
}

/**
 * Before /token puts the user's service token into an access token: renews it with the service's
 * refresh token when it has less than SERVICE_TOKEN_MARGIN_MS left. The service refusing the
 * refresh token (invalid_grant) ends the connection (the record is deleted, so the next
 * /authorize asks to connect again) and this token request with invalid_grant. A service that
 * can't be reached: the current token while it lasts, else 503.
 */
export async function renewServiceAccount(deps: RenewalDeps, route: RouteConfig, userSub: string): Promise<void> {
  const oauth = route.userCredential?.oauth;
  if (!oauth) return;
  const label = route.userCredential!.label;
  const record = await storedCredential(deps.store, userSub, route.path);
  const tokens = record && openServiceTokens(deps.credentialKeys, record, { userSub, route: route.path });
  // Missing or unreadable: the grant's check says so (credentialNeeds).
  if (!record || !tokens || tokens.expiresAt === undefined) return;
  const now = deps.clock.now();
  if (tokens.expiresAt - now > SERVICE_TOKEN_MARGIN_MS) return;
  const reconnect = 'connect it again: your MCP client\'s next authorization asks you to';
  if (!tokens.refreshToken) {
    if (tokens.expiresAt > now) return;
    throw new OAuthError('invalid_grant', 400, `your ${label} token for ${route.path} has expired and the service gave none to renew it with: ${reconnect}`);
  }
  let renewed: ServiceTokens;
  try {
    renewed = await deps.serviceOAuth.refresh(route.path, oauth, tokens.refreshToken);
  } catch (err) {
    if (!(err instanceof ServiceOAuthError)) throw err;
    deps.log.warn('service account renewal failed', { user: userSub, route: route.path, reason: err.code, error: err.message });
    if (err.code === 'invalid_grant') {
      // Only the connection that was refused: a concurrent /token may have renewed it meanwhile.
      await deps.store.transaction(async (tx) => {
        const current = await tx.get<UserCredentialRecord>('userCredentials', credentialId(userSub, route.path));
        if (current?.version === record.version) tx.delete('userCredentials', credentialId(userSub, route.path));
      });
      throw new OAuthError('invalid_grant', 400, `your ${label} refused to renew this gateway's access to it for ${route.path} (${err.message}): ${reconnect}`);
    }
    if (tokens.expiresAt > now) return;
    throw new OAuthError('temporarily_unavailable', 503, `your ${label} token for ${route.path} has expired and the service could not renew it now (${err.message}); try again shortly`, { 'retry-after': '5' });
  }
  const saved = await saveServiceTokens(deps.store, deps.clock, deps.credentialKeys, { sub: userSub, email: record.email }, route.path, renewed, { version: record.version, ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}) });
  deps.log.info('service account renewed', { user: userSub, route: route.path, stored: saved });
}

/**
 * How Disconnect ended: `revoked`, the service confirmed it revoked the token (RFC 7009);
 * `not-offered`, the service has no revocation endpoint; `unconfirmed`, it could not be asked or
 * did not say yes (the tokens here are deleted all the same); `nothing-stored`, no connection.
 */
export type Disconnection = 'revoked' | 'not-offered' | 'unconfirmed' | 'nothing-stored';

/**
 * Deletes the user's connection to the route's service, then asks the service to revoke its
 * refresh token (which also ends the access tokens of that grant, RFC 7009 §2.1), best effort.
 * Deleted first and in one step with the read: the copy here is gone whatever the service does,
 * and a renewal racing with this finds no record to replace (saveServiceTokens drops its tokens).
 */
export async function disconnectServiceAccount(deps: RenewalDeps, route: RouteConfig, userSub: string): Promise<Disconnection> {
  const id = credentialId(userSub, route.path);
  const record = await deps.store.transaction(async (tx) => {
    const found = await tx.get<UserCredentialRecord>('userCredentials', id);
    if (found) tx.delete('userCredentials', id);
    return found;
  });
  if (!record) return 'nothing-stored';
  const tokens = openServiceTokens(deps.credentialKeys, record, { userSub, route: route.path });
  if (!tokens) {
    deps.log.warn('service account disconnected, not revoked: its tokens could not be read', { user: userSub, route: route.path });
    return 'unconfirmed';
  }
  try {
    const revoked = await deps.serviceOAuth.revoke(route.path, route.userCredential!.oauth!, tokens.refreshToken ? { token: tokens.refreshToken, hint: 'refresh_token' } : { token: tokens.accessToken, hint: 'access_token' });
    deps.log.info('service account disconnected', { user: userSub, route: route.path, revokedAtService: revoked });
    return revoked ? 'revoked' : 'not-offered';
  } catch (err) {
    if (!(err instanceof ServiceOAuthError)) throw err;
    deps.log.warn('service account disconnected, revocation at the service failed', { user: userSub, route: route.path, reason: err.code, error: err.message });
    return 'unconfirmed';
  }
}
