import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sealer } from '../../lib/oauth/sealed.ts';
import { routeCredentialOpener, sealForRoute } from '../../lib/tokens/route-credential.ts';

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

describe('sealed with a context (users\' own credentials)', () => {
  it('opens only with the context it was sealed with; the context is not in the sealed text', () => {
    const s = sealer(new Uint8Array(32).fill(7), 'user credential');
    const sealed = s.seal('svc_secret', 'mcp-front user credential\ndev:ada@example.com\n/svc');
    expect(s.open(sealed, 'mcp-front user credential\ndev:ada@example.com\n/svc')).toBe('svc_secret');
    expect(s.open(sealed, 'mcp-front user credential\ndev:bob@example.com\n/svc')).toBeUndefined();
    expect(s.open(sealed, 'mcp-front user credential\ndev:ada@example.com\n/other')).toBeUndefined();
    expect(s.open(sealed)).toBeUndefined();
    expect(Buffer.from(sealed.slice(3), 'base64url').toString('latin1')).not.toContain('ada@example.com');
    // Another purpose derives another key from the same secret.
    expect(sealer(new Uint8Array(32).fill(7), 'route credential').open(sealed, 'mcp-front user credential\ndev:ada@example.com\n/svc')).toBeUndefined();
  });

  it('a route opens what was sealed for it and that user only', () => {
    const key = new Uint8Array(32).fill(1);
    const sealed = sealForRoute([key], { sub: 'dev:ada@example.com', route: '/svc' }, { version: 'v-1', value: 'tok with spaces and \\ " quotes' });
    expect(routeCredentialOpener([key], '/svc')(sealed, 'dev:ada@example.com')).toEqual({ version: 'v-1', value: 'tok with spaces and \\ " quotes' });
    expect(routeCredentialOpener([key], '/svc')(sealed, 'dev:bob@example.com')).toBeUndefined();
    expect(routeCredentialOpener([key], '/other')(sealed, 'dev:ada@example.com')).toBeUndefined();
    expect(routeCredentialOpener([new Uint8Array(32).fill(2)], '/svc')(sealed, 'dev:ada@example.com')).toBeUndefined();
  });

  it('a 4 KiB credential keeps the access token under the verifier\'s limit', () => {
    const sealed = sealForRoute([new Uint8Array(32)], { sub: 'dev:ada@example.com', route: '/svc' }, { version: 'A'.repeat(16), value: '~'.repeat(4096) });
    // Inside the JWT payload it is base64url'd once more: about 4/3 of this, plus the other claims.
    expect(Math.ceil((sealed.length * 4) / 3) + 1024).toBeLessThan(12_288);
  });
});
