import { Firestore, Timestamp, type DocumentSnapshot } from '@google-cloud/firestore';
import type { Clock } from '../clock.ts';
import { StoreUnavailableError, type Collection, type Doc, type DocChange, type PutOptions, type Store, type Transaction } from './store.ts';

// The production store. The only file that imports @google-cloud/firestore. Documents are
// stored as they are, plus `expireAt` (a Timestamp) when they expire, which the TTL policies
// in the deploy plan use to delete them; expiry is also checked here, in code, because TTL
// deletion can lag by a day.

/** Past this, a call is failed as unavailable instead of holding the request (a dead backend must not hang clients). */
const DEADLINE_MS = 5000;
/** Transactions on a contended document retry with backoff; give them longer, but still a bound. */
const TRANSACTION_DEADLINE_MS = 20_000;
/** gRPC codes that mean "the backend is not answering", not "your request is wrong". */
const UNAVAILABLE_CODES = new Set([4 /* DEADLINE_EXCEEDED */, 8 /* RESOURCE_EXHAUSTED */, 14 /* UNAVAILABLE */]);

export async function openFirestoreStore(options: {
  projectId: string;
  databaseId?: string;
  clock: Clock;
  prefix?: string;
  firestore?: Firestore;
  /** Bounds on one call and on a whole transaction (retries included); DEADLINE_MS and TRANSACTION_DEADLINE_MS unless set. */
  deadlines?: { callMs?: number; transactionMs?: number };
}): Promise<Store> {
  const firestore =
    options.firestore ??
    new Firestore({
      projectId: options.projectId,
      databaseId: options.databaseId ?? '(default)',
      ignoreUndefinedProperties: true,
      // Fail fast on a dead backend: the SDK's own retries would hold a request for a minute.
      maxIdleChannels: 1,
    });
  const deadlines = { callMs: options.deadlines?.callMs ?? DEADLINE_MS, transactionMs: options.deadlines?.transactionMs ?? TRANSACTION_DEADLINE_MS };
  return new FirestoreStore(firestore, options.clock, options.prefix ?? '', deadlines);
}

class FirestoreStore implements Store {
  readonly kind = 'firestore';
  readonly #db: Firestore;
  readonly #clock: Clock;
  readonly #prefix: string;
  readonly #deadlines: { callMs: number; transactionMs: number };

  constructor(db: Firestore, clock: Clock, prefix: string, deadlines: { callMs: number; transactionMs: number }) {
    this.#db = db;
    this.#clock = clock;
    this.#prefix = prefix;
    this.#deadlines = deadlines;
  }

  #ref(collection: Collection, id: string) {
    return this.#db.collection(this.#prefix + collection).doc(encodeId(id));
  }

  #live<T extends Doc>(snapshot: DocumentSnapshot): T | undefined {
    if (!snapshot.exists) return undefined;
    const { expireAt, ...doc } = snapshot.data()!;
    if (expireAt instanceof Timestamp && expireAt.toMillis() <= this.#clock.now()) return undefined;
    return doc as T;
  }

  #stored(doc: Doc, options?: PutOptions): Doc {
    return options?.expiresAt === undefined ? { ...doc } : { ...doc, expireAt: Timestamp.fromMillis(options.expiresAt) };
  }

  async get<T extends Doc>(collection: Collection, id: string): Promise<T | undefined> {
    return this.#live<T>(await this.#call(this.#ref(collection, id).get()));
  }

  async put(collection: Collection, id: string, doc: Doc, options?: PutOptions): Promise<void> {
    await this.#call(this.#ref(collection, id).set(this.#stored(doc, options)));
  }

  async create(collection: Collection, id: string, doc: Doc, options?: PutOptions): Promise<boolean> {
    return this.transaction(async (tx) => {
      if (await tx.get(collection, id)) return false;
      tx.put(collection, id, doc, options);
      return true;
    });
  }

  async delete(collection: Collection, id: string): Promise<void> {
    await this.#call(this.#ref(collection, id).delete());
  }

  async find<T extends Doc>(collection: Collection, field: string, value: string | number | boolean, limit = 1000): Promise<Array<{ id: string; doc: T }>> {
    const snapshot = await this.#call(this.#db.collection(this.#prefix + collection).where(field, '==', value).limit(limit).get());
    return snapshot.docs.flatMap((d) => {
      const doc = this.#live<T>(d);
      return doc ? [{ id: decodeId(d.id), doc }] : [];
    });
  }

  async list<T extends Doc>(collection: Collection, limit = 1000): Promise<Array<{ id: string; doc: T }>> {
    const snapshot = await this.#call(this.#db.collection(this.#prefix + collection).limit(limit).get());
    return snapshot.docs.flatMap((d) => {
      const doc = this.#live<T>(d);
      return doc ? [{ id: decodeId(d.id), doc }] : [];
    });
  }

  watch<T extends Doc>(collection: Collection, field: string, value: string | number | boolean, listener: (changes: ReadonlyArray<DocChange<T>>) => void, onError?: (err: Error) => void): () => void {
    // A document that expired is as good as deleted; it is reported gone only if it was reported at all.
    const shown = new Set<string>();
    let first = true;
    const stop = this.#db
      .collection(this.#prefix + collection)
      .where(field, '==', value)
      .onSnapshot(
        (snapshot) => {
          const changes: Array<DocChange<T>> = [];
          for (const change of snapshot.docChanges()) {
            const id = decodeId(change.doc.id);
            const doc = change.type === 'removed' ? undefined : this.#live<T>(change.doc);
            if (doc === undefined && !shown.delete(id)) continue;
            if (doc !== undefined) shown.add(id);
            changes.push({ id, doc });
          }
          // The first snapshot is delivered even when empty: the listener learns what is live now.
          if (changes.length || first) listener(changes);
          first = false;
        },
        (err) => onError?.(err),
      );
    this.#watches.add(stop);
    return () => {
      this.#watches.delete(stop);
      stop();
    };
  }

  /** Listeners still running: close() ends them. */
  readonly #watches = new Set<() => void>();

  transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
    // Once the caller has been told "unavailable", no retry of this transaction may commit:
    // a grant must not appear after its request already failed.
    const abandoned = { value: false };
    const attempt = this.#db.runTransaction(
      async (t) => {
        if (abandoned.value) throw new StoreUnavailableError('transaction abandoned after its deadline');
        let wrote = false;
        const tx: Transaction = {
          get: async <T extends Doc>(collection: Collection, id: string) => {
            if (wrote) throw new Error('store transaction: every read must come before the first write');
            return this.#live<T>(await t.get(this.#ref(collection, id)));
          },
          put: (collection, id, doc, options) => {
            wrote = true;
            t.set(this.#ref(collection, id), this.#stored(doc, options));
          },
          delete: (collection, id) => {
            wrote = true;
            t.delete(this.#ref(collection, id));
          },
        };
        const result = await fn(tx);
        if (abandoned.value) throw new StoreUnavailableError('transaction abandoned after its deadline');
        return result;
      },
      { maxAttempts: 10 },
    );
    return this.#call(attempt, this.#deadlines.transactionMs, () => (abandoned.value = true));
  }

  async ping(): Promise<void> {
    await this.#call(this.#db.collection(`${this.#prefix}keys`).doc('ping').get());
  }

  /** SDK calls still running, abandoned at their deadline included: close() lets them settle. */
  readonly #inflight = new Set<Promise<unknown>>();

  /** Every SDK call goes through here: bounded by its deadline, and remembered until it settles. */
  #call<T>(operation: Promise<T>, deadlineMs = this.#deadlines.callMs, onDeadline?: () => void): Promise<T> {
    this.#inflight.add(operation);
    operation.then(
      () => this.#inflight.delete(operation),
      () => this.#inflight.delete(operation),
    );
    return guard(operation, deadlineMs, onDeadline);
  }

  async close(): Promise<void> {
    // Terminating under a call the SDK is still retrying makes that retry reject with nobody
    // listening (an unhandled rejection): give such calls a bounded moment to finish first.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#inflight]), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    for (const stop of this.#watches) stop();
    this.#watches.clear();
    await this.#db.terminate();
  }
}

/** Firestore ids may not contain "/" or be "." / ".."; ours are hex or base64url, but be safe. */
function encodeId(id: string): string {
  return /^[A-Za-z0-9_-]+$/.test(id) ? id : `~${Buffer.from(id).toString('base64url')}`;
}

function decodeId(id: string): string {
  return id.startsWith('~') ? Buffer.from(id.slice(1), 'base64url').toString() : id;
}

/** How long close() waits for calls still in flight. */
const CLOSE_GRACE_MS = 5_000;

/** Bounds every call by a deadline and turns "backend not answering" into StoreUnavailableError. */
async function guard<T>(operation: Promise<T>, deadlineMs: number, onDeadline?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  operation.catch(() => undefined); // settled after the deadline: nobody is waiting any more
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onDeadline?.();
      reject(new StoreUnavailableError(`Firestore did not answer within ${deadlineMs} ms`));
    }, deadlineMs);
    timer.unref();
  });
  try {
    return await Promise.race([operation, deadline]);
  } catch (err) {
    if (err instanceof StoreUnavailableError) throw err;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number' && UNAVAILABLE_CODES.has(code)) throw new StoreUnavailableError(`Firestore unavailable: ${(err as Error).message}`, { cause: err });
    if (/ECONNREFUSED|ECONNRESET|No connection established|14 UNAVAILABLE/.test(String((err as Error).message))) {
      throw new StoreUnavailableError(`Firestore unavailable: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
