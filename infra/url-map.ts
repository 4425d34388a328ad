import { stringify } from 'yaml';
import type { RouteConfig } from '../lib/config/config.ts';
import { LB } from './names.ts';
import type { PathRule } from '../lib/urlmap.ts';

// The load balancer's URL map, written for `gcloud compute url-maps import` from the same
// path rules the local router applies (lib/urlmap.ts), so both send a path to the same handler.

export function urlMapYaml(
  rules: readonly PathRule[],
  options: { project: string; domain: string; defaultBackend: string; backendOf: (owner: 'oauth' | RouteConfig) => string },
): string {
  const service = (name: string) => `https://www.googleapis.com/compute/v1/projects/${options.project}/global/backendServices/${name}`;
  const fallback = service(options.defaultBackend);
  return stringify(
    {
      name: LB.urlMap,
      // Anything unmatched (an unknown path or host) reaches the authorization server's JSON 404.
      defaultService: fallback,
      hostRules: [{ hosts: [options.domain], pathMatcher: 'mcp-front' }],
      pathMatchers: [
        {
          name: 'mcp-front',
          defaultService: fallback,
          pathRules: rules.map((rule) => ({
            paths: [...rule.paths],
            service: service(options.backendOf(rule.backend.kind === 'oauth' ? 'oauth' : rule.backend.route)),
          })),
        },
      ],
    },
    { lineWidth: 0 },
  );
}

export function httpRedirectYaml(): string {
  return stringify({ name: LB.redirectMap, defaultUrlRedirect: { httpsRedirect: true, redirectResponseCode: 'MOVED_PERMANENTLY_DEFAULT', stripQuery: false } });
}
