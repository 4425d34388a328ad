import type { Clock } from '../clock.ts';
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

/** Counts one request for `key`; throws a 429 OAuthError with Retry-After when over the limit. */
export async function enforceLimit(store: Store, clock: Clock, name: string, key: string, limit: Limit): Promise<void> {
  const now = clock.now();
  const window = Math.floor(now / limit.windowMs);
  const id = sha256(`${name}\n${key}\n${window}`);
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
