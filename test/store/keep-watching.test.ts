import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.ts';
import { memoryLogger } from '../../lib/log.ts';
import { keepWatching } from '../../lib/store/keep-watching.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import type { Doc, DocChange, Store } from '../../lib/store/store.ts';
import { until } from '../support/route-harness.ts';

// A live query whose listener the backend ends (Firestore's onError: the listener is dead)
// is started again, and what changed while nobody listened is reported: a document deleted
// in the gap comes as deleted, one added comes as added.

describe('keepWatching', () => {
  let store: Store;
  /** Ends the listener the backend runs now, as Firestore does when it gives up on one. */
  let failCurrent: () => void = () => undefined;
  let starts = 0;
  const failing: Pick<Store, 'watch'> = {
    watch: (collection, field, value, listener, onError) => {
      starts++;
      const stop = store.watch(collection, field, value, listener);
      failCurrent = () => {
        stop();
        onError?.(new Error('listener ended by the backend'));
      };
      return stop;
    },
  };
  beforeAll(async () => {
    store = await openSqliteStore({ file: ':memory:', clock: systemClock });
  });
  afterAll(async () => store?.close());

  it('starts the listener again and reports what changed while it was down, deletions included', async () => {
    const log = memoryLogger();
    const seen: Array<DocChange<Doc>> = [];
    await store.put('mcpSessions', 'a', { owner: 'me' });
    await store.put('mcpSessions', 'b', { owner: 'me' });
    const stop = keepWatching(failing, { collection: 'mcpSessions', field: 'owner', value: 'me', what: 'test' }, (changes) => seen.push(...changes), log, { firstMs: 20, maxMs: 100 });
    expect(await until(() => seen.length === 2, 5000)).toBe(true);

    failCurrent();
    await store.delete('mcpSessions', 'a'); // while nobody listens
    await store.put('mcpSessions', 'c', { owner: 'me' });
    expect(await until(() => seen.some((c) => c.id === 'c'), 5000)).toBe(true);
    expect(starts).toBe(2);
    expect(seen.slice(2).map((c) => [c.id, c.doc ? 'live' : 'gone']).sort()).toEqual([
      ['a', 'gone'],
      ['b', 'live'],
      ['c', 'live'],
    ]);
    expect(log.lines.some((l) => l.severity === 'ERROR' && String(l.message).includes('the test listener stopped'))).toBe(true);

    // After the restart it is a listener like the first: changes keep coming.
    await store.delete('mcpSessions', 'b');
    expect(await until(() => seen.some((c) => c.id === 'b' && !c.doc), 5000)).toBe(true);
    stop();
    failCurrent(); // a stopped watch is not started again
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(starts).toBe(2);
  });
});
