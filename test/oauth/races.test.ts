import { createHash, randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.ts';
import { issueCode, redeemCode, rotateRefreshToken } from '../../lib/oauth/grants.ts';
import { OAuthError } from '../../lib/oauth/errors.ts';
import { openFirestoreStore } from '../../lib/store/firestore-store.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { StoreUnavailableError } from '../../lib/store/store.ts';
import type { Store } from '../../lib/store/store.ts';
import { randomToken, sha256 } from '../../lib/random.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';

// Races on both stores: concurrent redemptions of one code, concurrent refreshes of one refresh
// token, and a late reuse. The store transactions are what make these come out right.

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

const stores: Array<[string, (clock: ManualClock) => Promise<Store>]> = [['SQLite', (clock) => openSqliteStore({ file: ':memory:', clock })]];
if (!('skip' in emulator)) {
  process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
  stores.push(['Firestore (emulator)', (clock) => openFirestoreStore({ projectId: 'demo-mcp-front', clock, prefix: `r${randomToken(6)}_` })]);
}

const HOUR = 3_600_000;

describe.each(stores)('races on %s', (_name, open) => {
  async function newCode(store: Store, clock: ManualClock) {
    const verifier = randomBytes(32).toString('base64url');
    const code = await issueCode(store, clock, 60_000, {
      clientId: 'c1',
      redirectUri: 'http://127.0.0.1:1/cb',
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      resource: 'http://127.0.0.1:9/demo/mcp',
      scope: 'mcp',
      userSub: 'dev:ada@example.com',
      email: 'ada@example.com',
    });
    return { code, verifier };
  }

  it('50 concurrent redemptions of one code give exactly one token', async () => {
    const clock = new ManualClock();
    const store = await open(clock);
    const { code, verifier } = await newCode(store, clock);
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => redeemCode(store, clock, HOUR, { code, clientId: 'c1', redirectUri: 'http://127.0.0.1:1/cb', verifier })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    // Losers learn the code is spent; under heavy contention (the emulator on a loaded machine)
    // some instead give up at the store deadline: a 503 for them, never a second token.
    for (const r of results) if (r.status === 'rejected') expect(['invalid_grant', 'STORE_UNAVAILABLE']).toContain((r.reason as OAuthError | StoreUnavailableError).code);
    await store.close();
  }, 120_000);

  it('20 concurrent refreshes of one refresh token leave exactly one live lineage; a reuse after the grace window revokes the grant', async () => {
    const clock = new ManualClock();
    const store = await open(clock);
    const { code, verifier } = await newCode(store, clock);
    const first = await redeemCode(store, clock, HOUR, { code, clientId: 'c1', redirectUri: 'http://127.0.0.1:1/cb', verifier });
    const options = { refreshTtlMs: HOUR, graceMs: 60_000 };
    // A client retrying one refresh 20 times at once: all within the grace window.
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => rotateRefreshToken(store, clock, options, { token: first.refreshToken, clientId: 'c1' })));
    for (const r of results) if (r.status === 'rejected') expect(['invalid_grant', 'STORE_UNAVAILABLE']).toContain((r.reason as OAuthError | StoreUnavailableError).code);
    const issued = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.refreshToken] : []));
    expect(issued.length).toBeGreaterThan(0);
    // Of everything handed out, exactly one refresh token is still good: the newest generation.
    clock.advance(61_000);
    const usable = [];
    for (const token of issued) {
      const probe = await store.transaction(async (tx) => {
        const record = await tx.get<{ generation: number; grantId: string }>('refreshTokens', sha256(token));
        const grant = record ? await tx.get<{ generation: number }>('grants', record.grantId) : undefined;
        return record && grant && record.generation === grant.generation;
      });
      if (probe) usable.push(token);
    }
    expect(usable).toHaveLength(1);
    // The original token, reused after the grace window: the whole grant is revoked.
    await expect(rotateRefreshToken(store, clock, options, { token: first.refreshToken, clientId: 'c1' })).rejects.toThrow(/revoked/);
    await expect(rotateRefreshToken(store, clock, options, { token: usable[0]!, clientId: 'c1' })).rejects.toThrow(/revoked/);
    await store.close();
  }, 120_000);
});
