import type { Store } from '../store/store.ts';
import type { CredentialKeys } from '../tokens/credential-keys.ts';
import { sealUserCredential, unsealUserCredential, type UserCredentialRecord } from './user-credentials.ts';

// Moving stored credentials (typed-in ones and service accounts alike) from an older sealing key
// to the newest, so the older key can be dropped (docs/deploy.md, "Rotating the credential
// keys"): each one as /token reads it, and all at once with `mcp-front credentials reseal`. Only
// `sealed` changes: the version stays, so no session ends over it (services/route/registry.ts).

export type Resealing = 'resealed' | 'current' | 'unreadable' | 'replaced';

/**
 * Seals the record again under the newest key when an older one opened it. In a transaction that
 * writes only if the stored record is still this one (same sealed text): a credential the user
 * replaced, or a service token renewed, meanwhile is never overwritten with the older value.
 */
export async function resealUserCredential(store: Store, keys: CredentialKeys, id: string, record: UserCredentialRecord): Promise<Resealing> {
  const opened = unsealUserCredential(keys, record, { userSub: record.userSub, route: record.route });
  if (!opened) return 'unreadable';
  if (!opened.stale) return 'current';
  const sealed = sealUserCredential(keys, record.userSub, record.route, opened.plain);
  return store.transaction(async (tx) => {
    const current = await tx.get<UserCredentialRecord>('userCredentials', id);
    if (current?.sealed !== record.sealed) return 'replaced';
    tx.put('userCredentials', id, { ...current, sealed });
    return 'resealed';
  });
}

export interface ResealReport {
  /** Sealed again under the newest key. */
  readonly resealed: number;
  /** Already under the newest key, or replaced while this ran (sealed by whichever instance saved it: run again after a rollout). */
  readonly current: number;
  /** Opened by no key held: the user is asked for it again at their next connection. */
  readonly unreadable: number;
}

/** More than this many stored credentials is a job for a batch of its own. */
export const RESEAL_LIMIT = 100_000;

/** `mcp-front credentials reseal`: every stored credential, before the older sealing keys are dropped. */
export async function resealAllUserCredentials(store: Store, keys: CredentialKeys): Promise<ResealReport> {
  const counts = { resealed: 0, current: 0, unreadable: 0 };
  for (const { id, doc } of await store.list<UserCredentialRecord>('userCredentials', RESEAL_LIMIT)) {
    const outcome = await resealUserCredential(store, keys, id, doc);
    counts[outcome === 'replaced' ? 'current' : outcome]++;
  }
  return counts;
}
