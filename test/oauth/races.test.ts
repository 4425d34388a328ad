import { createHash, randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.ts';
import { issueCode, redeemCode, rotateRefreshToken, type IssuedGrant } from '../../lib/oauth/grants.ts';
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

// What these prove is an outcome, not a speed: exactly one token, and every other caller gets a
// clean error. On the emulator, 50 transactions on one document wait on each other's locks and
// back off; on a loaded two-core machine some run past the store's deadline and are told 503
// (Retry-After), which is a clean error too, provided the client's retry then gets the one token
// or finds the code spent. A hang is caught by the test's own timeout.

type Outcome = 'token' | 'invalid_grant' | 'unavailable';

/** What the token endpoint answers for a settled call: a token, a 400 invalid_grant RFC 6749 §5.2 body, or a 503 with Retry-After. Anything else (a 500) fails the test. */
function outcomeOf(result: PromiseSettledResult<IssuedGrant>): Outcome {
  if (result.status === 'fulfilled') return 'token';
  if (result.reason instanceof OAuthError && result.reason.code === 'invalid_grant') return 'invalid_grant';
  if (result.reason instanceof StoreUnavailableError) return 'unavailable';
  throw result.reason;
}

/** A client honouring Retry-After: calls again while the store answers 503 (a cold emulator's first calls are slow too). */
async function retrying<T>(call: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || attempt === attempts) throw err;
    }
  }
}

const count = (outcomes: Outcome[], kind: Outcome) => outcomes.filter((o) => o === kind).length;

describe.each(stores)('races on %s', (_name, open) => {
  async function newCode(store: Store, clock: ManualClock) {
    const verifier = randomBytes(32).toString('base64url');
    const code = await retrying(() =>
      issueCode(store, clock, 60_000, {
        clientId: 'c1',
        redirectUri: 'http://127.0.0.1:1/cb',
        codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
        resource: 'http://127.0.0.1:9/demo/mcp',
        scope: 'mcp',
        userSub: 'dev:ada@example.com',
        email: 'ada@example.com',
      }),
    );
    return { code, verifier };
  }

  it('50 concurrent redemptions of one code give exactly one token; every other caller gets a clean error', async () => {
    const clock = new ManualClock();
    const store = await open(clock);
    const { code, verifier } = await newCode(store, clock);
    const redeem = () => redeemCode(store, clock, HOUR, { code, clientId: 'c1', redirectUri: 'http://127.0.0.1:1/cb', verifier });
    const outcomes = (await Promise.allSettled(Array.from({ length: 50 }, redeem))).map(outcomeOf);
    expect(count(outcomes, 'token')).toBeLessThanOrEqual(1);
    // The callers told 503 retry: never a second token. If every caller was told 503, the retry
    // gets the token, or finds the code spent (a commit that landed after its caller's deadline).
    const [retry] = await Promise.allSettled([retrying(redeem)]);
    const retried = outcomeOf(retry!);
    if (count(outcomes, 'token') === 1) expect(retried).toBe('invalid_grant');
    else expect(['token', 'invalid_grant']).toContain(retried);
    if (count(outcomes, 'unavailable') === 0) expect(count(outcomes, 'token')).toBe(1);
    await store.close();
  }, 120_000);

  it('20 concurrent refreshes of one refresh token leave exactly one live lineage; a reuse after the grace window revokes the grant', async () => {
    const clock = new ManualClock();
    const store = await open(clock);
    const first = await retrying(async () => {
      const { code, verifier } = await newCode(store, clock);
      return redeemCode(store, clock, HOUR, { code, clientId: 'c1', redirectUri: 'http://127.0.0.1:1/cb', verifier });
    });
    const options = { refreshTtlMs: HOUR, graceMs: 60_000 };
    const refresh = (token: string) => rotateRefreshToken(store, clock, options, { token, clientId: 'c1' });
    // A client retrying one refresh 20 times at once: all within the grace window.
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => refresh(first.refreshToken)));
    const outcomes = results.map(outcomeOf);
    const issued = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.refreshToken] : []));
    // Every caller told 503: the client's retry, still within the grace window, gets a token or a clean refusal.
    if (issued.length === 0) {
      const [retry] = await Promise.allSettled([retrying(() => refresh(first.refreshToken))]);
      if (outcomeOf(retry!) === 'token') issued.push((retry as PromiseFulfilledResult<IssuedGrant>).value.refreshToken);
    }
    const grant = () => retrying(() => store.get<{ generation: number; revokedAt?: number }>('grants', first.grantId));
    // Exactly one lineage is live: one refresh token of the grant's current generation exists.
    const { generation } = (await grant())!;
    const newest = (await retrying(() => store.find<{ generation: number }>('refreshTokens', 'grantId', first.grantId))).filter((r) => r.doc.generation === generation);
    expect(newest).toHaveLength(1);
    // Of everything handed out, that one alone is good, unless its caller was told 503.
    const usable = issued.filter((token) => sha256(token) === newest[0]!.id);
    expect(usable.length).toBeLessThanOrEqual(1);
    if (count(outcomes, 'unavailable') === 0) expect(usable).toHaveLength(1);
    clock.advance(61_000);
    // The original token, reused after the grace window: the whole grant is revoked.
    await expect(retrying(() => refresh(first.refreshToken))).rejects.toThrow(/revoked/);
    expect((await grant())!.revokedAt).toBeDefined();
    if (usable[0]) await expect(retrying(() => refresh(usable[0]!))).rejects.toThrow(/revoked/);
    await store.close();
  }, 120_000);
});
