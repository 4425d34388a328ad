import type { Config, RouteConfig } from './config/config.ts';

// The one path map: the local router applies it in process and `deploy` turns it into the
// load balancer's URL map, so a request reaches the same handler in both.

/** Paths served by the OAuth function (exact, or a prefix when ending in "/*"). */
export const OAUTH_PATHS = [
  '/.well-known/*',
  '/authorize',
  '/token',
  '/register',
  '/revoke',
  '/callback',
  '/connect/callback',
  '/consent',
  '/account',
  '/signin',
  '/jwks.json',
  '/routes',
] as const;

export type Backend = { readonly kind: 'oauth' } | { readonly kind: 'route'; readonly route: RouteConfig };

export interface PathRule {
  readonly paths: readonly string[];
  readonly backend: Backend;
}

export function buildUrlMap(config: Pick<Config, 'routes'>): PathRule[] {
  return [
    { paths: OAUTH_PATHS, backend: { kind: 'oauth' } },
    ...config.routes.map((route) => ({ paths: [route.path, `${route.path}/*`], backend: { kind: 'route', route } as const })),
  ];
}

/** The backend for a request path, as the load balancer would choose it (longest match wins). */
export function resolveBackend(rules: readonly PathRule[], pathname: string): Backend | undefined {
  let best: { backend: Backend; length: number } | undefined;
  for (const rule of rules) {
    for (const pattern of rule.paths) {
      const matches = pattern.endsWith('/*') ? pathname.startsWith(pattern.slice(0, -1)) : pathname === pattern;
      const length = pattern.length;
      if (matches && (!best || length > best.length)) best = { backend: rule.backend, length };
    }
  }
  return best?.backend;
}
