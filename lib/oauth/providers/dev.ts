import type { UpstreamProvider } from './provider.ts';

// `provider: dev`: a local page that takes any email. Config load refuses it unless the
// issuer is on loopback, so it can never guard anything reachable from elsewhere.

export function devProvider(issuer: string): UpstreamProvider {
  return {
    name: 'dev (any email, loopback only)',
    async begin(requestId) {
      return new Response(null, { status: 303, headers: { location: `${issuer}/signin?request=${encodeURIComponent(requestId)}`, 'cache-control': 'no-store' } });
    },
  };
}

/** The identity the dev provider vouches for. */
export function devIdentity(email: string): { sub: string; email: string } | undefined {
  const normalized = email.trim().toLowerCase();
  if (normalized.length > 254 || !/^[^\s@<>"]+@[^\s@<>"]+\.[^\s@<>"]+$/.test(normalized)) return undefined;
  return { sub: `dev:${normalized}`, email: normalized };
}
