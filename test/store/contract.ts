import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.ts';
import { COLLECTIONS, StoreUnavailableError, type Store } from '../../lib/store/store.ts';

// One contract, every Store: what lib/oauth and lib/mcp rely on. Time is a ManualClock, so
// expiry needs no sleeps.

export interface StoreFactory {
  /** A fresh, empty store (its own namespace) on the given clock. */
  open(clock: ManualClock): Promise<Store>;
  /** The same namespace again, as a restarted process would open it. */
  reopen(clock: ManualClock): Promise<Store>;
}

export function storeContract(name: string, factory: () => StoreFactory): void {
  describe(`${name} store contract`, () => {
    const setup = async () => {
      const clock = new ManualClock(1_700_000_000_000);
      const f = factory();
      return { clock, store: await f.open(clock), f };
    };

    it('round-trips nested JSON and answers undefined for a missing document', async () => {
      const { store } = await setup();
      const doc = { a: 1, nested: { list: [1, 'two', { three: true }], nil: null }, text: 'ünïcødé ✓' };
      await store.put('clients', 'c1', doc);
      expect(await store.get('clients', 'c1')).toEqual(doc);
      expect(await store.get('clients', 'missing')).toBeUndefined();
      await store.close();
    });

    it('create refuses a live document and succeeds again once it expired', async () => {
      const { store, clock } = await setup();
      expect(await store.create('codes', 'k', { n: 1 }, { expiresAt: clock.now() + 1000 })).toBe(true);
      expect(await store.create('codes', 'k', { n: 2 })).toBe(false);
      expect(await store.get('codes', 'k')).toEqual({ n: 1 });
      clock.advance(1000);
      expect(await store.create('codes', 'k', { n: 3 })).toBe(true);
      expect(await store.get('codes', 'k')).toEqual({ n: 3 });
      await store.close();
    });

    it('hides expired documents from get and find at once', async () => {
      const { store, clock } = await setup();
      await store.put('grants', 'g1', { userSub: 'u1' }, { expiresAt: clock.now() + 60_000 });
      await store.put('grants', 'g2', { userSub: 'u1' });
      expect((await store.find('grants', 'userSub', 'u1')).map((r) => r.id).sort()).toEqual(['g1', 'g2']);
      clock.advance(60_000);
      expect(await store.get('grants', 'g1')).toBeUndefined();
      expect((await store.find('grants', 'userSub', 'u1')).map((r) => r.id)).toEqual(['g2']);
      await store.close();
    });

    it('finds by a string, number or boolean field, honouring the limit', async () => {
      const { store } = await setup();
      for (let i = 0; i < 5; i++) await store.put('refreshTokens', `t${i}`, { grantId: i < 3 ? 'a' : 'b', generation: i, retired: i % 2 === 0 });
      expect(await store.find('refreshTokens', 'grantId', 'a')).toHaveLength(3);
      expect(await store.find('refreshTokens', 'grantId', 'a', 2)).toHaveLength(2);
      expect((await store.find('refreshTokens', 'generation', 4)).map((r) => r.id)).toEqual(['t4']);
      expect((await store.find('refreshTokens', 'retired', true)).map((r) => r.id).sort()).toEqual(['t0', 't2', 't4']);
      await store.close();
    });

    it('every collection keeps, finds and lists its documents (the users\' own credentials included)', async () => {
      const { store } = await setup();
      for (const collection of COLLECTIONS) await store.put(collection, 'doc-1', { collection, userSub: 'u1', email: 'ada@example.com' });
      for (const collection of COLLECTIONS) {
        expect(await store.get(collection, 'doc-1')).toEqual({ collection, userSub: 'u1', email: 'ada@example.com' });
        expect((await store.list(collection)).map((r) => r.id)).toEqual(['doc-1']);
      }
      await store.put('userCredentials', 'doc-2', { userSub: 'u2', email: 'bob@example.com', route: '/svc', sealed: 'v1.x' });
      expect((await store.find('userCredentials', 'userSub', 'u2')).map((r) => r.id)).toEqual(['doc-2']);
      expect((await store.find('userCredentials', 'email', 'ada@example.com')).map((r) => r.id)).toEqual(['doc-1']);
      await store.close();
    });

    it('lists live documents only, honouring the limit', async () => {
      const { store, clock } = await setup();
      await store.put('grants', 'a', { n: 1 });
      await store.put('grants', 'b', { n: 2 }, { expiresAt: clock.now() + 1000 });
      await store.put('grants', 'c', { n: 3 });
      await store.put('clients', 'other', { n: 4 });
      expect((await store.list('grants')).map((r) => r.id).sort()).toEqual(['a', 'b', 'c']);
      expect(await store.list('grants', 2)).toHaveLength(2);
      clock.advance(1000);
      expect((await store.list<{ n: number }>('grants')).map((r) => r.doc.n).sort()).toEqual([1, 3]);
      expect(await store.list('codes')).toEqual([]);
      await store.close();
    });

    it('deletes', async () => {
      const { store } = await setup();
      await store.put('consents', 'x', { ok: true });
      await store.delete('consents', 'x');
      await store.delete('consents', 'never-existed');
      expect(await store.get('consents', 'x')).toBeUndefined();
      await store.close();
    });

    it('a transaction that throws after writing leaves nothing written', async () => {
      const { store } = await setup();
      await store.put('grants', 'g', { state: 'before' });
      await expect(
        store.transaction(async (tx) => {
          await tx.get('grants', 'g');
          tx.put('grants', 'g', { state: 'after' });
          tx.put('refreshTokens', 'r', { grantId: 'g' });
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await store.get('grants', 'g')).toEqual({ state: 'before' });
      expect(await store.get('refreshTokens', 'r')).toBeUndefined();
      await store.close();
    });

    // 20, not more: one Firestore document sustains about one write a second, so a hotter
    // document is a design error, not a store contract.
    it('20 concurrent read-then-write transactions on one counter lose no update', async () => {
      const { store } = await setup();
      await store.put('rateBuckets', 'counter', { n: 0 });
      await Promise.all(
        Array.from({ length: 20 }, () =>
          store.transaction(async (tx) => {
            const doc = await tx.get<{ n: number }>('rateBuckets', 'counter');
            tx.put('rateBuckets', 'counter', { n: doc!.n + 1 });
          }),
        ),
      );
      expect(await store.get('rateBuckets', 'counter')).toEqual({ n: 20 });
      await store.close();
    }, 120_000);

    it('50 concurrent redemptions of one code: exactly one wins', async () => {
      const { store } = await setup();
      await store.put('codes', 'c', { used: false });
      const wins = await Promise.all(
        Array.from({ length: 50 }, () =>
          store.transaction(async (tx) => {
            const code = await tx.get<{ used: boolean }>('codes', 'c');
            if (!code || code.used) return false;
            tx.put('codes', 'c', { used: true });
            return true;
          }),
        ),
      );
      expect(wins.filter(Boolean)).toHaveLength(1);
      await store.close();
    }, 120_000);

    /** Collects a watch's deliveries; `until` waits for a condition on them. */
    const watching = (store: Store, field: string, value: string) => {
      const seen: Array<{ id: string; doc: unknown }> = [];
      const stop = store.watch('mcpRelay', field, value, (changes) => seen.push(...changes.map((c) => ({ id: c.id, doc: c.doc }))));
      const until = async (ok: () => boolean) => {
        for (let i = 0; i < 400 && !ok(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
        expect(ok()).toBe(true);
      };
      return { seen, stop, until };
    };

    it('watch reports what matches, then each add, change and delete in order, and nothing once stopped', async () => {
      const { store } = await setup();
      await store.put('mcpRelay', 'before', { to: 'a', n: 0 });
      await store.put('mcpRelay', 'elsewhere', { to: 'b', n: 0 });
      const w = watching(store, 'to', 'a');
      await w.until(() => w.seen.length === 1);
      expect(w.seen).toEqual([{ id: 'before', doc: { to: 'a', n: 0 } }]);
      await store.put('mcpRelay', 'm1', { to: 'a', n: 1 });
      await w.until(() => w.seen.some((c) => c.id === 'm1'));
      await store.put('mcpRelay', 'm1', { to: 'a', n: 2 });
      await w.until(() => w.seen.some((c) => c.id === 'm1' && (c.doc as { n: number } | undefined)?.n === 2));
      await store.delete('mcpRelay', 'm1');
      // A document that stops matching leaves the query as a deleted one does.
      await store.put('mcpRelay', 'before', { to: 'b', n: 0 });
      await w.until(() => w.seen.filter((c) => c.doc === undefined).length === 2);
      const m1 = w.seen.filter((c) => c.id === 'm1').map((c) => (c.doc as { n: number } | undefined)?.n ?? 'gone');
      expect(m1).toEqual([1, 2, 'gone']);
      expect(w.seen.filter((c) => c.id === 'before').at(-1)).toEqual({ id: 'before', doc: undefined });
      expect(w.seen.some((c) => c.id === 'elsewhere')).toBe(false);
      w.stop();
      const count = w.seen.length;
      await store.put('mcpRelay', 'late', { to: 'a', n: 3 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(w.seen).toHaveLength(count);
      await store.close();
    }, 30_000);

    it("watch sees another connection's writes (another process on the same store)", async () => {
      const { store, clock, f } = await setup();
      const other = await f.reopen(clock);
      const w = watching(store, 'to', 'x');
      await new Promise((resolve) => setTimeout(resolve, 100));
      await other.put('mcpRelay', 'from-other', { to: 'x', text: 'hello' });
      await w.until(() => w.seen.some((c) => c.id === 'from-other'));
      await other.delete('mcpRelay', 'from-other');
      await w.until(() => w.seen.some((c) => c.id === 'from-other' && c.doc === undefined));
      w.stop();
      await other.close();
      await store.close();
    }, 30_000);

    it('documents survive closing and reopening the store', async () => {
      const { store, clock, f } = await setup();
      await store.put('keys', 'current', { kid: 'k1' });
      await store.close();
      const again = await f.reopen(clock);
      expect(await again.get('keys', 'current')).toEqual({ kid: 'k1' });
      await again.ping();
      await again.close();
    });
  });
}

/** A store whose backend is gone answers StoreUnavailableError, not a hang or a raw driver error. */
export async function expectUnavailable(operation: () => Promise<unknown>): Promise<void> {
  await expect(operation()).rejects.toBeInstanceOf(StoreUnavailableError);
}
