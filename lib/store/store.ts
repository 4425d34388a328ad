// The Store: a small document store with transactions, the one thing every part of
// mcp-front persists through. Two implementations (sqlite-store.ts, firestore-store.ts)
// pass one contract suite (test/store/contract.ts). Domain rules (single-use codes,
// refresh rotation) live in lib/oauth and are built on `transaction`.

/** Every collection mcp-front keeps; Firestore collection names are these strings. */
export type Collection =
  | 'clients' // registered OAuth clients (DCR), secrets hashed
  | 'clientMetadata' // fetched Client ID Metadata Documents, keyed by SHA-256 of the URL (a cache)
  | 'authRequests' // an /authorize in progress: sign-in → consent → code
  | 'codes' // authorization codes, keyed by SHA-256 of the code
  | 'grants' // one per (user, client) authorization; refresh tokens belong to it
  | 'refreshTokens' // keyed by SHA-256 of the token
  | 'consents' // remembered consent per (user, client, routes)
  | 'browserSessions' // the AS session cookie, keyed by SHA-256 of the cookie value
  | 'users' // per-user state: revocation
  | 'userCredentials' // each user's own credential for a route, sealed; keyed by SHA-256 of (user, route)
  | 'keys' // token signing keys (local mode)
  | 'mcpSessions' // MCP sessions, so any instance can serve them; `owner`/`epoch` say which instance runs it
  | 'routeInstances' // a route instance's lease: alive while its document is (services/route/ownership.ts)
  | 'mcpRelay' // messages between the instance holding a client's stream and the session's owner (lib/mcp/relay.ts)
  | 'rateBuckets' // rate-limit counters
  | 'audit';

export const COLLECTIONS: readonly Collection[] = [
  'clients',
  'clientMetadata',
  'authRequests',
  'codes',
  'grants',
  'refreshTokens',
  'consents',
  'browserSessions',
  'users',
  'userCredentials',
  'keys',
  'mcpSessions',
  'routeInstances',
  'mcpRelay',
  'rateBuckets',
  'audit',
];

/** A stored document: plain JSON (strings, finite numbers, booleans, null, arrays, objects). */
export type Doc = { [key: string]: unknown };

export interface PutOptions {
  /**
   * Epoch milliseconds after which the document no longer exists: `get` and `find`
   * stop returning it at once (checked against the store's clock, in code), and the
   * backend deletes it later (SQLite sweep; Firestore TTL policy on the `expireAt` field).
   */
  expiresAt?: number;
}

/** One document's change, as `watch` tells it: `doc` undefined when it is gone. */
export interface DocChange<T extends Doc = Doc> {
  readonly id: string;
  readonly doc: T | undefined;
}

/** Reads and writes inside one atomic unit. All reads must come before the first write (Firestore's rule). */
export interface Transaction {
  get<T extends Doc>(collection: Collection, id: string): Promise<T | undefined>;
  /** Creates or replaces. */
  put(collection: Collection, id: string, doc: Doc, options?: PutOptions): void;
  delete(collection: Collection, id: string): void;
}

export interface Store {
  readonly kind: 'sqlite' | 'firestore';
  get<T extends Doc>(collection: Collection, id: string): Promise<T | undefined>;
  /** Creates or replaces. */
  put(collection: Collection, id: string, doc: Doc, options?: PutOptions): Promise<void>;
  /** Creates only if absent (or expired); returns false when a live document already has that id. */
  create(collection: Collection, id: string, doc: Doc, options?: PutOptions): Promise<boolean>;
  delete(collection: Collection, id: string): Promise<void>;
  /** Live documents whose top-level `field` equals `value` (an equality query; at most `limit`, default 1000). */
  find<T extends Doc>(collection: Collection, field: string, value: string | number | boolean, limit?: number): Promise<Array<{ id: string; doc: T }>>;
  /** Live documents of a collection, in no particular order (at most `limit`, default 1000): operators' listings, never a request path. */
  list<T extends Doc>(collection: Collection, limit?: number): Promise<Array<{ id: string; doc: T }>>;
  /**
   * Runs `fn` atomically: either every write lands or none does. Concurrent transactions
   * touching the same documents are serialized (SQLite) or retried (Firestore), so `fn`
   * may run more than once and must not have side effects outside `tx`.
   */
  transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R>;
  /**
   * A live query: `listener` first gets every live document whose top-level `field` equals
   * `value` (an empty list when there is none), then each change as it lands (from this process or another): a document added or
   * replaced comes with its `doc`, one deleted (or that no longer matches) with `doc` undefined.
   * Changes to one document arrive in the order they were written. Firestore: a real-time
   * listener (onSnapshot); SQLite: in-process events plus a cheap poll for other processes'
   * commits. Returns the function that stops it; `onError` hears a listener the backend ended.
   */
  watch<T extends Doc>(collection: Collection, field: string, value: string | number | boolean, listener: (changes: ReadonlyArray<DocChange<T>>) => void, onError?: (err: Error) => void): () => void;
  /** Cheap round trip for readiness checks; throws StoreUnavailableError when the backend is down. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The backend can't be reached or timed out: callers answer 503 with Retry-After, and nothing was written. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
