import { afterAll, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../lib/clock.ts';
import { randomToken } from '../../lib/random.ts';
import { openFirestoreStore } from '../../lib/store/firestore-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { authorizeWithDevLogin, DEFAULT_REDIRECT_URI, formPost, hiddenField, pkcePair, refreshGrant, refreshTokens, send } from '../support/oauth-client.ts';
import { BEHAVIOUR_DEADLINES, startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { authorizationServer, ISSUER, type AuthorizationServer } from './support.ts';

// Grants and remembered consents end on their own: a grant refresh_ttl after its last refresh
// (when no refresh token of its lineage can be used any more), a consent consent_ttl after the
// Allow. On SQLite and on Firestore (emulator), where the same expiry backs the TTL policies.

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

const DEMO = `${ISSUER}/demo/mcp`;
const MINUTE = 60_000;

const firestore = async (clock: ManualClock): Promise<Store> => {
  if ('skip' in emulator) throw new Error(emulator.skip);
  process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
  return openFirestoreStore({ projectId: 'demo-mcp-front', clock, prefix: `l${randomToken(6)}_`, deadlines: BEHAVIOUR_DEADLINES });
};
const STORES: Array<[string, ((clock: ManualClock) => Promise<Store>) | undefined, boolean]> = [
  ['SQLite', undefined, false],
  ['Firestore', firestore, 'skip' in emulator],
];

const grantsOf = (as: AuthorizationServer, clientId: string) => as.store.find<{ revokedReason?: string }>('grants', 'clientId', clientId);
const consentsOf = (as: AuthorizationServer, clientId: string) => as.store.find('consents', 'clientId', clientId);

/** A new authorization by the same client and user, up to the end of sign-in: straight to a code, or to the consent page? */
async function afterSignIn(as: AuthorizationServer, clientId: string): Promise<string> {
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: DEFAULT_REDIRECT_URI, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', state: 'st', resource: DEMO });
  const start = await send(as, `/authorize?${query}`);
  const html = await (await send(as, start.headers.get('location')!)).text();
  const signedIn = await send(as, '/signin', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), email: 'ada@example.com' }, { origin: ISSUER }));
  const location = signedIn.headers.get('location') ?? `HTTP ${signedIn.status}`;
  if (location.startsWith(DEFAULT_REDIRECT_URI)) return 'code';
  if (location.startsWith(`${ISSUER}/consent?`)) return 'consent page';
  return location;
}

describe.each(STORES)('lifetimes on %s', (_name, store, skip) => {
  it.skipIf(skip)('a refresh keeps the grant alive; refresh_ttl after the last one it is gone', async () => {
    const as = await authorizationServer('', { store });
    const ttl = as.config.oauth.refreshTtl;
    const first = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    as.clock.advance(ttl - MINUTE);
    const second = await refreshTokens(as, first.clientId, first.refreshToken);
    as.clock.advance(ttl - MINUTE);
    // Older than refresh_ttl, but refreshed within it.
    expect(await grantsOf(as, first.clientId)).toHaveLength(1);
    as.clock.advance(MINUTE);
    expect(await grantsOf(as, first.clientId)).toEqual([]);
    const refused = await refreshGrant(as, first.clientId, second.refresh_token);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_grant');
  }, 60_000);

  it.skipIf(skip)('a revoked grant is kept while its refresh token could be presented, then is gone', async () => {
    const as = await authorizationServer('', { store });
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    expect((await send(as, '/revoke', formPost({ token: tokens.refreshToken, client_id: tokens.clientId }))).status).toBe(200);
    as.clock.advance(as.config.oauth.refreshTtl - 1);
    expect((await grantsOf(as, tokens.clientId)).map((g) => g.doc.revokedReason)).toEqual(['revoked by the client']);
    as.clock.advance(1);
    expect(await grantsOf(as, tokens.clientId)).toEqual([]);
  }, 60_000);

  it.skipIf(skip)('a remembered consent skips the page until consent_ttl after the Allow, then the page asks again', async () => {
    const as = await authorizationServer('', { store });
    const ttl = as.config.oauth.consentTtl;
    const { clientId } = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    as.clock.advance(ttl - MINUTE);
    expect(await afterSignIn(as, clientId)).toBe('code');
    expect(await consentsOf(as, clientId)).toHaveLength(1);
    as.clock.advance(MINUTE);
    expect(await consentsOf(as, clientId)).toEqual([]);
    expect(await afterSignIn(as, clientId)).toBe('consent page');
  }, 60_000);

  it.skipIf(skip)('consent_ttl is configurable', async () => {
    const as = await authorizationServer('  consent_ttl: 1h\n', { store });
    const { clientId } = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    as.clock.advance(60 * MINUTE);
    expect(await afterSignIn(as, clientId)).toBe('consent page');
  }, 60_000);
});
