import type { Collection, Doc, DocChange, Store } from './store.ts';

// A store that counts what goes through it: the benchmark and tests use it to show the MCP
// hot path does no store work at all.

export interface StoreCounts {
  reads: number;
  writes: number;
  transactions: number;
}

export function countingStore(inner: Store): Store & { readonly counts: StoreCounts; reset(): void } {
  const counts: StoreCounts = { reads: 0, writes: 0, transactions: 0 };
  return {
    kind: inner.kind,
    counts,
    reset: () => Object.assign(counts, { reads: 0, writes: 0, transactions: 0 }),
    get: (c, id) => (counts.reads++, inner.get(c, id)),
    find: (c, f, v, l) => (counts.reads++, inner.find(c, f, v, l)),
    list: (c, l) => (counts.reads++, inner.list(c, l)),
    put: (c, id, d, o) => (counts.writes++, inner.put(c, id, d, o)),
    create: (c, id, d, o) => (counts.writes++, inner.create(c, id, d, o)),
    delete: (c, id) => (counts.writes++, inner.delete(c, id)),
    // Firestore bills a listener one read per document it delivers added or changed (not removed).
    watch: <T extends Doc>(c: Collection, f: string, v: string | number | boolean, listener: (changes: ReadonlyArray<DocChange<T>>) => void, onError?: (err: Error) => void) =>
      inner.watch<T>(c, f, v, (changes) => ((counts.reads += changes.filter((change) => change.doc !== undefined).length), listener(changes)), onError),
    transaction: (fn) => (counts.transactions++, inner.transaction(fn)),
    ping: () => inner.ping(),
    close: () => inner.close(),
  };
}
