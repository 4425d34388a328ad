import { createRemoteJWKSet, jwtVerify } from 'jose';
import { OAuth2Client } from '../../gcp.ts';
import type { OAuthConfig } from '../../config/config.ts';
import { randomToken } from '../../random.ts';
import type { AuthRequest } from '../authorization.ts';
import type { UserIdentity } from '../grants.ts';

// Sign-in with Google (Workspace) or any OpenID Connect provider: discovery, the authorization
// code flow with PKCE, state and nonce, and an ID token verified with jose against the
// provider's published keys. Who may get in is decided in `admit`, never from an email
// suffix for Google: only the `hd` claim proves a Workspace domain.

export interface OidcEndpoints {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
  readonly jwks_uri: string;
  readonly scopes_supported?: readonly string[];
}

export interface VerifiedIdentity extends UserIdentity {
  readonly emailVerified: boolean;
  /** Google Workspace domain (the `hd` claim); absent for consumer accounts. */
  readonly hd?: string;
}

/** Why someone was refused, in words for the error page; undefined means admitted. */
export function admit(oauth: Pick<OAuthConfig, 'provider' | 'allowedDomains' | 'allowedEmails'>, who: VerifiedIdentity): string | undefined {
  if (!who.emailVerified) return `${who.email} is not a verified email address at the identity provider.`;
  const email = who.email.toLowerCase();
  const byEmail = oauth.allowedEmails.includes(email);
  if (oauth.allowedDomains.length) {
    // Google: the hd claim names the Workspace; an email suffix proves nothing (anyone can have
    // a consumer account with any address). Other providers: the verified email's domain.
    const domain = oauth.provider === 'google' ? who.hd?.toLowerCase() : email.split('@')[1];
    if (domain && oauth.allowedDomains.includes(domain)) return undefined;
    if (byEmail) return undefined;
    return oauth.provider === 'google' && !who.hd
      ? `${who.email} is not a Google Workspace account of an allowed domain.`
      : `${who.email} is not in an allowed domain.`;
  }
  if (oauth.allowedEmails.length && !byEmail) return `${who.email} is not on the list of allowed users.`;
  return undefined;
}

const discovered = new Map<string, Promise<OidcEndpoints>>();

export function discover(issuer: string): Promise<OidcEndpoints> {
  let found = discovered.get(issuer);
  if (!found) {
    found = (async () => {
      const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(10_000), redirect: 'error' });
      if (!res.ok) throw new Error(`OpenID discovery at ${issuer} answered HTTP ${res.status}`);
      const meta = (await res.json()) as OidcEndpoints;
      if (meta.issuer !== issuer) throw new Error(`OpenID discovery at ${issuer} names another issuer (${meta.issuer})`);
      return meta;
    })();
    found.catch(() => discovered.delete(issuer));
    discovered.set(issuer, found);
  }
  return found;
}

export const GOOGLE_ISSUER = 'https://accounts.google.com';

/** Signatures an ID token may carry: the provider's published (asymmetric) keys only. */
const ID_TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

/**
 * A provider's signing keys, per jwks_uri and shared by every sign-in and re-check of this
 * instance: fetched once, again after jose's cache age (10 min) and when a token names a key
 * not yet seen (a rotation), at most every 30 s.
 */
function signingKeys(jwksUri: string): ReturnType<typeof createRemoteJWKSet> {
  let keys = keySets.get(jwksUri);
  if (!keys) {
    keys = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: 10_000 });
    keySets.set(jwksUri, keys);
  }
  return keys;
}

export interface SignedInIdentity extends VerifiedIdentity {
  /** What lets us ask the provider again later (a refresh token; GitHub's user token), if it gave one. */
  readonly upstreamToken?: string;
}

/** The provider's answer when asked again about a user, at a refresh of our grant. */
export type Recheck =
  | { readonly kind: 'identity'; readonly identity: VerifiedIdentity; readonly upstreamToken?: string }
  /** The provider refused the credential: the account is gone, suspended, or the app's access was withdrawn. */
  | { readonly kind: 'gone'; readonly reason: string };

export interface OidcSignIn {
  /** Where to send the browser, and what to keep in the authorization request until the callback. */
  begin(requestId: string, request: AuthRequest, callbackUrl: string): Promise<{ location: string; upstream: Record<string, string> }>;
  /** The callback: code → tokens → verified identity. */
  complete(code: string, upstream: Record<string, string>, callbackUrl: string): Promise<SignedInIdentity>;
  /** Who the user is now, by the credential `complete` returned; throws when the provider can't be reached. */
  recheck(upstreamToken: string): Promise<Recheck>;
}

/** An OAuth error answer from a provider's token endpoint (gaxios puts the body on the error). */
function providerError(err: unknown): { status?: number; error?: string } {
  const response = (err as { response?: { status?: number; data?: { error?: string } } }).response;
  return { status: response?.status, error: response?.data?.error };
}

export function oidcSignIn(oauth: Pick<OAuthConfig, 'provider' | 'clientId' | 'clientSecret' | 'oidcIssuer' | 'allowedDomains'>): OidcSignIn {
  // provider: google may name a stand-in issuer (tests); otherwise it is Google itself.
  const issuer = oauth.oidcIssuer ?? GOOGLE_ISSUER;
  const clientId = oauth.clientId!;
  const issuers = issuer === GOOGLE_ISSUER ? [GOOGLE_ISSUER, 'accounts.google.com'] : [issuer];

  async function verify(idToken: string, nonce: string | undefined): Promise<VerifiedIdentity> {
    const meta = await discover(issuer);
    // OIDC Core §3.1.3.7; the 5-minute clock tolerance is google-auth-library's, which this replaced.
    const { payload } = await jwtVerify(idToken, signingKeys(meta.jwks_uri), { issuer: issuers, audience: clientId, algorithms: ID_TOKEN_ALGORITHMS, requiredClaims: ['sub', 'iat', 'exp'], clockTolerance: 300 });
    const claims = payload as { sub?: string; email?: string; email_verified?: boolean; hd?: string; nonce?: string };
    if (!claims.sub || typeof claims.email !== 'string') throw new Error('the ID token carries no subject or email');
    // A refreshed ID token carries no nonce (OIDC Core §12.2); the sign-in's must match.
    if (nonce !== undefined && claims.nonce !== nonce) throw new Error('the ID token was not issued for this sign-in (nonce mismatch)');
    const prefix = oauth.provider === 'google' ? 'google' : 'oidc';
    return { sub: `${prefix}:${claims.sub}`, email: claims.email.toLowerCase(), emailVerified: claims.email_verified === true, hd: claims.hd };
  }

  return {
    async begin(requestId, _request, callbackUrl) {
      const meta = await discover(issuer);
      const client = new OAuth2Client({ clientId, clientSecret: oauth.clientSecret, redirectUri: callbackUrl });
      const pkce = await client.generateCodeVerifierAsync();
      const nonce = randomToken(16);
      const url = new URL(meta.authorization_endpoint);
      // A refresh token lets each refresh of our grant ask the provider whether the user is still
      // allowed (suspended, deleted, moved out of the domain). Google: access_type=offline, and
      // consent so it is issued on every sign-in; others: offline_access when they offer it.
      const offline = issuer === GOOGLE_ISSUER ? 'google' : (meta.scopes_supported ?? []).includes('offline_access') ? 'scope' : undefined;
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: callbackUrl,
        scope: offline === 'scope' ? 'openid email profile offline_access' : 'openid email profile',
        // Our authorization request's id: unguessable, and the callback must also carry the
        // browser cookie set with it.
        state: requestId,
        nonce,
        code_challenge: pkce.codeChallenge!,
        code_challenge_method: 'S256',
        // Google's account chooser, so a user with several accounts picks the company one.
        ...(offline === 'google' ? { prompt: 'select_account consent', access_type: 'offline' } : offline === 'scope' ? { prompt: 'consent' } : {}),
        // A hint only (Google's account chooser); the hd claim is what is checked.
        ...(oauth.provider === 'google' && oauth.allowedDomains.length === 1 ? { hd: oauth.allowedDomains[0]! } : {}),
      }).toString();
      return { location: url.toString(), upstream: { nonce, verifier: pkce.codeVerifier } };
    },

    async complete(code, upstream, callbackUrl) {
      const meta = await discover(issuer);
      const client = new OAuth2Client({ clientId, clientSecret: oauth.clientSecret, redirectUri: callbackUrl, endpoints: { oauth2TokenUrl: meta.token_endpoint } });
      const { tokens } = await client.getToken({ code, codeVerifier: upstream.verifier, redirect_uri: callbackUrl });
      if (!tokens.id_token) throw new Error('the identity provider returned no ID token');
      const identity = await verify(tokens.id_token, upstream.nonce ?? '');
      return { ...identity, ...(tokens.refresh_token ? { upstreamToken: tokens.refresh_token } : {}) };
    },

    async recheck(refreshToken) {
      const meta = await discover(issuer);
      const client = new OAuth2Client({ clientId, clientSecret: oauth.clientSecret, endpoints: { oauth2TokenUrl: meta.token_endpoint } });
      client.setCredentials({ refresh_token: refreshToken });
      let credentials;
      try {
        ({ credentials } = await client.refreshAccessToken());
      } catch (err) {
        const { status, error } = providerError(err);
        if (error !== 'invalid_grant') throw new Error(`the identity provider refused the refresh (${error ?? `HTTP ${status ?? 'unreachable'}`})`, { cause: err });
        // invalid_grant: the refresh token is dead (user deleted or suspended, access revoked).
        // Anything else (our own client refused, the provider down) keeps the grant: a 503.
        return { kind: 'gone', reason: 'the identity provider no longer accepts this sign-in (invalid_grant)' };
      }
      if (!credentials.id_token) throw new Error('the identity provider returned no ID token on refresh');
      const identity = await verify(credentials.id_token, undefined);
      const rotated = credentials.refresh_token && credentials.refresh_token !== refreshToken ? credentials.refresh_token : undefined;
      return { kind: 'identity', identity, ...(rotated ? { upstreamToken: rotated } : {}) };
    },
  };
}
