import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { storeContract } from './contract.ts';

storeContract('SQLite', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mcp-front-store-')), 'nested', 'mcp-front.sqlite');
  return { open: (clock) => openSqliteStore({ file, clock }), reopen: (clock) => openSqliteStore({ file, clock }) };
});

it('two SQLite stores on one file (two processes) redeem a code once between them', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mcp-front-store-')), 'shared.sqlite');
  const clock = new ManualClock(0);
  const [a, b] = await Promise.all([openSqliteStore({ file, clock }), openSqliteStore({ file, clock })]);
  await a.put('codes', 'c', { used: false });
  const redeem = (store: typeof a) =>
    store.transaction(async (tx) => {
      const code = await tx.get<{ used: boolean }>('codes', 'c');
      if (!code || code.used) return false;
      tx.put('codes', 'c', { used: true });
      return true;
    });
  const wins = await Promise.all(Array.from({ length: 20 }, (_, i) => redeem(i % 2 ? a : b)));
  expect(wins.filter(Boolean)).toHaveLength(1);
  await Promise.all([a.close(), b.close()]);
});
