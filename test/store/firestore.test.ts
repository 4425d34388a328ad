import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.ts';
import { openFirestoreStore } from '../../lib/store/firestore-store.ts';
import { randomToken } from '../../lib/random.ts';
import { BEHAVIOUR_DEADLINES, startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { expectUnavailable, storeContract } from './contract.ts';

// The same contract against the Firestore emulator of the Google Cloud SDK. Each store gets its
// own collection prefix, so tests don't see each other's documents.

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

describe.skipIf('skip' in emulator)('Firestore (emulator)', () => {
  if ('skip' in emulator) return;
  process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
  storeContract('Firestore', () => {
    const prefix = `t${randomToken(6)}_`;
    // The deadlines have their own test below.
    const open = (clock: ManualClock) => openFirestoreStore({ projectId: 'demo-mcp-front', clock, prefix, deadlines: BEHAVIOUR_DEADLINES });
    return { open, reopen: open };
  });

  it('answers StoreUnavailableError, quickly, when the emulator is down', async () => {
    const clock = new ManualClock(0);
    const store = await openFirestoreStore({ projectId: 'demo-mcp-front', clock, prefix: `t${randomToken(6)}_` });
    await store.put('clients', 'c', { ok: true });
    await emulator.pause();
    try {
      await expectUnavailable(() => store.get('clients', 'c'));
      await expectUnavailable(() => store.transaction(async (tx) => tx.put('clients', 'd', { ok: true })));
    } finally {
      await emulator.resume();
    }
    // The emulator keeps data in memory, so it comes back empty; what matters is that the same
    // store object works again without a restart (gRPC reconnects with backoff: bounded wait).
    for (let i = 0; i < 60; i++) {
      const ok = await store.ping().then(() => true, () => false);
      if (ok) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await store.put('clients', 'e', { ok: true });
    expect(await store.get('clients', 'e')).toEqual({ ok: true });
    // Not asserted: whether 'd' landed. A commit RPC queued while the emulator was down can be
    // delivered when it returns, after the caller was told "unavailable" (whole, never partial).
    await store.close();
  }, 120_000);
});
