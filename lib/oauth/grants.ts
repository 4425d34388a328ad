import { createHash } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { randomToken, safeEqual, sha256 } from '../random.ts';
import type { Collection, Doc, PutOptions, Store, Transaction } from '../store/store.ts';
import { OAuthError } from './errors.ts';
import { credentialId, type CredentialNeed, type UserCredentialRecord } from './user-credentials.ts';

// Grants and the credentials that carry them: authorization codes (single use, replay revokes
// the grant) and refresh tokens (rotated on every use, the previous one honoured for a grace
// window, reuse after it revokes the grant). Every state change is one store transaction, so
// two racing requests can never both win and a failing store leaves nothing half-written.

export interface UserIdentity {
  readonly sub: string;
  readonly email: string;
}

/**
 * What the provider proved about a user beyond sub and email, carried from sign-in to the
 * browser session, the code and the grant, so the global policy and each route's `access`
 * can be judged again at every refresh.
 */
export interface ProvenFacts {
  /** The Workspace domain (Google's hd). */
  readonly hd?: string;
  /** GitHub: the organisations the config names that the user is an active member of. */
  readonly orgs?: readonly string[];
  /** False only from GitHub: Google and OIDC refuse an unverified email at sign-in. */
  readonly emailVerified?: boolean;
}

/** The proven facts of a record, without absent fields (Firestore refuses undefined values). */
export function provenFacts(from: ProvenFacts): { hd?: string; orgs?: string[]; emailVerified?: boolean } {
  return { ...(from.hd ? { hd: from.hd } : {}), ...(from.orgs ? { orgs: [...from.orgs] } : {}), ...(from.emailVerified !== undefined ? { emailVerified: from.emailVerified } : {}) };
}

/** A user as the upstream sign-in proved them: what a grant needs to re-check them later. */
export interface SignedInUser extends UserIdentity, ProvenFacts {
  /** The provider's credential for asking again, sealed (see sealed.ts). */
  readonly upstream?: string;
}

export interface CodeRecord {
  [key: string]: unknown;
  clientId: string;
  /** As the consent page named it: the account page lists the grant under it. */
  clientName?: string;
  redirectUri: string;
  /** /authorize had no redirect_uri: /token may leave it out too, but if given it must match. */
  redirectUriImplied?: boolean;
  codeChallenge: string;
  resource: string;
  extraResources?: string[];
  scope: string;
  userSub: string;
  email: string;
  hd?: string;
  orgs?: string[];
  emailVerified?: boolean;
  upstream?: string;
  /** Set when redeemed; the document stays for a while so a replay can be recognised. */
  grantId?: string;
}

/** Per-user state the authorization server keeps: when access was revoked. Keyed by userKey(email). */
export interface UserRecord {
  [key: string]: unknown;
  email: string;
  revokedAt?: number;
}

export const userKey = (email: string) => sha256(`user:${email.toLowerCase()}`);

export interface GrantRecord {
  [key: string]: unknown;
  userSub: string;
  email: string;
  clientId: string;
  /** The client's name and where its codes went, for the account page (grants from before lack them). */
  clientName?: string;
  redirectUri?: string;
  resource: string;
  /** More routes the same consent covers: a refresh may ask for a token for any of them. */
  extraResources?: string[];
  scope: string;
  createdAt: number;
  /** The last time a token was issued from it (code or refresh). */
  lastUsedAt?: number;
  /** The generation of the one refresh token that may be used now. */
  generation: number;
  /** The Workspace domain proven at sign-in (Google's hd), re-checked at each refresh. */
  hd?: string;
  /** GitHub: memberships proven at sign-in (or the last re-check) of the orgs the config names. */
  orgs?: string[];
  emailVerified?: boolean;
  /** The upstream provider's credential for this user, sealed; asked again at refreshes. */
  upstream?: string;
  /** When the provider last vouched for the user (sign-in, or a re-check at a refresh). */
  upstreamCheckedAt?: number;
  revokedAt?: number;
  revokedReason?: string;
  /**
   * When the newest refresh token expires (refresh_ttl after the last rotation): after that the
   * lineage can't be used and the grant is only clutter, revoked or not. Absent on grants
   * written before grants expired; their next rotation sets it.
   */
  expiresAt: number;
}

/** Every write of a grant goes through here, so none drops its expiry. */
export function putGrant(target: { put(collection: Collection, id: string, doc: Doc, options?: PutOptions): void | Promise<void> }, id: string, grant: GrantRecord): void | Promise<void> {
  return target.put('grants', id, grant, { expiresAt: grant.expiresAt });
}

export interface RefreshRecord {
  [key: string]: unknown;
  grantId: string;
  clientId: string;
  generation: number;
  rotatedAt?: number;
  expiresAt: number;
}

/** What the upstream provider said about a grant's user, asked just before a refresh. */
export interface UpstreamVerdict {
  /** The sealed credential that was asked with. */
  readonly asked: string;
  /** Why the user is refused now; undefined: still allowed. */
  readonly refusal?: string;
  readonly checkedAt: number;
  /** A rotated credential to keep, sealed. */
  readonly upstream?: string;
  readonly hd?: string;
  /** GitHub: the memberships as the provider states them now (an empty list too). */
  readonly orgs?: readonly string[];
  readonly emailVerified?: boolean;
}

/** The grant behind a refresh token, read outside any transaction (to decide whether to ask the provider). */
export async function peekGrant(store: Store, token: string, clientId: string): Promise<GrantRecord | undefined> {
  const record = await store.get<RefreshRecord>('refreshTokens', sha256(token));
  if (!record || record.clientId !== clientId) return undefined;
  const grant = await store.get<GrantRecord>('grants', record.grantId);
  return grant && !grant.revokedAt ? grant : undefined;
}

/** How long a used code is remembered, to turn a replay into a revocation. */
const USED_CODE_MEMORY_MS = 3_600_000;

export async function issueCode(store: Store, clock: Clock, ttlMs: number, record: CodeRecord): Promise<string> {
  const code = randomToken(32);
  await store.put('codes', sha256(code), record, { expiresAt: clock.now() + ttlMs });
  return code;
}

/**
 * Ends an authorization request with a code, atomically: the request is consumed in the same
 * transaction, so a double-submitted consent form (or two racing tabs) yields one code, and
 * undefined for the loser.
 */
export async function issueCodeForRequest(store: Store, clock: Clock, ttlMs: number, requestId: string, record: CodeRecord): Promise<string | undefined> {
  const code = randomToken(32);
  const issued = await store.transaction(async (tx) => {
    if (!(await tx.get('authRequests', requestId))) return false;
    tx.put('codes', sha256(code), record, { expiresAt: clock.now() + ttlMs });
    tx.delete('authRequests', requestId);
    return true;
  });
  return issued ? code : undefined;
}

/** RFC 7636 §4.6 with S256 only: BASE64URL(SHA256(verifier)) == challenge. */
export function pkceMatches(verifier: string, challenge: string): boolean {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return false;
  return safeEqual(createHash('sha256').update(verifier).digest('base64url'), challenge);
}

type Outcome = { readonly kind: 'grant'; readonly message: string } | { readonly kind: 'target'; readonly message: string } | { readonly kind: 'issued'; readonly issued: IssuedGrant };

function settle(outcome: Outcome): IssuedGrant {
  if (outcome.kind === 'issued') return outcome.issued;
  throw new OAuthError(outcome.kind === 'target' ? 'invalid_target' : 'invalid_grant', 400, outcome.message);
}

export interface IssuedGrant {
  readonly grantId: string;
  readonly grant: GrantRecord;
  readonly refreshToken: string;
  /** The route the access token is for: the one asked for, else the grant's first. */
  readonly audience: string;
  /** The user's own credential for that route, when it takes one (as stored: sealed). */
  readonly credential?: UserCredentialRecord;
}

const covered = (g: { resource: string; extraResources?: string[] }) => [g.resource, ...(g.extraResources ?? [])];

function newRefreshToken(tx: Transaction, now: number, expiresAt: number, grantId: string, clientId: string, generation: number): string {
  const token = randomToken(32);
  tx.put('refreshTokens', sha256(token), { grantId, clientId, generation, createdAt: now, expiresAt } satisfies RefreshRecord & { createdAt: number }, { expiresAt });
  return token;
}

/** Redeems a code for an authenticated client: exactly one caller wins; its replay revokes the grant the code produced. */
export async function redeemCode(
  store: Store,
  clock: Clock,
  refreshTtlMs: number,
  input: { code: string; clientId: string; redirectUri?: string; verifier: string; resource?: string; credentialNeed?: (resource: string) => CredentialNeed | undefined },
): Promise<IssuedGrant> {
  const codeId = sha256(input.code);
  const outcome = await store.transaction(async (tx): Promise<Outcome> => {
    const code = await tx.get<CodeRecord>('codes', codeId);
    if (!code) return { kind: 'grant', message: 'the authorization code is invalid or expired' };
    const now = clock.now();
    // The client first (the caller has authenticated it): otherwise anyone holding a leaked,
    // used code could end a user's grant from any client, or none. A replay only counts from
    // the client the code was issued to.
    if (code.clientId !== input.clientId) return { kind: 'grant', message: 'the authorization code was issued to another client' };
    if (code.grantId) {
      // RFC 6749 §4.1.2: a code used twice means it leaked; what it granted is revoked.
      const grant = await tx.get<GrantRecord>('grants', code.grantId);
      if (grant && !grant.revokedAt) putGrant(tx, code.grantId, { ...grant, revokedAt: now, revokedReason: 'authorization code replayed' });
      return { kind: 'grant', message: 'the authorization code was already used; the grant it produced is revoked' };
    }
    const redirectOk = input.redirectUri === undefined ? code.redirectUriImplied === true : input.redirectUri === code.redirectUri;
    if (!redirectOk) return { kind: 'grant', message: input.redirectUri === undefined ? 'redirect_uri is required: the authorization request named one' : 'redirect_uri does not match the one in the authorization request' };
    if (!pkceMatches(input.verifier, code.codeChallenge)) return { kind: 'grant', message: 'code_verifier does not match the code_challenge' };
    if (input.resource !== undefined && !covered(code).includes(input.resource)) return { kind: 'target', message: `resource must be one of those in the authorization request (${covered(code).join(', ')})` };
    const audience = input.resource ?? code.resource;
    // The code stays unused: the consent page stored the credential moments ago, so this is a
    // deletion racing the redemption; the client can only start again anyway.
    const need = input.credentialNeed?.(audience);
    const credential = need ? await tx.get<UserCredentialRecord>('userCredentials', credentialId(code.userSub, need.route)) : undefined;
    const unusable = need?.refusal(credential, code.userSub);
    if (unusable) return { kind: 'grant', message: unusable };
    const grantId = randomToken(16);
    const grant: GrantRecord = {
      userSub: code.userSub, email: code.email, ...provenFacts(code), ...(code.upstream ? { upstream: code.upstream, upstreamCheckedAt: now } : {}),
      clientId: code.clientId, ...(code.clientName ? { clientName: code.clientName } : {}), redirectUri: code.redirectUri,
      resource: code.resource, ...(code.extraResources ? { extraResources: code.extraResources } : {}), scope: code.scope, createdAt: now, lastUsedAt: now, generation: 1, expiresAt: now + refreshTtlMs,
    };
    tx.put('codes', codeId, { ...code, grantId }, { expiresAt: now + USED_CODE_MEMORY_MS });
    putGrant(tx, grantId, grant);
    const refreshToken = newRefreshToken(tx, now, grant.expiresAt, grantId, code.clientId, 1);
    return { kind: 'issued', issued: { grantId, grant, refreshToken, audience, ...(credential ? { credential } : {}) } };
  });
  return settle(outcome);
}

/**
 * Rotates a refresh token. The current one rotates; the one before it is honoured for
 * `graceMs` after its rotation (a client that retried a lost response) and rotates the
 * lineage again, so one lineage stays live. Anything older, or later, revokes the grant.
 */
export async function rotateRefreshToken(
  store: Store,
  clock: Clock,
  options: { refreshTtlMs: number; graceMs: number },
  input: {
    token: string;
    clientId: string;
    resource?: string;
    policy?: (grant: GrantRecord) => string | undefined;
    /** Per-route access: why the grant's user may not have a token for this resource now. */
    routeAccess?: (grant: GrantRecord, resource: string) => string | undefined;
    /** The route of the resource takes each user's own credential: the token needs theirs. */
    credentialNeed?: (resource: string) => CredentialNeed | undefined;
    upstream?: UpstreamVerdict;
  },
): Promise<IssuedGrant> {
  const tokenId = sha256(input.token);
  const now = clock.now();
  const outcome = await store.transaction(async (tx): Promise<Outcome> => {
    const token = await tx.get<RefreshRecord>('refreshTokens', tokenId);
    if (!token) return { kind: 'grant', message: 'the refresh token is invalid or expired' };
    const grant = await tx.get<GrantRecord>('grants', token.grantId);
    if (!grant || grant.revokedAt) return { kind: 'grant', message: 'the grant was revoked; sign in again' };
    // Every refresh re-checks the user: offboarded (`mcp-front revoke --user`) or no longer allowed by the config.
    const user = await tx.get<UserRecord>('users', userKey(grant.email));
    const audience = input.resource ?? grant.resource;
    const need = input.credentialNeed?.(audience);
    const credential = need ? await tx.get<UserCredentialRecord>('userCredentials', credentialId(grant.userSub, need.route)) : undefined;
    // The provider's answer counts only if it was about the credential the grant still holds
    // (a concurrent refresh may have re-checked, and rotated it, meanwhile).
    const verdict = input.upstream && input.upstream.asked === grant.upstream ? input.upstream : undefined;
    const refusal = user?.revokedAt && user.revokedAt >= grant.createdAt ? 'access for this user was revoked; sign in again' : (verdict?.refusal ?? input.policy?.(grant));
    if (refusal) {
      putGrant(tx, token.grantId, { ...grant, revokedAt: now, revokedReason: refusal });
      return { kind: 'grant', message: refusal };
    }
    if (token.clientId !== input.clientId) return { kind: 'grant', message: 'the refresh token was issued to another client' };
    if (input.resource !== undefined && !covered(grant).includes(input.resource)) return { kind: 'target', message: `resource must be one of ${covered(grant).join(', ')}` };
    const current = token.generation === grant.generation;
    const retried = token.generation === grant.generation - 1 && token.rotatedAt !== undefined && now - token.rotatedAt <= options.graceMs;
    if (!current && !retried) {
      putGrant(tx, token.grantId, { ...grant, revokedAt: now, revokedReason: 'refresh token reused' });
      return { kind: 'grant', message: 'the refresh token was already used; the grant is revoked, sign in again' };
    }
    const generation = grant.generation + 1;
    // What the provider just said is kept even when no token is issued: it may have rotated its credential.
    const vouched: GrantRecord = { ...grant, ...(verdict ? { upstreamCheckedAt: verdict.checkedAt, ...(verdict.upstream ? { upstream: verdict.upstream } : {}), ...provenFacts(verdict) } : {}) };
    const next: GrantRecord = { ...vouched, generation, lastUsedAt: now };
    const withheld = input.routeAccess?.(next, audience);
    if (withheld) {
      // The token stays unrotated: the grant's other routes stay usable with it (and what the
      // provider just said is kept: it may have rotated its credential). A grant left with no
      // route its user may use is over.
      if (covered(grant).every((r) => input.routeAccess!(next, r))) putGrant(tx, token.grantId, { ...grant, revokedAt: now, revokedReason: withheld });
      else if (verdict) putGrant(tx, token.grantId, vouched);
      return { kind: 'grant', message: `${withheld}: access to ${audience} was withdrawn; ask your administrator if you should have it` };
    }
    // The user deleted their credential for the route (or it no longer opens): no token for it
    // until they give one again (account page, or the consent page of a new connection). The
    // grant stays, unrotated, for its other routes and for when they do.
    const unusable = need?.refusal(credential, grant.userSub);
    if (unusable) {
      if (verdict) putGrant(tx, token.grantId, vouched);
      return { kind: 'grant', message: unusable };
    }
    // A rotated token is kept until it would have expired, so a late reuse is recognised as one.
    if (current) tx.put('refreshTokens', tokenId, { ...token, rotatedAt: now }, { expiresAt: token.expiresAt });
    // The new token outlives every older one of the lineage: the grant lives as long as it.
    const rotated: GrantRecord = { ...next, expiresAt: now + options.refreshTtlMs };
    putGrant(tx, token.grantId, rotated);
    const refreshToken = newRefreshToken(tx, now, rotated.expiresAt, token.grantId, token.clientId, generation);
    return { kind: 'issued', issued: { grantId: token.grantId, grant: rotated, refreshToken, audience, ...(credential ? { credential } : {}) } };
  });
  return settle(outcome);
}
