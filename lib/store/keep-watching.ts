import type { Logger } from '../log.ts';
import type { Collection, Doc, DocChange, Store } from './store.ts';

// A live query that outlasts its listener. Firestore retries a listener's transient failures
// itself, but one it gives up on (onError) stays dead: an instance whose relay or ownership
// listener died would stop serving relayed calls and never hear of a session ended elsewhere.
// This starts it again with backoff, and on each new start reconciles: a document the listener
// had delivered that is gone from the new start's first snapshot was deleted (or stopped
// matching) while nobody listened, and is reported as such.

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;

export function keepWatching<T extends Doc>(
  store: Pick<Store, 'watch'>,
  query: { collection: Collection; field: string; value: string | number | boolean; what: string },
  listener: (changes: ReadonlyArray<DocChange<T>>) => void,
  log: Logger,
  retry = { firstMs: FIRST_RETRY_MS, maxMs: MAX_RETRY_MS },
): () => void {
  const live = new Set<string>();
  let stopped = false;
  let stop: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let delayMs = retry.firstMs;

  const start = (restarted: boolean) => {
    let first = restarted;
    stop = store.watch<T>(
      query.collection,
      query.field,
      query.value,
      (changes) => {
        delayMs = retry.firstMs;
        let all = changes;
        if (first) {
          first = false;
          const present = new Set(changes.map((c) => c.id));
          all = [...[...live].filter((id) => !present.has(id)).map((id) => ({ id, doc: undefined })), ...changes];
        }
        for (const { id, doc } of all) doc ? live.add(id) : live.delete(id);
        listener(all);
      },
      (err) => {
        if (stopped) return;
        log.error(`the ${query.what} listener stopped; starting it again in ${delayMs / 1000} s`, { error: err.message });
        stop = undefined;
        timer = setTimeout(() => start(true), delayMs);
        timer.unref();
        delayMs = Math.min(delayMs * 2, retry.maxMs);
      },
    );
  };
  start(false);
  return () => {
    stopped = true;
    clearTimeout(timer);
    stop?.();
  };
}
