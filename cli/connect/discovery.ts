import { isLoopbackHost } from '../../lib/config/config.ts';
import { checkResourceAllowed, resourceUrlFromServerUrl } from '../../lib/mcp/sdk.ts';

// Finding the authorization server from an MCP server's URL alone, as the MCP authorization
// spec lays it out: the 401's WWW-Authenticate names the protected resource metadata (RFC 9728,
// with the well-known fallbacks), which names the authorization server, whose metadata comes
// from RFC 8414 (path-inserted) or the OpenID configuration. Everything fetched is bounded, and
// every URL that may reach a browser or carry a secret is checked first.

export class ConnectError extends Error {
  override readonly name = 'ConnectError';
}

export interface ServerMetadata {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
  readonly registration_endpoint?: string;
  readonly code_challenge_methods_supported?: string[];
  readonly authorization_response_iss_parameter_supported?: boolean;
  readonly scopes_supported?: string[];
  readonly token_endpoint_auth_methods_supported?: string[];
  readonly client_id_metadata_document_supported?: boolean;
}

export interface Discovered {
  /** The RFC 8707 resource to ask tokens for. */
  readonly resource: string;
  readonly metadata: ServerMetadata;
  readonly scope?: string;
}

const MAX_METADATA_BYTES = 256 * 1024;
const TIMEOUT_MS = 10_000;

/** https anywhere, http only on loopback, nothing else, and no characters a URL may not hold. */
export function checkSafeUrl(value: unknown, what: string): URL {
  if (typeof value !== 'string' || value.length > 2048 || !/^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/.test(value)) {
    throw new ConnectError(`${what} is not a plain URL: ${JSON.stringify(String(value).slice(0, 200))}`);
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConnectError(`${what} is not a URL: ${value}`);
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))) return url;
  throw new ConnectError(`${what} must be https (or http on loopback), not ${url.protocol}//${url.host}`);
}

export async function fetchJson(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: unknown }> {
  const res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  const reader = res.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = reader ? await reader.read() : { done: true as const, value: undefined };
    if (next.done) break;
    size += next.value.length;
    if (size > MAX_METADATA_BYTES) {
      await reader!.cancel();
      throw new ConnectError(`${url} answered more than ${MAX_METADATA_BYTES / 1024} KiB of metadata`);
    }
    chunks.push(next.value);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, body };
}

function wellKnown(base: URL, name: string): string[] {
  // RFC 8414/9728: insert the well-known segment before the path; then try the bare origin.
  const path = base.pathname.replace(/\/$/, '');
  return [...new Set([`${base.origin}/.well-known/${name}${path}`, `${base.origin}/.well-known/${name}`])];
}

/** A document that can't be fetched is a reason to try the next place; one that is hostile is not. */
function unreachable(err: unknown): undefined {
  if (err instanceof ConnectError) throw err;
  return undefined;
}

export async function discover(serverUrl: string): Promise<Discovered> {
  const server = checkSafeUrl(serverUrl, 'the MCP server URL');
  const probe = await fetch(server, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'ping' }),
    redirect: 'manual',
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  await probe.body?.cancel();
  const challenge = probe.headers.get('www-authenticate') ?? '';
  const named = /resource_metadata="([^"]+)"/.exec(challenge)?.[1];
  const scope = /scope="([^"]+)"/.exec(challenge)?.[1];
  const candidates = named ? [checkSafeUrl(named, 'resource_metadata').toString()] : wellKnown(server, 'oauth-protected-resource');
  let prm: { resource?: unknown; authorization_servers?: unknown; scopes_supported?: unknown } | undefined;
  for (const url of candidates) {
    const found = await fetchJson(url).catch(unreachable);
    if (found?.status === 200 && found.body && typeof found.body === 'object') {
      prm = found.body as typeof prm;
      break;
    }
  }
  if (!prm) throw new ConnectError(`${serverUrl} publishes no protected resource metadata (RFC 9728): is it an OAuth-protected MCP server?`);
  const resource = typeof prm.resource === 'string' ? prm.resource : server.toString();
  // RFC 9728 §3.3: metadata naming another resource must not be used; else a server could have
  // us ask (and then send it) a token for someone else's MCP server. Same origin, and a path that
  // is ours or a parent of it: the MCP SDK's rule, so servers it accepts we accept.
  if (!URL.canParse(resource) || !checkResourceAllowed({ requestedResource: resourceUrlFromServerUrl(server), configuredResource: resource })) {
    throw new ConnectError(`${serverUrl}'s protected resource metadata names the resource ${resource}, which is not this server (RFC 9728 §3.3)`);
  }
  const issuerValue = Array.isArray(prm.authorization_servers) ? prm.authorization_servers[0] : undefined;
  const issuer = checkSafeUrl(issuerValue, 'the authorization server');
  let metadata: ServerMetadata | undefined;
  for (const url of authorizationServerMetadataUrls(issuer)) {
    const found = await fetchJson(url).catch(unreachable);
    if (found?.status === 200 && found.body && typeof found.body === 'object') {
      metadata = found.body as ServerMetadata;
      break;
    }
  }
  if (!metadata) throw new ConnectError(`${issuer} publishes no authorization server metadata (RFC 8414)`);
  // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
  if (metadata.issuer !== issuerValue && metadata.issuer !== issuer.toString().replace(/\/$/, '')) {
    throw new ConnectError(`the authorization server metadata names issuer ${JSON.stringify(metadata.issuer)}, not ${issuerValue}`);
  }
  checkSafeUrl(metadata.authorization_endpoint, 'authorization_endpoint');
  checkSafeUrl(metadata.token_endpoint, 'token_endpoint');
  if (metadata.registration_endpoint !== undefined) checkSafeUrl(metadata.registration_endpoint, 'registration_endpoint');
  if (!metadata.code_challenge_methods_supported?.includes('S256')) throw new ConnectError('the authorization server does not offer PKCE S256, which the MCP spec requires');
  // The scope to ask for: the challenge's, else what the resource says it supports (MCP 2025-11-25).
  const supported = Array.isArray(prm.scopes_supported) ? prm.scopes_supported.filter((x): x is string => typeof x === 'string').join(' ') : undefined;
  return { resource, metadata, scope: scope ?? (supported || undefined) };
}

/**
 * Where an issuer's metadata may live, in the MCP spec's order: with a path, RFC 8414 and OIDC
 * path insertion, then OIDC path appending, and never the origin's root (another tenant's);
 * without one, the two root documents.
 */
export function authorizationServerMetadataUrls(issuer: URL): string[] {
  const path = issuer.pathname.replace(/\/$/, '');
  if (!path) return [`${issuer.origin}/.well-known/oauth-authorization-server`, `${issuer.origin}/.well-known/openid-configuration`];
  return [`${issuer.origin}/.well-known/oauth-authorization-server${path}`, `${issuer.origin}/.well-known/openid-configuration${path}`, `${issuer.origin}${path}/.well-known/openid-configuration`];
}
