import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/log.ts';
import { randomToken } from '../../lib/random.ts';
import { keepWatching } from '../../lib/store/keep-watching.ts';
import type { Store } from '../../lib/store/store.ts';

// One owner per session. Each route instance (a process) has a random id and a lease: its
// document in `routeInstances`, written every lease/3 with an expiry one lease ahead, so it
// exists exactly while the instance is alive (or was, within a lease). A session's record
// names its owner and a fencing epoch. Only the owner runs the session's server; another
// instance relays to it while its lease holds, and takes the session over (epoch + 1) only
// once it lapsed. An owner that finds its epoch stale, or the record gone, ends its copy at once:
// it learns so from its one live query (`mcpSessions where owner == me`), and checks every
// session it holds when its own lease lapsed (a pause, a partition).
//
// One lease per instance rather than per session: renewals cost one write per lease/3 per
// instance, whatever the number of sessions it runs.

/** What a session record says about its owner. */
export interface OwnedRecord {
  [key: string]: unknown;
  owner?: string | null;
  epoch?: number;
}

export interface OwnershipOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly route: string;
  /** An instance not heard from for this long is gone: its sessions may be taken over. */
  readonly leaseMs: number;
  /** How long a session record lives after its last write (the route's idle_timeout). */
  readonly recordTtlMs: number;
  /** Called when a session this instance holds is no longer its own (deleted, or taken over): end the local copy. */
  readonly onLost: (sessionId: string, reason: string) => void;
}

export interface SessionOwnership {
  readonly instanceId: string;
  /** Settles once this instance's lease is written (writing it now if it never was): no record may name it before. */
  leased(): Promise<void>;
  /** A session started here, its record (naming this instance, epoch 1) written: it is ours. */
  adopt(sessionId: string): void;
  /** The epoch this instance holds the session at, if it does. */
  epochOf(sessionId: string): number | undefined;
  /** Rewrites the record of a session held here, only while it still is (never brings back a deleted one). False: not ours any more. */
  refresh(sessionId: string, record: OwnedRecord, expiresAt: number): Promise<boolean>;
  /** Whether the instance named is alive (its lease holds). */
  alive(instanceId: string): Promise<boolean>;
  /**
   * Takes the session over if its record still names the owner and epoch seen (a gone owner, or
   * none): the record then names this instance, epoch + 1. Undefined: someone else was quicker,
   * or the record is gone.
   */
  takeOver(sessionId: string, seen: OwnedRecord, expiresAt: number): Promise<OwnedRecord | undefined>;
  /** The session ended here: its record names no owner, so the next request anywhere takes it at once. */
  release(sessionId: string): void;
  /**
   * A session nobody may carry on ended here (legacy SSE: it lived as long as its stream, on this
   * instance): its record is deleted, so the other instances answer 404 at once.
   */
  forget(sessionId: string): void;
  close(): Promise<void>;
}

export function startOwnership(options: OwnershipOptions): SessionOwnership {
  const { store, clock, log, leaseMs } = options;
  const instanceId = randomToken(12);
  const held = new Map<string, number>();
  const releases = new Set<Promise<unknown>>();
  let renewedAt = 0;
  let closed = false;

  /** A record write on a session's way out: close() waits for it. */
  const settleLater = (write: Promise<unknown>) => {
    releases.add(write);
    void write.finally(() => releases.delete(write));
  };

  const lost = (id: string, reason: string) => {
    if (!held.delete(id)) return;
    log.info('session lost its owner here', { session: id, reason });
    options.onLost(id, reason);
  };

  const renew = async () => {
    const now = clock.now();
    await store.put('routeInstances', instanceId, { id: instanceId, route: options.route, renewedAt: now }, { expiresAt: now + leaseMs });
    // Our lease lapsed (a pause longer than a lease, the store unreachable): any session may
    // have been taken over meanwhile, and the query may not have said so yet. Ask each.
    if (renewedAt && now - renewedAt >= leaseMs) {
      log.warn('the instance lease lapsed: checking the sessions held here', { lapsedMs: now - renewedAt, sessions: held.size });
      await Promise.all(
        [...held].map(async ([id, epoch]) => {
          const record = await store.get<OwnedRecord>('mcpSessions', id);
          if (!record || record.owner !== instanceId || record.epoch !== epoch) lost(id, record ? 'taken over while this instance was away' : 'ended elsewhere');
        }),
      );
    }
    renewedAt = now;
  };
  let first = renew();
  first.catch((err: unknown) => log.error('could not write the instance lease', { error: String(err) }));
  const leased = () => (renewedAt ? Promise.resolve() : (first = first.catch(() => renew())));
  const heartbeat = setInterval(() => {
    if (!closed) renew().catch((err: unknown) => log.warn('could not renew the instance lease', { error: String(err) }));
  }, leaseMs / 3);
  heartbeat.unref();

  const stopWatch = keepWatching<OwnedRecord>(
    store,
    { collection: 'mcpSessions', field: 'owner', value: instanceId, what: 'session ownership' },
    (changes) => {
      for (const { id, doc } of changes) {
        const epoch = held.get(id);
        if (epoch === undefined) continue;
        if (!doc) lost(id, 'ended or taken over elsewhere');
        else if (doc.epoch !== epoch) lost(id, `stale epoch ${epoch} (now ${doc.epoch})`);
      }
    },
    log,
  );

  /** Rewrites a record only if `mutate` says so, given what it holds now: the fencing check and the write are one transaction. */
  const conditionalWrite = (id: string, mutate: (record: OwnedRecord) => OwnedRecord | undefined, expiresAt: number) =>
    store.transaction(async (tx) => {
      const record = await tx.get<OwnedRecord>('mcpSessions', id);
      if (!record) return undefined;
      const next = mutate(record);
      if (next) tx.put('mcpSessions', id, next, { expiresAt });
      return next;
    });

  return {
    instanceId,
    leased,
    adopt(id) {
      held.set(id, 1);
    },
    epochOf: (id) => held.get(id),
    async refresh(id, record, expiresAt) {
      const epoch = held.get(id);
      if (epoch === undefined) return false;
      const written = await conditionalWrite(id, (current) => (current.owner === instanceId && current.epoch === epoch ? { ...record, owner: instanceId, epoch } : undefined), expiresAt);
      if (!written) lost(id, 'no longer ours when its record was refreshed');
      return written !== undefined;
    },
    async alive(other) {
      if (other === instanceId) return !closed;
      return (await store.get('routeInstances', other)) !== undefined;
    },
    async takeOver(id, seen, expiresAt) {
      await leased();
      const taken = await conditionalWrite(
        id,
        (current) => ((current.owner ?? null) === (seen.owner ?? null) && (current.epoch ?? 0) === (seen.epoch ?? 0) ? { ...current, owner: instanceId, epoch: (current.epoch ?? 0) + 1, lastSeen: clock.now() } : undefined),
        expiresAt,
      );
      if (taken) {
        held.set(id, taken.epoch!);
        log.info('session taken over', { session: id, from: seen.owner ?? null, epoch: taken.epoch });
      }
      return taken;
    },
    release(id) {
      const epoch = held.get(id);
      if (epoch === undefined) return;
      held.delete(id);
      settleLater(conditionalWrite(id, (current) => (current.owner === instanceId && current.epoch === epoch ? { ...current, owner: null } : undefined), clock.now() + options.recordTtlMs).catch((err: unknown) => log.warn('could not release the session', { session: id, error: String(err) })));
    },
    forget(id) {
      // No fencing needed: such a record is never taken over, only this instance ever names itself in it.
      if (!held.delete(id)) return;
      settleLater(store.delete('mcpSessions', id).catch((err: unknown) => log.warn('could not forget the session', { session: id, error: String(err) })));
    },
    async close() {
      closed = true;
      clearInterval(heartbeat);
      await Promise.allSettled([...releases]);
      stopWatch();
      // Gone at once rather than within a lease: the other instances take over without waiting.
      await store.delete('routeInstances', instanceId).catch((err: unknown) => log.warn('could not remove the instance lease', { error: String(err) }));
    },
  };
}
