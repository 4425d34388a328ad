import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

// The upstream provider's credential for a user (a Google/OIDC refresh token, a GitHub token),
// kept so each refresh can ask the provider whether the user is still there. It is sealed with
// AES-256-GCM under a key derived from the upstream client secret: a copy of the store alone
// is useless, and the credential is useless without that secret anyway.

export interface Sealer {
  seal(plain: string): string;
  /** undefined when the text was sealed under another key (the client secret was rotated) or altered. */
  open(sealed: string): string | undefined;
}

const VERSION = 'v1';

export function sealer(secret: string): Sealer {
  const key = Buffer.from(hkdfSync('sha256', secret, 'mcp-front', 'upstream credential', 32));
  return {
    seal(plain) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return `${VERSION}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
    },
    open(sealed) {
      const [version, data] = sealed.split('.');
      if (version !== VERSION || !data) return undefined;
      const raw = Buffer.from(data, 'base64url');
      if (raw.length < 12 + 16) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
        decipher.setAuthTag(raw.subarray(raw.length - 16));
        return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
      } catch {
        return undefined;
      }
    },
  };
}
