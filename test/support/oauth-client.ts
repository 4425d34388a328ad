import { createHash, randomBytes } from 'node:crypto';
import type { Handler } from '../../lib/http/types.ts';

// The authorization code flow with the dev provider driven by plain HTTP requests (no
// browser), against either a running server (its base URL) or the authorization server's
// Handler called in process. Other tests and benchmarks use it to get real tokens.

/** A running server's base URL, or the Handler itself with the issuer it was configured with. */
export type OAuthTarget = string | { readonly handler: Handler; readonly issuer: string; readonly clientIp?: string };

export interface DevLoginOptions {
  readonly email: string;
  /** The route URL the token is for (RFC 8707); more routes may follow in `moreResources`. */
  readonly resource: string;
  readonly moreResources?: readonly string[];
  readonly clientId?: string;
  readonly redirectUri?: string;
  /** Leave redirect_uri out of /authorize (allowed when the client registered exactly one). */
  readonly omitRedirectUri?: boolean;
  readonly scope?: string;
  /** Carries the AS browser session between calls (one sign-in, many routes). */
  readonly cookie?: { value?: string };
  /** More fields for the consent form: the user's own credentials a route takes (`credential-<route name>`). */
  readonly consentFields?: Readonly<Record<string, string>>;
}

export interface DevLoginResult {
  readonly accessToken: string;
  readonly refreshToken: string;
  readonly expiresIn: number;
  readonly scope: string;
  readonly clientId: string;
  /** What a test of replay or rotation needs to present again. */
  readonly code: string;
  readonly verifier: string;
  readonly redirectUri: string;
}

export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1:1/callback';

function baseOf(target: OAuthTarget): string {
  return typeof target === 'string' ? target : target.issuer;
}

/** One request to the target, never following redirects. `path` may be absolute (a Location). */
export async function send(target: OAuthTarget, path: string, init: RequestInit = {}): Promise<Response> {
  const url = new URL(path, baseOf(target)).toString();
  if (typeof target === 'string') return fetch(url, { ...init, redirect: 'manual' });
  return target.handler(new Request(url, init), { clientIp: target.clientIp ?? '127.0.0.1' });
}

export function formPost(values: Record<string, string>, headers: Record<string, string> = {}): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(values).toString() };
}

export async function registerPublicClient(target: OAuthTarget, redirectUri = DEFAULT_REDIRECT_URI, name = 'test client'): Promise<string> {
  const res = await send(target, '/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: name, redirect_uris: [redirectUri] }) });
  if (res.status !== 201) throw new Error(`register: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { client_id: string }).client_id;
}

/** The value of a hidden form field in one of the AS pages. */
export function hiddenField(html: string, name: string): string {
  const found = new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
  if (found === undefined) throw new Error(`no ${name} field in the page`);
  return found;
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface CodeResult {
  readonly code: string;
  readonly verifier: string;
  readonly clientId: string;
  readonly redirectUri: string;
  /** The whole redirect back to the client (with `state` and `iss`). */
  readonly location: URL;
}

/**
 * Registers a public client (unless given one), signs in as `email` on the dev provider's
 * page and allows on the consent page; returns the authorization code, not yet redeemed.
 */
export async function obtainCode(target: OAuthTarget, options: DevLoginOptions): Promise<CodeResult> {
  const redirectUri = options.redirectUri ?? DEFAULT_REDIRECT_URI;
  const clientId = options.clientId ?? (await registerPublicClient(target, redirectUri));
  const cookie = options.cookie ?? {};
  const origin = new URL(baseOf(target)).origin;
  const { verifier, challenge } = pkcePair();
  const go = async (path: string, init: RequestInit = {}) => {
    const headers = { ...(init.headers as Record<string, string> | undefined), origin, ...(cookie.value ? { cookie: cookie.value } : {}) };
    const res = await send(target, path, { ...init, headers });
    const set = res.headers.get('set-cookie');
    if (set) cookie.value = set.split(';')[0];
    return res;
  };
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', state: 'test-state' });
  if (options.omitRedirectUri) query.delete('redirect_uri');
  for (const resource of [options.resource, ...(options.moreResources ?? [])]) query.append('resource', resource);
  if (options.scope) query.set('scope', options.scope);
  let res = await go(`/authorize?${query}`);
  for (let step = 0; step < 6; step++) {
    const location = res.headers.get('location');
    if (res.status === 303 && location?.startsWith(redirectUri)) {
      const url = new URL(location);
      const code = url.searchParams.get('code');
      if (!code) throw new Error(`no code in the redirect: ${location}`);
      return { code, verifier, clientId, redirectUri, location: url };
    }
    if (res.status === 303 && location) {
      res = await go(location);
      continue;
    }
    const html = await res.text();
    if (res.status === 200 && html.includes('name="email"')) {
      res = await go('/signin', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), email: options.email }));
    } else if (res.status === 200 && html.includes('name="decision"')) {
      res = await go('/consent', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), decision: 'allow', ...options.consentFields }));
    } else {
      throw new Error(`unexpected answer in the authorization flow (HTTP ${res.status}): ${html.slice(0, 300)}`);
    }
  }
  throw new Error('too many steps in the authorization flow');
}

/** `extra` adds or overrides parameters; a null value leaves that parameter out. */
export function redeemCode(target: OAuthTarget, code: Omit<CodeResult, 'location'>, extra: Record<string, string | null> = {}): Promise<Response> {
  const params = { grant_type: 'authorization_code', code: code.code, redirect_uri: code.redirectUri, client_id: code.clientId, code_verifier: code.verifier, ...extra };
  return send(target, '/token', formPost(Object.fromEntries(Object.entries(params).filter((e): e is [string, string] => e[1] !== null))));
}

/** The /token answer as it is on the wire. */
export interface TokenResponse {
  readonly access_token: string;
  readonly refresh_token: string;
  readonly expires_in: number;
  readonly scope: string;
}

/** The whole flow, the /token answer as sent: a code from obtainCode, redeemed with PKCE for tokens bound to `resource`. */
export async function authorizeWithDevSignIn(target: OAuthTarget, options: DevLoginOptions): Promise<TokenResponse & Omit<CodeResult, 'location'>> {
  const code = await obtainCode(target, options);
  const token = await redeemCode(target, code, { resource: options.resource });
  if (token.status !== 200) throw new Error(`token: HTTP ${token.status} ${await token.text()}`);
  return { ...((await token.json()) as TokenResponse), clientId: code.clientId, code: code.code, verifier: code.verifier, redirectUri: code.redirectUri };
}

/** The same, in camelCase. */
export async function authorizeWithDevLogin(target: OAuthTarget, options: DevLoginOptions): Promise<DevLoginResult> {
  const t = await authorizeWithDevSignIn(target, options);
  return { accessToken: t.access_token, refreshToken: t.refresh_token, expiresIn: t.expires_in, scope: t.scope, clientId: t.clientId, code: t.code, verifier: t.verifier, redirectUri: t.redirectUri };
}

/** A refresh that must succeed (it throws with the error body otherwise). */
export async function refreshTokens(target: OAuthTarget, clientId: string, refreshToken: string): Promise<TokenResponse> {
  const res = await refreshGrant(target, clientId, refreshToken);
  if (res.status !== 200) throw new Error(`refresh: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as TokenResponse;
}

/** A refresh_token grant; returns the raw response so tests can check refusals too. */
export async function refreshGrant(target: OAuthTarget, clientId: string, refreshToken: string, extra: Record<string, string> = {}): Promise<Response> {
  return send(target, '/token', formPost({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, ...extra }));
}

/** Redeems a code that must succeed; the refresh token and the client it belongs to. */
export async function redeemForRefreshToken(target: OAuthTarget, code: Omit<CodeResult, 'location'>): Promise<{ clientId: string; refreshToken: string }> {
  const res = await redeemCode(target, code);
  if (res.status !== 200) throw new Error(`token: HTTP ${res.status} ${await res.text()}`);
  return { clientId: code.clientId, refreshToken: ((await res.json()) as { refresh_token: string }).refresh_token };
}

/** A refresh, read out: status, Retry-After and the JSON body (tokens or an RFC 6749 error). */
export async function refreshOutcome(target: OAuthTarget, clientId: string, refreshToken: string) {
  const res = await refreshGrant(target, clientId, refreshToken);
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { refresh_token?: string; error?: string; error_description?: string } };
}
