import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Clock } from '../clock.ts';
import { StoreUnavailableError, type Collection, type Doc, type DocChange, type PutOptions, type Store, type Transaction } from './store.ts';

// The embedded store: one SQLite file (WAL, so several processes can share it), one table of
// JSON documents. Expiry is checked in every query against the injected clock; a sweep deletes
// expired rows at most once a minute.

const SWEEP_EVERY_MS = 60_000;
/** How often a store with live queries looks for commits by other connections (PRAGMA data_version: one cheap read). */
const WATCH_POLL_MS = 50;
const MAX_ATTEMPTS = 10;

/** Fields `find` queries, indexed so lookups stay O(log n). */
const INDEXED: ReadonlyArray<[Collection, string]> = [
  ['grants', 'userSub'],
  ['grants', 'clientId'],
  ['refreshTokens', 'grantId'],
  ['mcpSessions', 'userSub'],
  ['mcpSessions', 'owner'],
  ['mcpRelay', 'to'],
  ['keys', 'retired'],
  ['consents', 'userSub'],
  ['userCredentials', 'userSub'],
  ['userCredentials', 'email'],
];

export async function openSqliteStore(options: { file: string; clock: Clock }): Promise<Store> {
  if (options.file !== ':memory:') mkdirSync(dirname(options.file), { recursive: true });
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(options.file, { timeout: 5000 });
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
    db.exec('CREATE TABLE IF NOT EXISTS docs (collection TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, expires_at INTEGER, PRIMARY KEY (collection, id)) WITHOUT ROWID');
    for (const [collection, field] of INDEXED) {
      db.exec(`CREATE INDEX IF NOT EXISTS docs_${collection}_${field} ON docs (collection, json_extract(doc, '$.${field}')) WHERE collection = '${collection}'`);
    }
  } catch (err) {
    throw new StoreUnavailableError(`cannot open the SQLite store at ${options.file}: ${(err as Error).message}`, { cause: err });
  }
  return new SqliteStore(db, options.clock);
}

class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly #db: DatabaseSync;
  readonly #clock: Clock;
  readonly #select: StatementSync;
  readonly #upsert: StatementSync;
  readonly #insertUnlessLive: StatementSync;
  readonly #remove: StatementSync;
  /** Transactions run one at a time in this process; BEGIN IMMEDIATE orders them across processes. */
  #queue: Promise<unknown> = Promise.resolve();
  #lastSweep = 0;
  #closed = false;
  readonly #watches = new Set<SqliteWatch>();
  #poll?: NodeJS.Timeout;
  #dataVersion = -1;
  #refreshQueued = false;

  constructor(db: DatabaseSync, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#select = db.prepare('SELECT doc FROM docs WHERE collection = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)');
    this.#upsert = db.prepare('INSERT INTO docs (collection, id, doc, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (collection, id) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at');
    this.#insertUnlessLive = db.prepare(
      'INSERT INTO docs (collection, id, doc, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (collection, id) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at WHERE docs.expires_at IS NOT NULL AND docs.expires_at <= ?',
    );
    this.#remove = db.prepare('DELETE FROM docs WHERE collection = ? AND id = ?');
    this.#sweep();
  }

  async get<T extends Doc>(collection: Collection, id: string): Promise<T | undefined> {
    return this.#run(() => this.#read<T>(collection, id));
  }

  async put(collection: Collection, id: string, doc: Doc, options?: PutOptions): Promise<void> {
    await this.#run(() => void this.#upsert.run(collection, id, JSON.stringify(doc), options?.expiresAt ?? null));
    this.#changed();
    this.#sweepSometimes();
  }

  async create(collection: Collection, id: string, doc: Doc, options?: PutOptions): Promise<boolean> {
    const result = await this.#run(() => this.#insertUnlessLive.run(collection, id, JSON.stringify(doc), options?.expiresAt ?? null, this.#clock.now()));
    this.#changed();
    this.#sweepSometimes();
    return Number(result.changes) > 0;
  }

  async delete(collection: Collection, id: string): Promise<void> {
    await this.#run(() => void this.#remove.run(collection, id));
    this.#changed();
  }

  async find<T extends Doc>(collection: Collection, field: string, value: string | number | boolean, limit = 1000): Promise<Array<{ id: string; doc: T }>> {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(field)) throw new TypeError(`not a field name: ${field}`);
    // json_extract yields 1/0 for JSON booleans.
    const bound = typeof value === 'boolean' ? Number(value) : value;
    const rows = await this.#run(
      () =>
        this.#db
          .prepare(`SELECT id, doc FROM docs WHERE collection = ? AND json_extract(doc, '$.${field}') = ? AND (expires_at IS NULL OR expires_at > ?) LIMIT ?`)
          .all(collection, bound, this.#clock.now(), limit) as Array<{ id: string; doc: string }>,
    );
    return rows.map((row) => ({ id: row.id, doc: JSON.parse(row.doc) as T }));
  }

  async list<T extends Doc>(collection: Collection, limit = 1000): Promise<Array<{ id: string; doc: T }>> {
    const rows = await this.#run(
      () => this.#db.prepare('SELECT id, doc FROM docs WHERE collection = ? AND (expires_at IS NULL OR expires_at > ?) LIMIT ?').all(collection, this.#clock.now(), limit) as Array<{ id: string; doc: string }>,
    );
    return rows.map((row) => ({ id: row.id, doc: JSON.parse(row.doc) as T }));
  }

  transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
    // In this process transactions run one at a time. Across processes sharing the file they
    // are optimistic: the callback's reads are re-checked and its writes applied inside one
    // synchronous BEGIN IMMEDIATE…COMMIT, and a conflict runs the callback again (as Firestore does).
    const next = this.#queue.then(async () => {
      for (let attempt = 1; ; attempt++) {
        const { result, commit } = await this.#attempt(fn);
        if (this.#run(commit)) {
          this.#changed();
          return result;
        }
        if (attempt === MAX_ATTEMPTS) throw new StoreUnavailableError(`SQLite store: transaction still contended after ${MAX_ATTEMPTS} attempts`);
      }
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #attempt<R>(fn: (tx: Transaction) => Promise<R>): Promise<{ result: R; commit: () => boolean }> {
    const seen = new Map<string, { collection: Collection; id: string; text: string | undefined }>();
    const writes: Array<() => void> = [];
    const tx: Transaction = {
      get: async <T extends Doc>(collection: Collection, id: string) => {
        if (writes.length) throw new Error('store transaction: every read must come before the first write');
        const text = this.#run(() => this.#readText(collection, id));
        seen.set(`${collection}/${id}`, { collection, id, text });
        return text === undefined ? undefined : (JSON.parse(text) as T);
      },
      put: (collection, id, doc, options) => {
        const text = JSON.stringify(doc);
        writes.push(() => this.#upsert.run(collection, id, text, options?.expiresAt ?? null));
      },
      delete: (collection, id) => {
        writes.push(() => this.#remove.run(collection, id));
      },
    };
    const result = await fn(tx);
    const commit = () => {
      if (!writes.length) return true;
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        for (const read of seen.values()) {
          if (this.#readText(read.collection, read.id) !== read.text) {
            this.#db.exec('ROLLBACK');
            return false;
          }
        }
        for (const write of writes) write();
        this.#db.exec('COMMIT');
        return true;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    };
    return { result, commit };
  }

  watch<T extends Doc>(collection: Collection, field: string, value: string | number | boolean, listener: (changes: ReadonlyArray<DocChange<T>>) => void): () => void {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(field)) throw new TypeError(`not a field name: ${field}`);
    const query = this.#db.prepare(`SELECT id, doc, expires_at FROM docs WHERE collection = ? AND json_extract(doc, '$.${field}') = ? AND (expires_at IS NULL OR expires_at > ?)`);
    const watch: SqliteWatch = { collection, value: typeof value === 'boolean' ? Number(value) : value, query, shown: new Map(), delivered: false, nextExpiry: Infinity, listener: listener as SqliteWatch['listener'] };
    this.#watches.add(watch);
    this.#poll ??= setInterval(() => this.#pollOthers(), WATCH_POLL_MS).unref();
    // The first delivery (what is there now) comes asynchronously, as every later one does.
    setImmediate(() => this.#watches.has(watch) && this.#evaluate(watch));
    return () => {
      this.#watches.delete(watch);
      if (!this.#watches.size && this.#poll) {
        clearInterval(this.#poll);
        this.#poll = undefined;
      }
    };
  }

  /** This connection wrote: every live query looks again, once, after the current turn. */
  #changed(): void {
    if (!this.#watches.size || this.#refreshQueued) return;
    this.#refreshQueued = true;
    setImmediate(() => {
      this.#refreshQueued = false;
      for (const watch of this.#watches) this.#evaluate(watch);
    });
  }

  /** Another connection (another process) committed, or a shown document expired: look again. */
  #pollOthers(): void {
    if (this.#closed) return;
    const version = (this.#db.prepare('PRAGMA data_version').get() as { data_version: number }).data_version;
    const moved = version !== this.#dataVersion;
    this.#dataVersion = version;
    const now = this.#clock.now();
    for (const watch of this.#watches) if (moved || watch.nextExpiry <= now) this.#evaluate(watch);
  }

  #evaluate(watch: SqliteWatch): void {
    if (this.#closed) return;
    const rows = watch.query.all(watch.collection, watch.value, this.#clock.now()) as Array<{ id: string; doc: string; expires_at: number | null }>;
    const changes: DocChange[] = [];
    const seen = new Set<string>();
    watch.nextExpiry = Infinity;
    for (const row of rows) {
      seen.add(row.id);
      if (row.expires_at !== null) watch.nextExpiry = Math.min(watch.nextExpiry, row.expires_at);
      if (watch.shown.get(row.id) === row.doc) continue;
      watch.shown.set(row.id, row.doc);
      changes.push({ id: row.id, doc: JSON.parse(row.doc) as Doc });
    }
    for (const id of watch.shown.keys()) {
      if (seen.has(id)) continue;
      watch.shown.delete(id);
      changes.push({ id, doc: undefined });
    }
    // The first evaluation is delivered even when empty: the listener learns what is live now.
    if (changes.length || !watch.delivered) {
      watch.delivered = true;
      watch.listener(changes);
    }
  }

  async ping(): Promise<void> {
    this.#run(() => this.#db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watches.clear();
    clearInterval(this.#poll);
    await this.#queue;
    this.#db.close();
  }

  #read<T extends Doc>(collection: Collection, id: string): T | undefined {
    const text = this.#readText(collection, id);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  #readText(collection: Collection, id: string): string | undefined {
    const row = this.#select.get(collection, id, this.#clock.now()) as { doc: string } | undefined;
    return row?.doc;
  }

  /** SQLite errors (busy past the timeout, I/O, a closed database) become StoreUnavailableError. */
  #run<R>(op: () => R): R {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    try {
      return op();
    } catch (err) {
      if (err instanceof Error && 'code' in err && String((err as { code: unknown }).code).startsWith('ERR_SQLITE')) {
        throw new StoreUnavailableError(`SQLite store: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  #sweep(): void {
    this.#lastSweep = this.#clock.now();
    this.#db.prepare('DELETE FROM docs WHERE expires_at IS NOT NULL AND expires_at <= ?').run(this.#lastSweep);
  }

  #sweepSometimes(): void {
    if (this.#clock.now() - this.#lastSweep >= SWEEP_EVERY_MS && !this.#db.isTransaction) this.#run(() => this.#sweep());
  }
}

/** One live query of a SQLite store: what it last reported, to report only what changed. */
interface SqliteWatch {
  readonly collection: Collection;
  readonly value: string | number;
  readonly query: StatementSync;
  /** id → the JSON text last reported. */
  readonly shown: Map<string, string>;
  /** Whether the listener got its first delivery (made even when empty). */
  delivered: boolean;
  /** The earliest expiry among the documents shown: the query looks again then. */
  nextExpiry: number;
  readonly listener: (changes: ReadonlyArray<DocChange>) => void;
}
