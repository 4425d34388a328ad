import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sealer } from '../../lib/oauth/sealed.ts';

// The upstream credential at rest: AES-256-GCM under a key derived from the client secret.

describe('sealed upstream credentials', () => {
  it('open(seal(x)) is x for any text, and the sealed form never contains it', () => {
    const s = sealer('client-secret');
    fc.assert(
      fc.property(fc.string({ minLength: 8 }), (plain) => {
        const sealed = s.seal(plain);
        expect(s.open(sealed)).toBe(plain);
        expect(sealed).not.toContain(plain);
      }),
    );
  });

  it('refuses text sealed under another secret, altered, truncated or of another version', () => {
    const sealed = sealer('client-secret').seal('1//refresh-token');
    expect(sealer('rotated-secret').open(sealed)).toBeUndefined();
    const body = sealed.slice(3);
    const flipped = `v1.${body.slice(0, 20)}${body[20] === 'A' ? 'B' : 'A'}${body.slice(21)}`;
    expect(sealer('client-secret').open(flipped)).toBeUndefined();
    expect(sealer('client-secret').open(sealed.slice(0, 20))).toBeUndefined();
    expect(sealer('client-secret').open(`v2.${body}`)).toBeUndefined();
    expect(sealer('client-secret').open('')).toBeUndefined();
  });
});
