import type { Clock } from '../../lib/clock.ts';
import type { Config } from '../../lib/config/config.ts';
import type { Logger } from '../../lib/log.ts';
import type { Store } from '../../lib/store/store.ts';
import type { KeySet } from '../../lib/tokens/keys.ts';
import type { CredentialKeys } from '../../lib/tokens/credential-keys.ts';
import type { UpstreamProvider } from '../../lib/oauth/providers/provider.ts';
import type { MetadataClients } from '../../lib/oauth/client-metadata.ts';
import { OAuthError } from '../../lib/oauth/errors.ts';
import type { ServiceOAuth } from '../../lib/oauth/service-oauth.ts';
import { readBodyLimited } from '../../lib/http/body.ts';

// What every handler of the authorization server gets.

export interface OAuthDeps {
  readonly config: Config;
  readonly store: Store;
  readonly keys: KeySet;
  readonly clock: Clock;
  readonly log: Logger;
  /** Required when a route takes each user's own credential (lib/tokens/credential-keys.ts). */
  readonly credentialKeys?: CredentialKeys;
}

export interface HandlerDeps extends OAuthDeps {
  readonly provider: UpstreamProvider;
  /** Clients whose client_id is the URL of their metadata document. */
  readonly metadataClients: MetadataClients;
  /** The OAuth servers of routes' services (routes[].user_oauth). */
  readonly serviceOAuth: ServiceOAuth;
}

/** Request bodies above this are refused before parsing. */
export const MAX_FORM_BYTES = 16 * 1024;
export const MAX_JSON_BYTES = 64 * 1024;

export async function readBody(req: Request, limit: number): Promise<string> {
  const text = await readBodyLimited(req, limit);
  if (text === undefined) throw new OAuthError('invalid_request', 413, `the body is larger than ${limit} bytes`);
  return text;
}

/** An application/x-www-form-urlencoded body where no parameter appears twice (RFC 6749 §3.1). */
export async function readForm(req: Request, limit = MAX_FORM_BYTES): Promise<URLSearchParams> {
  const type = (req.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new OAuthError('invalid_request', 400, 'the body must be application/x-www-form-urlencoded');
  const form = new URLSearchParams(await readBody(req, limit));
  const seen = new Set<string>();
  for (const key of form.keys()) {
    if (seen.has(key)) throw new OAuthError('invalid_request', 400, `parameter ${key} appears more than once`);
    seen.add(key);
  }
  return form;
}

/** A browser form POST must come from our own pages (defence in depth next to the CSRF token). */
export function checkSameOrigin(req: Request, issuer: string): boolean {
  const origin = req.headers.get('origin');
  return origin === null || origin === new URL(issuer).origin;
}

export function redirect(location: string, headers: Record<string, string> = {}): Response {
  return new Response(null, { status: 303, headers: { location, 'cache-control': 'no-store', ...headers } });
}
