import { SignJWT } from 'jose';
import { seconds, type Clock } from '../clock.ts';
import { randomToken } from '../random.ts';
import { SIGNING_ALG, type SigningKey } from './keys.ts';

// `identity: assertion` on an http route: every request to the backend carries a short-lived
// JWT saying who the session's user is, signed with the gateway's assertion key (published in
// the issuer's /jwks.json). The backend verifies it like any JWT: iss = our issuer, aud = its
// own URL, typ, exp. It is a statement for that one backend, never the user's access token.

export const ASSERTION_HEADER = 'X-MCP-Front-Assertion';
/** Its JOSE typ, so neither an access token nor an ID token can pass for one (RFC 8725 §3.11). */
export const ASSERTION_TYP = 'mcp-front-assertion+jwt';
export const ASSERTION_TTL_S = 60;

export interface IdentityAssertionClaims {
  readonly iss: string;
  readonly sub: string;
  readonly email: string;
  /** The backend URL as configured. */
  readonly aud: string;
  /** The route's path, e.g. "/notion". */
  readonly route: string;
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
}

export interface AssertionSubject {
  readonly issuer: string;
  readonly sub: string;
  readonly email: string;
  readonly audience: string;
  readonly route: string;
}

export async function signIdentityAssertion(key: SigningKey, clock: Clock, subject: AssertionSubject): Promise<{ token: string; exp: number }> {
  const iat = seconds(clock.now());
  const exp = iat + ASSERTION_TTL_S;
  const token = await new SignJWT({ email: subject.email, route: subject.route })
    .setProtectedHeader({ alg: SIGNING_ALG, kid: key.kid, typ: ASSERTION_TYP })
    .setIssuer(subject.issuer)
    .setSubject(subject.sub)
    .setAudience(subject.audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(randomToken(16))
    .sign(key.privateKey);
  return { token, exp };
}

/**
 * One session's assertions: a new one only when the last has less than half its life left,
 * so a busy session signs about once every 30 s, not once per message.
 */
export function sessionAssertions(key: SigningKey, clock: Clock, subject: AssertionSubject): () => Promise<Record<string, string>> {
  let last: Promise<{ token: string; exp: number }> | undefined;
  let lastExp = 0;
  return async () => {
    if (!last || lastExp - seconds(clock.now()) < ASSERTION_TTL_S / 2) {
      last = signIdentityAssertion(key, clock, subject);
      lastExp = (await last).exp;
    }
    return { [ASSERTION_HEADER]: (await last).token };
  };
}
