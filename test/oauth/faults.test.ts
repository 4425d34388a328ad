import { afterAll, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../lib/clock.ts';
import { randomToken, sha256 } from '../../lib/random.ts';
import { openFirestoreStore } from '../../lib/store/firestore-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { authorizeWithDevLogin, obtainCode, redeemCode, refreshOutcome } from '../support/oauth-client.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { authorizationServer, ISSUER } from './support.ts';

// Firestore stops answering in the middle of the OAuth flow: the emulator is frozen (SIGSTOP,
// data intact, every RPC hangs, like a partition) right as /token opens its transaction, after
// the client was authenticated. The client gets a clear 503 with Retry-After; after the thaw
// the store holds each grant whole or not at all, never twice, and the flow works again.

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

const DEMO = `${ISSUER}/demo/mcp`;

interface GrantDoc {
  [key: string]: unknown;
  clientId: string;
  generation: number;
  revokedAt?: number;
}

describe.skipIf('skip' in emulator)('Firestore stops mid-flow (emulator frozen)', () => {
  if ('skip' in emulator) return;
  process.env.FIRESTORE_EMULATOR_HOST = emulator.host;

  it('redemption and refresh get 503 with Retry-After; afterwards every grant is whole and single, and both complete', async () => {
    let armed = 0;
    // The store as the AS sees it, with a trap: the next `armed` transactions freeze the emulator first.
    const trapped = (real: Store): Store =>
      new Proxy(real, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (prop === 'transaction' && typeof value === 'function') {
            return (...args: unknown[]) => {
              if (armed > 0) {
                armed--;
                emulator.freeze();
              }
              return (value as (...a: unknown[]) => unknown).apply(target, args);
            };
          }
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    // Deadlines of 10 s, not 5: until the trap springs, a call must not fail for being slow (a
    // cold emulator on a loaded machine); the trap is a freeze, which outlasts any deadline.
    const open = (clock: ManualClock) => openFirestoreStore({ projectId: 'demo-mcp-front', clock, prefix: `f${randomToken(6)}_`, deadlines: { callMs: 10_000, transactionMs: 10_000 } });
    const as = await authorizationServer('', { store: async (clock: ManualClock) => trapped(await open(clock)) });

    const first = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const pending = await obtainCode(as, { email: 'ada@example.com', resource: DEMO });

    armed = 2;
    let redeemed: Response;
    let refreshed: Awaited<ReturnType<typeof refreshOutcome>>;
    try {
      [redeemed, refreshed] = await Promise.all([redeemCode(as, pending), refreshOutcome(as, first.clientId, first.refreshToken)]);
    } finally {
      emulator.thaw();
    }
    for (const [status, retryAfter, body] of [
      [redeemed.status, redeemed.headers.get('retry-after'), (await redeemed.json()) as { error?: string }],
      [refreshed.status, refreshed.retryAfter, refreshed.body],
    ] as const) {
      expect(status).toBe(503);
      expect(retryAfter).toBe('5');
      expect(body.error).toBe('temporarily_unavailable');
    }

    // Read the store: a transaction that was cut off may have landed whole after the thaw (its
    // commit was already queued), or not at all; never in part.
    const grantsOf = async (clientId: string) => (await as.store.find<GrantDoc>('grants', 'clientId', clientId)).map((g) => g.id);
    const code = await as.store.get<{ grantId?: string }>('codes', sha256(pending.code));
    const pendingGrants = await grantsOf(pending.clientId);
    if (code?.grantId) {
      expect(pendingGrants).toEqual([code.grantId]);
      expect((await as.store.find('refreshTokens', 'grantId', code.grantId)).length).toBe(1);
    } else {
      expect(pendingGrants).toEqual([]);
    }
    const [firstGrantId] = await grantsOf(first.clientId);
    const firstGrant = await as.store.get<GrantDoc>('grants', firstGrantId!);
    expect((await as.store.find('refreshTokens', 'grantId', firstGrantId!)).length).toBe(firstGrant!.generation);

    // The client retries. The code: it completes, or (if the cut-off redemption had landed) it
    // is a replay, refused. The refresh token: it completes either way (a late rotation leaves it
    // inside the grace window).
    const retry = await redeemCode(as, pending);
    expect(retry.status).toBe(code?.grantId ? 400 : 200);
    expect((await grantsOf(pending.clientId)).length).toBe(1);
    const again = await refreshOutcome(as, first.clientId, first.refreshToken);
    expect(again.status).toBe(200);
    const next = await refreshOutcome(as, first.clientId, again.body.refresh_token!);
    expect(next.status).toBe(200);
    expect((await grantsOf(first.clientId)).length).toBe(1);

    // And a new sign-in works end to end.
    expect((await authorizeWithDevLogin(as, { email: 'grace@example.com', resource: DEMO })).accessToken).toBeTruthy();
  }, 120_000);
});
