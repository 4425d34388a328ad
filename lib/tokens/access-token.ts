import { SignJWT, jwtVerify, createLocalJWKSet, createRemoteJWKSet, errors, type JWK, type JWTVerifyGetKey } from 'jose';
import { seconds, type Clock } from '../clock.ts';
import { randomToken } from '../random.ts';
import { ASSERTION_KID_PREFIX, SIGNING_ALG, type SigningKey } from './keys.ts';

/** What a route learns from a valid access token. Never forwarded to a backend. */
export interface AccessTokenClaims {
  readonly iss: string;
  /** Stable user id from the upstream IdP. */
  readonly sub: string;
  readonly email: string;
  /** The RFC 8707 resource (route URL) the token was issued for. */
  readonly aud: string;
  readonly exp: number;
  readonly iat: number;
  readonly client_id: string;
  readonly scope: string;
  readonly jti: string;
  /** The user's own credential for the route, sealed for that route alone (lib/tokens/route-credential.ts). */
  readonly cred?: string;
}

export type AccessTokenInput = Pick<AccessTokenClaims, 'sub' | 'email' | 'aud' | 'client_id' | 'scope' | 'cred'>;

export async function signAccessToken(key: SigningKey, issuer: string, ttlMs: number, clock: Clock, input: AccessTokenInput): Promise<{ token: string; expiresIn: number }> {
  const iat = seconds(clock.now());
  const expiresIn = Math.max(1, seconds(ttlMs));
  const token = await new SignJWT({ email: input.email, client_id: input.client_id, scope: input.scope, ...(input.cred ? { cred: input.cred } : {}) })
    .setProtectedHeader({ alg: SIGNING_ALG, kid: key.kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setSubject(input.sub)
    .setAudience(input.aud)
    .setIssuedAt(iat)
    .setExpirationTime(iat + expiresIn)
    .setJti(randomToken(16))
    .sign(key.privateKey);
  return { token, expiresIn };
}

/** Longest access token accepted: Node's 16 KiB header limit bounds the whole request head anyway. */
const MAX_TOKEN_CHARS = 12_288;

/** Why a bearer token was refused; routes answer 401 invalid_token for every code. */
export class InvalidTokenError extends Error {
  override readonly name = 'InvalidTokenError';
  readonly code: 'malformed' | 'expired' | 'signature' | 'audience' | 'claims';
  constructor(code: InvalidTokenError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export interface AccessTokenVerifier {
  /** Verifies signature, issuer, expiry and that `aud` is one of `audiences` (the route's resource URLs). */
  verify(token: string, audiences: readonly string[]): Promise<AccessTokenClaims>;
}

/**
 * Verifies ES256 access tokens against the issuer's keys: in one process the key set
 * itself, on Cloud Run the issuer's /jwks.json (fetched once, cached by jose). Valid tokens
 * are remembered until they expire so the hot path does one map lookup, not an ECDSA verify.
 */
export function createAccessTokenVerifier(options: { issuer: string; keys: JWK[] | URL; clock: Clock; cacheSize?: number }): AccessTokenVerifier {
  const keySet: JWTVerifyGetKey = Array.isArray(options.keys) ? createLocalJWKSet({ keys: options.keys }) : createRemoteJWKSet(options.keys, { cooldownDuration: 30_000 });
  // The issuer's JWKS also publishes the identity-assertion key, which http routes hold: a
  // signature by it is never an access token's. Without a kid, jose would try every key.
  const getKey: JWTVerifyGetKey = (header, token) => {
    if (!header.kid || header.kid.startsWith(ASSERTION_KID_PREFIX)) throw new InvalidTokenError('signature', 'the access token was not signed with an access-token key');
    return keySet(header, token);
  };
  const cache = new Map<string, AccessTokenClaims>();
  const cacheSize = options.cacheSize ?? 10_000;
  const check = (claims: AccessTokenClaims, audiences: readonly string[]): AccessTokenClaims => {
    if (claims.exp <= seconds(options.clock.now())) throw new InvalidTokenError('expired', 'the access token has expired');
    if (!audiences.includes(claims.aud)) throw new InvalidTokenError('audience', 'the access token was issued for another resource');
    return claims;
  };
  return {
    async verify(token, audiences) {
      const cached = cache.get(token);
      if (cached) return check(cached, audiences);
      // A token carrying a sealed user credential (up to 4 KiB, base64url twice) stays under this.
      if (token.length > MAX_TOKEN_CHARS || token.split('.').length !== 3) throw new InvalidTokenError('malformed', 'the access token is not a JWT');
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          issuer: options.issuer,
          algorithms: [SIGNING_ALG],
          typ: 'at+jwt',
          currentDate: new Date(options.clock.now()),
          requiredClaims: ['sub', 'aud', 'exp', 'iat', 'jti'],
        }));
      } catch (err) {
        if (err instanceof errors.JWTExpired) throw new InvalidTokenError('expired', 'the access token has expired');
        if (err instanceof errors.JWTClaimValidationFailed) throw new InvalidTokenError('claims', `the access token's ${err.claim} claim is not valid`);
        throw new InvalidTokenError('signature', 'the access token could not be verified');
      }
      const claims = payload as unknown as AccessTokenClaims;
      if (typeof claims.aud !== 'string' || typeof claims.email !== 'string' || typeof claims.client_id !== 'string' || (claims.cred !== undefined && typeof claims.cred !== 'string')) {
        throw new InvalidTokenError('claims', 'the access token lacks required claims');
      }
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!);
      cache.set(token, claims);
      return check(claims, audiences);
    },
  };
}
