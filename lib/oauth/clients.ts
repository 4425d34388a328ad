import type { Clock } from '../clock.ts';
import { isLoopbackHost } from '../config/config.ts';
import { randomToken, safeEqual, sha256 } from '../random.ts';
import type { Store } from '../store/store.ts';
import type { MetadataClients } from './client-metadata.ts';
import { OAuthError } from './errors.ts';
import { presetProblem } from './presets.ts';

// OAuth clients: dynamic registration (RFC 7591) with strict metadata checks, lookup, and
// client authentication at the token endpoint. Secrets are kept only as SHA-256.

export type TokenEndpointAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post';

export interface ClientRecord {
  [key: string]: unknown;
  clientId: string;
  clientName: string;
  redirectUris: string[];
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  secretHash?: string;
  grantTypes: string[];
  createdAt: number;
  /** Set once a grant completes; until then the registration expires. */
  usedAt?: number;
  /** The client_id is the URL of a Client ID Metadata Document (client-metadata.ts). */
  metadataDocument?: boolean;
}

const MAX_REDIRECT_URIS = 20;
const MAX_URI_LENGTH = 2048;
const MAX_NAME_LENGTH = 200;
/** A registration nobody completed a grant with is forgotten after this. */
export const UNUSED_CLIENT_TTL_MS = 24 * 3_600_000;
const GRANT_TYPES = new Set(['authorization_code', 'refresh_token']);
const AUTH_METHODS = new Set<TokenEndpointAuthMethod>(['none', 'client_secret_basic', 'client_secret_post']);

/**
 * A redirect URI we accept (OAuth 2.1 §2.3.1, RFC 8252): https; http only to a loopback
 * host (any port: native apps pick one at run time); or a private-use scheme with a dot
 * (reverse domain, e.g. com.example.app:/cb) or a known client scheme. Never a fragment.
 */
export function redirectUriProblem(uri: unknown): string | undefined {
  if (typeof uri !== 'string' || !uri) return 'must be a non-empty string';
  if (uri.length > MAX_URI_LENGTH) return `is longer than ${MAX_URI_LENGTH} characters`;
  if (/[\s<>"{}|\\^`]/.test(uri) || /[\u0000-\u001f\u007f]/.test(uri)) return 'contains characters a URI may not contain';
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'is not an absolute URI';
  }
  if (url.hash || uri.includes('#')) return 'must not contain a fragment';
  if (url.username || url.password) return 'must not contain credentials';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') return isLoopbackHost(url.hostname) ? undefined : 'http is only allowed for a loopback host (127.0.0.1, [::1] or localhost)';
  const scheme = url.protocol.slice(0, -1);
  if (['javascript', 'data', 'file', 'blob', 'about', 'vbscript', 'ftp', 'ws', 'wss'].includes(scheme)) return `the ${scheme}: scheme is not allowed`;
  if (!/^[a-z][a-z0-9+.-]*$/.test(scheme)) return 'has an invalid scheme';
  return undefined;
}

export interface RegisteredClient {
  readonly record: ClientRecord;
  /** Only when confidential, and only in the registration response. */
  readonly secret?: string;
}

/** The gateway's own rule on top of redirectUriProblem (`registration: presets`): a reason to refuse, or undefined. */
export type RedirectPolicy = (uri: string) => string | undefined;

/** The policy the config asks for. */
export function redirectPolicy(oauth: { readonly registration: 'open' | 'presets'; readonly extraRedirectUris: readonly string[] }): RedirectPolicy | undefined {
  return oauth.registration === 'presets' ? (uri) => presetProblem(uri, oauth.extraRedirectUris) : undefined;
}

/** RFC 7591 client metadata, checked: what a registration or a metadata document may say. */
export interface CheckedMetadata {
  readonly clientName: string;
  readonly redirectUris: string[];
  readonly tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  readonly grantTypes: string[];
}

/** Strict checks of client metadata (a DCR body or a Client ID Metadata Document). */
export function checkClientMetadata(metadata: unknown, policy?: RedirectPolicy): CheckedMetadata {
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) throw new OAuthError('invalid_client_metadata', 400, 'the body must be a JSON object of client metadata');
  const m = metadata as Record<string, unknown>;
  const uris = m.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0) throw new OAuthError('invalid_redirect_uri', 400, 'redirect_uris must be a non-empty array');
  if (uris.length > MAX_REDIRECT_URIS) throw new OAuthError('invalid_redirect_uri', 400, `at most ${MAX_REDIRECT_URIS} redirect_uris`);
  uris.forEach((uri, i) => {
    const problem = redirectUriProblem(uri) ?? policy?.(uri as string);
    if (problem) throw new OAuthError('invalid_redirect_uri', 400, `redirect_uris[${i}] ${problem}`);
  });
  const method = (m.token_endpoint_auth_method ?? 'none') as TokenEndpointAuthMethod;
  if (!AUTH_METHODS.has(method)) throw new OAuthError('invalid_client_metadata', 400, 'token_endpoint_auth_method must be none, client_secret_basic or client_secret_post');
  const grantTypes = m.grant_types ?? ['authorization_code', 'refresh_token'];
  if (!Array.isArray(grantTypes) || grantTypes.some((g) => typeof g !== 'string' || !GRANT_TYPES.has(g))) {
    throw new OAuthError('invalid_client_metadata', 400, 'grant_types may only contain authorization_code and refresh_token');
  }
  const responseTypes = m.response_types ?? ['code'];
  if (!Array.isArray(responseTypes) || responseTypes.some((r) => r !== 'code')) throw new OAuthError('invalid_client_metadata', 400, 'response_types may only contain code');
  const name = m.client_name ?? 'Unnamed MCP client';
  if (typeof name !== 'string' || name.length > MAX_NAME_LENGTH || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new OAuthError('invalid_client_metadata', 400, `client_name must be text of at most ${MAX_NAME_LENGTH} characters`);
  }
  return { clientName: name.trim() || 'Unnamed MCP client', redirectUris: [...new Set(uris as string[])], tokenEndpointAuthMethod: method, grantTypes: grantTypes as string[] };
}

/** Validates RFC 7591 client metadata and stores the client. */
export async function registerClient(store: Store, clock: Clock, metadata: unknown, policy?: RedirectPolicy): Promise<RegisteredClient> {
  const checked = checkClientMetadata(metadata, policy);
  const now = clock.now();
  const secret = checked.tokenEndpointAuthMethod === 'none' ? undefined : randomToken(32);
  const record: ClientRecord = {
    clientId: randomToken(16),
    ...checked,
    ...(secret ? { secretHash: sha256(secret) } : {}),
    createdAt: now,
  };
  await store.put('clients', record.clientId, record, { expiresAt: now + UNUSED_CLIENT_TTL_MS });
  return { record, secret };
}

/** The RFC 7591 §3.2.1 client information response. */
export function clientInformation(client: RegisteredClient): Record<string, unknown> {
  const r = client.record;
  return {
    client_id: r.clientId,
    client_id_issued_at: Math.floor(r.createdAt / 1000),
    client_name: r.clientName,
    redirect_uris: r.redirectUris,
    grant_types: r.grantTypes,
    response_types: ['code'],
    token_endpoint_auth_method: r.tokenEndpointAuthMethod,
    ...(client.secret ? { client_secret: client.secret, client_secret_expires_at: 0 } : {}),
  };
}

/**
 * A registered client, or the one an https client_id's metadata document describes (an
 * OAuthError saying why when that document can't be used; no document support: undefined).
 */
export async function findClient(store: Store, clientId: string, metadata?: MetadataClients): Promise<ClientRecord | undefined> {
  if (clientId.startsWith('https://')) return metadata?.find(clientId);
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(clientId)) return undefined;
  return store.get<ClientRecord>('clients', clientId);
}

/** A client that completed a grant stays registered (no expiry) from now on. */
export async function markClientUsed(store: Store, clock: Clock, client: ClientRecord): Promise<void> {
  if (client.usedAt || client.metadataDocument) return;
  await store.put('clients', client.clientId, { ...client, usedAt: clock.now() });
}

/**
 * A Basic credential part, which RFC 6749 §2.3.1 has clients form-urlencode. One that doesn't
 * decode names no client: 401 invalid_client, as node-oidc-provider answers.
 */
function formDecoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new OAuthError('invalid_client', 401, 'the Basic credentials are not properly percent-encoded', { 'www-authenticate': 'Basic realm="mcp-front"' });
  }
}

/**
 * Client authentication at the token endpoint (RFC 6749 §2.3): public clients name
 * themselves; confidential ones prove the secret by Basic or in the body, not both.
 */
export async function authenticateClient(store: Store, req: Request, form: URLSearchParams, metadata?: MetadataClients): Promise<ClientRecord> {
  const basic = /^Basic +([A-Za-z0-9+/=]+)$/i.exec(req.headers.get('authorization') ?? '')?.[1];
  let id = form.get('client_id') ?? undefined;
  let secret = form.get('client_secret') ?? undefined;
  let method: TokenEndpointAuthMethod = secret ? 'client_secret_post' : 'none';
  if (basic) {
    if (secret) throw new OAuthError('invalid_request', 400, 'use one client authentication method, not two');
    const decoded = Buffer.from(basic, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new OAuthError('invalid_client', 401, 'malformed Basic credentials', { 'www-authenticate': 'Basic realm="mcp-front"' });
    const basicId = formDecoded(decoded.slice(0, colon));
    if (id && id !== basicId) throw new OAuthError('invalid_request', 400, 'client_id does not match the Basic credentials');
    id = basicId;
    secret = formDecoded(decoded.slice(colon + 1));
    method = 'client_secret_basic';
  }
  const fail = () => new OAuthError('invalid_client', 401, 'client authentication failed', method === 'client_secret_basic' ? { 'www-authenticate': 'Basic realm="mcp-front"' } : {});
  if (!id) throw new OAuthError('invalid_request', 400, 'client_id is required');
  const client = await findClient(store, id, metadata);
  if (!client) throw fail();
  if (client.tokenEndpointAuthMethod === 'none') {
    if (method !== 'none') throw fail();
    return client;
  }
  if (!secret || !client.secretHash || !safeEqual(sha256(secret), client.secretHash)) throw fail();
  return client;
}
