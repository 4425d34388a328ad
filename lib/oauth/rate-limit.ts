import type { Clock } from '../clock.ts';
import { randomInt } from 'node:crypto';
import { sha256 } from '../random.ts';
import type { Store } from '../store/store.ts';
import { OAuthError } from './errors.ts';

// Rate limits for the authorization server's open endpoints, counted in the store: on
// serverless, instances come and go and an in-memory counter limits nothing. Fixed windows,
// one transaction per request; the bucket document expires with its window.

export interface Limit {
  /** Requests allowed per window. */
  readonly max: number;
  readonly windowMs: number;
}

/** Requests per shard before a bucket is split: one Firestore document takes about one write a second. */
const PER_SHARD = 50;

/**
 * Counts one request for `key`; throws a 429 OAuthError with Retry-After when over the limit.
 * A busy key (ChatGPT's servers share a few IPs) would make its bucket a hot document, so
 * large limits are split over shards, each enforcing its share: approximate, contention-free.
 */
export async function enforceLimit(store: Store, clock: Clock, name: string, key: string, limit: Limit): Promise<void> {
  const now = clock.now();
  const window = Math.floor(now / limit.windowMs);
  const shards = Math.max(1, Math.floor(limit.max / PER_SHARD));
  const shard = shards === 1 ? 0 : randomInt(shards);
  limit = { ...limit, max: Math.ceil(limit.max / shards) };
  const id = sha256(`${name}\n${key}\n${window}\n${shard}`);
  const resetsAt = (window + 1) * limit.windowMs;
  const count = await store.transaction(async (tx) => {
    const bucket = await tx.get<{ count: number }>('rateBuckets', id);
    const next = (bucket?.count ?? 0) + 1;
    if (next <= limit.max + 1) tx.put('rateBuckets', id, { count: next }, { expiresAt: resetsAt });
    return next;
  });
  if (count > limit.max) {
    throw new OAuthError('temporarily_unavailable', 429, `too many ${name} requests; try again in ${Math.ceil((resetsAt - now) / 1000)} s`, { 'retry-after': String(Math.ceil((resetsAt - now) / 1000)) });
  }
}
