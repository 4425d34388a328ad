import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

// AES-256-GCM sealing of secrets the authorization server keeps or hands on. The upstream
// provider's credential for a user (a Google/OIDC refresh token, a GitHub token) is sealed under
// a key derived from the upstream client secret: a copy of the store alone is useless, and the
// credential is useless without that secret anyway. Users' own credentials for a route are
// sealed with a context (GCM's additional data) naming the user and the route, so a sealed value
// copied onto another user's or route's record does not open (lib/oauth/user-credentials.ts).

export interface Sealer {
  /** `context` is authenticated, not stored: open must be given the same one. */
  seal(plain: string, context?: string): string;
  /** undefined when the text was sealed under another key (the client secret was rotated), for another context, or altered. */
  open(sealed: string, context?: string): string | undefined;
}

const VERSION = 'v1';

/** `purpose` separates keys derived from one secret for different uses (HKDF info). */
export function sealer(secret: string | Uint8Array, purpose = 'upstream credential'): Sealer {
  const key = Buffer.from(hkdfSync('sha256', secret, 'mcp-front', purpose, 32));
  return {
    seal(plain, context) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      if (context !== undefined) cipher.setAAD(Buffer.from(context, 'utf8'));
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return `${VERSION}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
    },
    open(sealed, context) {
      const [version, data] = sealed.split('.');
      if (version !== VERSION || !data) return undefined;
      const raw = Buffer.from(data, 'base64url');
      if (raw.length < 12 + 16) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
        if (context !== undefined) decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(raw.subarray(raw.length - 16));
        return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
      } catch {
        return undefined;
      }
    },
  };
}

/** What a key set opened: the text, and whether a key other than the sealing one did (it is due to be sealed again). */
export interface Unsealed {
  readonly plain: string;
  readonly stale: boolean;
}

export interface KeySetSealer {
  /** Under the first key. */
  seal(plain: string, context?: string): string;
  /** Tries each key in order; undefined when none opens it. */
  unseal(sealed: string, context?: string): Unsealed | undefined;
}

/**
 * A key set, newest first (lib/tokens/credential-keys.ts): the first seals, each opens what it
 * sealed, so a key can be replaced without what the one before it sealed becoming unreadable.
 */
export function keySetSealer(keys: readonly Uint8Array[], purpose: string): KeySetSealer {
  if (!keys.length) throw new Error('a key set needs at least one key');
  const sealers = keys.map((key) => sealer(key, purpose));
  return {
    seal: (plain, context) => sealers[0]!.seal(plain, context),
    unseal(sealed, context) {
      for (const [i, s] of sealers.entries()) {
        const plain = s.open(sealed, context);
        if (plain !== undefined) return { plain, stale: i > 0 };
      }
      return undefined;
    },
  };
}
