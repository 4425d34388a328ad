import type { Clock } from '../clock.ts';
import { safeFetch, type SafeFetchOptions, type SafeResponse } from '../http/safe-fetch.ts';
import { sha256 } from '../random.ts';
import type { Store } from '../store/store.ts';
import { checkClientMetadata, type ClientRecord, type RedirectPolicy } from './clients.ts';
import { OAuthError } from './errors.ts';

// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, the MCP
// 2025-11-25 default): a client_id that is an https URL names a JSON document, published by
// the client, that says what DCR would have said. We fetch it with the SSRF-safe fetch, check
// it as strictly as a registration, and cache it in the store for the time its Cache-Control
// allows (clamped), so every instance of the function shares one fetch.

export const METADATA_MAX_BYTES = 5 * 1024;
const FETCH_TIMEOUT_MS = 5_000;
const MIN_CACHE_MS = 5 * 60_000;
const DEFAULT_CACHE_MS = 3_600_000;
const MAX_CACHE_MS = 24 * 3_600_000;

export type MetadataFetcher = (url: string) => Promise<SafeResponse>;

export const defaultMetadataFetcher = (options: Partial<SafeFetchOptions> = {}): MetadataFetcher => (url) => safeFetch(url, { maxBytes: METADATA_MAX_BYTES, timeoutMs: FETCH_TIMEOUT_MS, ...options });

/** Why this URL can't be a client_id (the draft's §3 rules); undefined when it can. */
export function metadataUrlProblem(clientId: string): string | undefined {
  if (clientId.length > 2048) return 'is longer than 2048 characters';
  let url: URL;
  try {
    url = new URL(clientId);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'https:') return 'must be https';
  if (url.username || url.password) return 'must not carry credentials';
  if (clientId.includes('#')) return 'must not have a fragment';
  if (url.pathname === '/' || url.pathname === '') return 'must have a path';
  // Checked on the raw string: the URL parser resolves dot segments away.
  if (/\/\.\.?(\/|$|\?)/.test(clientId) || /%2e/i.test(clientId)) return 'must not contain dot segments';
  if (url.href !== clientId) return 'must be in normal form';
  return undefined;
}

export interface MetadataClients {
  /** The client the document describes; an OAuthError (invalid_client) saying why when it can't be used. */
  find(clientId: string): Promise<ClientRecord>;
}

export function metadataClients(store: Store, clock: Clock, fetcher: MetadataFetcher, policy?: RedirectPolicy): MetadataClients {
  const refuse = (why: string) => new OAuthError('invalid_client', 401, `the client metadata document at this client_id ${why}`);
  return {
    async find(clientId) {
      const problem = metadataUrlProblem(clientId);
      if (problem) throw new OAuthError('invalid_client', 401, `client_id ${problem}`);
      const key = sha256(clientId);
      const cached = await store.get<ClientRecord>('clientMetadata', key);
      if (cached) return cached;
      let res: SafeResponse;
      try {
        res = await fetcher(clientId);
      } catch (err) {
        throw refuse(`could not be fetched: ${(err as Error).message}`);
      }
      if (!/^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(res.contentType)) throw refuse(`is not JSON (${res.contentType || 'no content type'})`);
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(res.body) as Record<string, unknown>;
      } catch {
        throw refuse('is not valid JSON');
      }
      if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw refuse('is not a JSON object');
      if (doc.client_id !== clientId) throw refuse('names another client_id');
      // A document anyone can read can't hold a secret: these clients are public.
      if ('client_secret' in doc || (doc.token_endpoint_auth_method ?? 'none') !== 'none') throw refuse('must describe a public client (token_endpoint_auth_method none, no secret)');
      let checked;
      try {
        checked = checkClientMetadata(doc, policy);
      } catch (err) {
        throw refuse(`is not acceptable: ${(err as Error).message}`);
      }
      const now = clock.now();
      const record: ClientRecord = { clientId, ...checked, clientName: `${checked.clientName} (${new URL(clientId).host})`, createdAt: now, metadataDocument: true };
      const ttl = Math.min(MAX_CACHE_MS, Math.max(MIN_CACHE_MS, res.maxAge !== undefined ? res.maxAge * 1000 : DEFAULT_CACHE_MS));
      await store.put('clientMetadata', key, record, { expiresAt: now + ttl });
      return record;
    },
  };
}
