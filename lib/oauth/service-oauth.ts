import type { Clock } from '../clock.ts';
import type { UserOAuthConfig } from '../config/config.ts';
import { safeFetch, SafeFetchError, type SafeFetchOptions, type SafeResponse } from '../http/safe-fetch.ts';

// The client side of OAuth 2.1 towards a route's service (routes[].user_oauth): where its
// endpoints are (RFC 8414, then OpenID Connect Discovery), the code exchange with PKCE, the
// refresh, and revocation (RFC 7009) when the user disconnects. Every request goes through the
// SSRF-safe fetch: https only, public addresses only, no redirects, size and time capped.
// Tokens never appear in an error message.

export type ServiceOAuthErrorCode =
  /** The service could not be reached, or answered 5xx: try again later. */
  | 'unavailable'
  /** The service refused the code or the refresh token (RFC 6749 §5.2 invalid_grant): the user must connect again. */
  | 'invalid_grant'
  /** Any other refusal, or an answer that is not what OAuth says it must be. */
  | 'invalid_response';

export class ServiceOAuthError extends Error {
  override readonly name = 'ServiceOAuthError';
  readonly code: ServiceOAuthErrorCode;
  constructor(code: ServiceOAuthErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface ServiceEndpoints {
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  /** client_secret_basic unless the service says it takes only client_secret_post. */
  readonly clientAuth: 'client_secret_basic' | 'client_secret_post';
  /** RFC 7009, configured or discovered; undefined: the service offers none. */
  readonly revocationEndpoint?: string;
}

/** What a token to revoke is (RFC 7009 §2.1 token_type_hint). */
export interface TokenToRevoke {
  readonly token: string;
  readonly hint: 'refresh_token' | 'access_token';
}

export interface ServiceTokens {
  readonly accessToken: string;
  readonly refreshToken?: string;
  /** Epoch ms; absent when the service gave no expires_in. */
  readonly expiresAt?: number;
}

/** The service's token goes into a header or an environment variable, and into every access token of ours for the route. */
export const MAX_SERVICE_TOKEN_BYTES = 4096;
const MAX_ANSWER_BYTES = 64 * 1024;
const TIMEOUT_MS = 10_000;
/** Revocation runs while the user waits on Disconnect, and the tokens are deleted here whatever it answers. */
const REVOCATION_TIMEOUT_MS = 5_000;
/** Discovered endpoints are used this long before being asked for again. */
const DISCOVERY_TTL_MS = 3_600_000;

export interface ServiceOAuth {
  endpoints(route: string, config: UserOAuthConfig): Promise<ServiceEndpoints>;
  exchangeCode(route: string, config: UserOAuthConfig, input: { code: string; verifier: string; redirectUri: string }): Promise<ServiceTokens>;
  refresh(route: string, config: UserOAuthConfig, refreshToken: string): Promise<ServiceTokens>;
  /** True when the service confirmed (HTTP 200, RFC 7009 §2.2); false when it has no revocation endpoint. */
  revoke(route: string, config: UserOAuthConfig, token: TokenToRevoke): Promise<boolean>;
}

/** `fetchOptions`: tests only (a loopback stand-in's address and certificate). */
export function serviceOAuth(clock: Clock, fetchOptions: Partial<SafeFetchOptions> = {}): ServiceOAuth {
  const discovered = new Map<string, { at: number; endpoints: ServiceEndpoints }>();
  const get = (url: string, anyStatus = false) => fetchOrUnavailable(url, { maxBytes: MAX_ANSWER_BYTES, timeoutMs: TIMEOUT_MS, ...fetchOptions, anyStatus });
  const post = (url: string, body: URLSearchParams, headers: Record<string, string>, timeoutMs = TIMEOUT_MS) =>
    fetchOrUnavailable(url, { maxBytes: MAX_ANSWER_BYTES, timeoutMs, ...fetchOptions, anyStatus: true, post: { body: body.toString(), headers } });

  async function endpoints(route: string, config: UserOAuthConfig): Promise<ServiceEndpoints> {
    if (config.authorizationEndpoint && config.tokenEndpoint && !config.issuer) {
      return { authorizationEndpoint: config.authorizationEndpoint, tokenEndpoint: config.tokenEndpoint, clientAuth: 'client_secret_basic', ...(config.revocationEndpoint ? { revocationEndpoint: config.revocationEndpoint } : {}) };
    }
    const cached = discovered.get(route);
    if (cached && clock.now() - cached.at < DISCOVERY_TTL_MS) return cached.endpoints;
    const metadata = await discover(config.issuer!);
    // Optional (RFC 8414 §2): one that is not https is not used, and connecting still works.
    const revocationEndpoint = config.revocationEndpoint ?? (isHttpsUrl(metadata.revocation_endpoint) ? metadata.revocation_endpoint : undefined);
    const found: ServiceEndpoints = {
      authorizationEndpoint: config.authorizationEndpoint ?? httpsUrl(metadata.authorization_endpoint, 'authorization_endpoint'),
      tokenEndpoint: config.tokenEndpoint ?? httpsUrl(metadata.token_endpoint, 'token_endpoint'),
      clientAuth: takesOnlyPost(metadata.token_endpoint_auth_methods_supported) ? 'client_secret_post' : 'client_secret_basic',
      ...(revocationEndpoint ? { revocationEndpoint } : {}),
    };
    discovered.set(route, { at: clock.now(), endpoints: found });
    return found;
  }

  /** RFC 8414 §3 (well-known inserted before the issuer's path), then OpenID Connect Discovery 1.0 §4 (appended). */
  async function discover(issuer: string): Promise<Record<string, unknown>> {
    const url = new URL(issuer);
    const path = url.pathname === '/' ? '' : url.pathname;
    const candidates = [`${url.origin}/.well-known/oauth-authorization-server${path}`, `${issuer}/.well-known/openid-configuration`];
    let last = '';
    for (const candidate of candidates) {
      const res = await get(candidate, true);
      if (res.status === 404) {
        last = `${candidate} answered 404`;
        continue;
      }
      if (res.status !== 200) throw new ServiceOAuthError(res.status >= 500 ? 'unavailable' : 'invalid_response', `${candidate} answered HTTP ${res.status}`);
      const metadata = jsonObject(res, `the metadata at ${candidate}`);
      // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
      if (metadata.issuer !== issuer && metadata.issuer !== `${issuer}/`) throw new ServiceOAuthError('invalid_response', `the metadata at ${candidate} names another issuer`);
      return metadata;
    }
    throw new ServiceOAuthError('invalid_response', `no authorization server metadata at ${issuer} (${last})`);
  }

  async function tokenRequest(route: string, config: UserOAuthConfig, params: Record<string, string>): Promise<ServiceTokens> {
    const { tokenEndpoint, clientAuth } = await endpoints(route, config);
    const body = new URLSearchParams(params);
    const res = await post(tokenEndpoint, body, authenticate(config, clientAuth, body));
    if (res.status >= 500) throw new ServiceOAuthError('unavailable', `the token endpoint answered HTTP ${res.status}`);
    if (res.status !== 200) {
      const error = oauthError(res);
      throw new ServiceOAuthError(error?.code === 'invalid_grant' ? 'invalid_grant' : 'invalid_response', `the token endpoint refused (HTTP ${res.status}${error ? `, ${error.code}${error.description ? `: ${error.description}` : ''}` : ''})`);
    }
    return tokensOf(jsonObject(res, 'the token endpoint\'s answer'), clock.now());
  }

  /** RFC 7009 §2.1: the client authenticates as at the token endpoint. The token is never part of an error. */
  async function revoke(route: string, config: UserOAuthConfig, token: TokenToRevoke): Promise<boolean> {
    const { revocationEndpoint, clientAuth } = await endpoints(route, config);
    if (!revocationEndpoint) return false;
    const body = new URLSearchParams({ token: token.token, token_type_hint: token.hint });
    const res = await post(revocationEndpoint, body, authenticate(config, clientAuth, body), REVOCATION_TIMEOUT_MS);
    if (res.status === 200) return true;
    if (res.status >= 500) throw new ServiceOAuthError('unavailable', `the revocation endpoint answered HTTP ${res.status}`);
    // Only the error code: a service may echo what it was sent in its description.
    throw new ServiceOAuthError('invalid_response', `the revocation endpoint refused (HTTP ${res.status}${oauthError(res) ? `, ${oauthError(res)!.code}` : ''})`);
  }

  return {
    endpoints,
    revoke,
    exchangeCode: (route, config, input) => tokenRequest(route, config, { grant_type: 'authorization_code', code: input.code, redirect_uri: input.redirectUri, code_verifier: input.verifier }),
    refresh: (route, config, refreshToken) => tokenRequest(route, config, { grant_type: 'refresh_token', refresh_token: refreshToken }),
  };
}

async function fetchOrUnavailable(url: string, options: SafeFetchOptions): Promise<SafeResponse> {
  try {
    return await safeFetch(url, options);
  } catch (err) {
    if (err instanceof SafeFetchError) throw new ServiceOAuthError('unavailable', `${new URL(url).host}: ${err.message}`);
    throw err;
  }
}

const formEncode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');

/** The client's credentials on a request to the service: in the body (client_secret_post, added to `body`), or the headers returned. */
function authenticate(config: UserOAuthConfig, clientAuth: ServiceEndpoints['clientAuth'], body: URLSearchParams): Record<string, string> {
  if (clientAuth === 'client_secret_post') {
    body.set('client_id', config.clientId);
    body.set('client_secret', config.clientSecret);
    return {};
  }
  // RFC 6749 §2.3.1: each part form-urlencoded before base64.
  return { authorization: `Basic ${Buffer.from(`${formEncode(config.clientId)}:${formEncode(config.clientSecret)}`).toString('base64')}` };
}

function takesOnlyPost(methods: unknown): boolean {
  return Array.isArray(methods) && methods.includes('client_secret_post') && !methods.includes('client_secret_basic');
}

const isHttpsUrl = (value: unknown): value is string => typeof value === 'string' && URL.canParse(value) && new URL(value).protocol === 'https:';

function httpsUrl(value: unknown, name: string): string {
  if (isHttpsUrl(value)) return value;
  throw new ServiceOAuthError('invalid_response', `the service's metadata has no https ${name}`);
}

function jsonObject(res: SafeResponse, what: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(res.body);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Not JSON at all: said below, like JSON that is not an object.
  }
  throw new ServiceOAuthError('invalid_response', `${what} is not a JSON object`);
}

/** RFC 6749 §5.2, with the description cut short and stripped to printable ASCII (it is shown on a page). */
function oauthError(res: SafeResponse): { code: string; description?: string } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(res.body);
  } catch {
    return undefined;
  }
  const error = (value as { error?: unknown } | null)?.error;
  if (typeof error !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(error)) return undefined;
  const description = (value as { error_description?: unknown }).error_description;
  return { code: error, ...(typeof description === 'string' ? { description: description.replace(/[^\x20-\x7e]/g, '').slice(0, 200) } : {}) };
}

/** RFC 6749 §5.1. The access token must be usable as a header value or an environment variable. */
function tokensOf(answer: Record<string, unknown>, now: number): ServiceTokens {
  const { access_token: access, refresh_token: refresh, token_type: type, expires_in: expiresIn } = answer;
  if (typeof access !== 'string' || !/^[\x21-\x7e]+$/.test(access)) throw new ServiceOAuthError('invalid_response', 'the token endpoint\'s answer has no usable access_token');
  if (Buffer.byteLength(access) > MAX_SERVICE_TOKEN_BYTES) throw new ServiceOAuthError('invalid_response', `the service's access token is longer than ${MAX_SERVICE_TOKEN_BYTES} bytes`);
  if (typeof type !== 'string' || type.toLowerCase() !== 'bearer') throw new ServiceOAuthError('invalid_response', 'the token endpoint\'s answer is not a Bearer token');
  if (refresh !== undefined && (typeof refresh !== 'string' || !/^[\x21-\x7e]{1,8192}$/.test(refresh))) throw new ServiceOAuthError('invalid_response', 'the token endpoint\'s refresh_token is not usable');
  if (expiresIn !== undefined && (typeof expiresIn !== 'number' || !(expiresIn > 0))) throw new ServiceOAuthError('invalid_response', 'the token endpoint\'s expires_in is not a positive number');
  return { accessToken: access, ...(refresh ? { refreshToken: refresh as string } : {}), ...(typeof expiresIn === 'number' ? { expiresAt: now + expiresIn * 1000 } : {}) };
}
