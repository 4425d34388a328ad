import { describe, expect, it } from 'vitest';
import { openUserCredential, sealUserCredential, unsealUserCredential, type UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { credentialKeyRotation, generateCredentialKey, MAX_CREDENTIAL_KEYS, parseCredentialKeys, type CredentialKeys } from '../../lib/tokens/credential-keys.ts';
import { routeCredentialOpener, sealForRoute } from '../../lib/tokens/route-credential.ts';

// The credential keys' secrets as key sets (lib/tokens/credential-keys.ts): one key as before, or
// a few comma-separated, newest first; the first seals, each opens. What rotation relies on: a
// value sealed under the old key still opens once the set is "new,old", and one sealed under the
// new key does not open where only the old key is held.

const VARIABLE = 'MCP_FRONT_SEALING_KEY';
const text = (key: Uint8Array) => Buffer.from(key).toString('base64url');

describe('a credential key secret', () => {
  it('one key, as every secret holds it today, is a set of that key (a trailing newline is fine)', () => {
    const key = generateCredentialKey();
    expect(parseCredentialKeys(key, VARIABLE).map(text)).toEqual([key]);
    expect(parseCredentialKeys(`${key}\n`, VARIABLE).map(text)).toEqual([key]);
  });

  it(`several, comma-separated, newest first, up to ${MAX_CREDENTIAL_KEYS}`, () => {
    const keys = [generateCredentialKey(), generateCredentialKey(), generateCredentialKey()];
    expect(parseCredentialKeys(keys.join(','), VARIABLE).map(text)).toEqual(keys);
    expect(parseCredentialKeys(` ${keys[0]} , ${keys[1]}\n`, VARIABLE).map(text)).toEqual(keys.slice(0, 2));
  });

  it('a malformed key anywhere in the set is refused with the message naming the variable', () => {
    const key = generateCredentialKey();
    for (const bad of ['', 'short', `${key},`, `,${key}`, `${key},${key.slice(1)}`, `${key};${generateCredentialKey()}`, `${key}=`]) {
      expect(() => parseCredentialKeys(bad, VARIABLE), bad).toThrow('MCP_FRONT_SEALING_KEY must be 32 bytes, base64url (mcp-front deploy creates it)');
    }
  });

  it(`more than ${MAX_CREDENTIAL_KEYS} keys, or one key twice, is refused`, () => {
    const four = Array.from({ length: MAX_CREDENTIAL_KEYS + 1 }, generateCredentialKey).join(',');
    expect(() => parseCredentialKeys(four, VARIABLE)).toThrow(`MCP_FRONT_SEALING_KEY holds ${MAX_CREDENTIAL_KEYS + 1} keys, at most ${MAX_CREDENTIAL_KEYS}`);
    const key = generateCredentialKey();
    expect(() => parseCredentialKeys(`${key},${key}`, VARIABLE)).toThrow('MCP_FRONT_SEALING_KEY holds the same key twice');
  });
});

describe('keygen --credential-key transitions', () => {
  const old = generateCredentialKey();

  it('--rotate puts a new key first; --drop-old keeps only the first', () => {
    const rotated = credentialKeyRotation.rotate(old, 'stdin').split(',');
    expect(rotated).toHaveLength(2);
    expect(rotated[1]).toBe(old);
    expect(rotated[0]).not.toBe(old);
    expect(credentialKeyRotation.dropOld(rotated.join(','), 'stdin')).toBe(rotated[0]);
  });

  it('--stage puts a new key last; --promote moves it first; promoting a single key is refused', () => {
    const staged = credentialKeyRotation.stage(`${old}\n`, 'stdin').split(',');
    expect(staged[0]).toBe(old);
    expect(credentialKeyRotation.promote(staged.join(','), 'stdin')).toBe(`${staged[1]},${old}`);
    expect(() => credentialKeyRotation.promote(old, 'stdin')).toThrow('stdin holds one key: nothing staged to promote');
  });

  it('rotating or staging into a set already at the bound is refused, saying to drop the old keys: no value the services would refuse is printed', () => {
    const full = Array.from({ length: MAX_CREDENTIAL_KEYS }, generateCredentialKey).join(',');
    expect(() => credentialKeyRotation.rotate(full, 'stdin')).toThrow(`stdin already holds ${MAX_CREDENTIAL_KEYS} keys, at most ${MAX_CREDENTIAL_KEYS}: drop the old ones first (mcp-front keygen --credential-key --drop-old)`);
    expect(() => credentialKeyRotation.stage(full, 'stdin')).toThrow('drop the old ones first');
  });
});

describe('sealing across a rotation', () => {
  const old = parseCredentialKeys(generateCredentialKey(), 'old')[0]!;
  const fresh = parseCredentialKeys(generateCredentialKey(), 'new')[0]!;
  const keys = (...sealing: Uint8Array[]): CredentialKeys => ({ sealing, routes: new Map() });
  const record = (sealed: string): UserCredentialRecord => ({ userSub: 'dev:ada@example.com', email: 'ada@example.com', route: '/svc', sealed, version: 'v', createdAt: 0, updatedAt: 0 });
  const ada = { userSub: 'dev:ada@example.com', route: '/svc' };

  it('a stored credential sealed under the old key opens after the rotation, flagged for sealing again; one sealed since does not open with the old key alone', () => {
    const before = record(sealUserCredential(keys(old), ada.userSub, ada.route, 'svc_secret'));
    expect(unsealUserCredential(keys(fresh, old), before, ada)).toEqual({ plain: 'svc_secret', stale: true });
    const after = record(sealUserCredential(keys(fresh, old), ada.userSub, ada.route, 'svc_secret'));
    expect(unsealUserCredential(keys(fresh, old), after, ada)).toEqual({ plain: 'svc_secret', stale: false });
    expect(unsealUserCredential(keys(fresh), after, ada)).toEqual({ plain: 'svc_secret', stale: false });
    expect(openUserCredential(keys(old), after, ada)).toBeUndefined();
    // Once the old key is dropped, what only it sealed is gone: hence `credentials reseal` first.
    expect(openUserCredential(keys(fresh), before, ada)).toBeUndefined();
    // The additional data still binds it to the user and the route, under either key.
    expect(openUserCredential(keys(fresh, old), before, { ...ada, userSub: 'dev:bob@example.com' })).toBeUndefined();
  });

  it('a route holding "new,old" opens a token\'s credential sealed under either; one holding only the old key refuses what the new one sealed', () => {
    const credential = { version: 'v-1', value: 'tok' };
    const to = { sub: 'dev:ada@example.com', route: '/svc' };
    const underOld = sealForRoute([old], to, credential);
    const underNew = sealForRoute([fresh, old], to, credential);
    expect(routeCredentialOpener([fresh, old], '/svc')(underOld, to.sub)).toEqual(credential);
    expect(routeCredentialOpener([fresh, old], '/svc')(underNew, to.sub)).toEqual(credential);
    expect(routeCredentialOpener([fresh], '/svc')(underNew, to.sub)).toEqual(credential);
    expect(routeCredentialOpener([old], '/svc')(underNew, to.sub)).toBeUndefined();
    // Staged ("old,new"): the new key opens but does not seal yet.
    expect(routeCredentialOpener([old], '/svc')(sealForRoute([old, fresh], to, credential), to.sub)).toEqual(credential);
  });
});
