import type { Config, OAuthConfig, RouteConfig } from '../config/config.ts';
import { routeForResource } from './authorization.ts';

// Per-route access (`routes[].access`): the global allow-lists decide who may sign in at all;
// a route's own lists then narrow who may have a token for it. Judged on the same proof the
// global policy uses, kept with the browser session and the grant so each refresh can judge
// again against the config as it is then: removing someone from a route ends their access
// within token_ttl.

/** What the provider proved about a user, beyond their id. */
export interface ProvenUser {
  readonly email: string;
  /** Absent: verified (Google and OIDC refuse unverified emails at sign-in; dev trusts the page); GitHub records it. */
  readonly emailVerified?: boolean;
  /** The Google Workspace domain (hd claim). */
  readonly hd?: string;
  /** GitHub: the organisations, among those the config names, the user is an active member of. */
  readonly orgs?: readonly string[];
}

/** Why this user may not use the route, as a sentence for a page or an error description; undefined: they may. */
export function routeRefusal(oauth: Pick<OAuthConfig, 'provider'>, route: Pick<RouteConfig, 'path' | 'access'>, who: ProvenUser): string | undefined {
  const access = route.access;
  if (!access) return undefined;
  const email = who.email.toLowerCase();
  // A GitHub grant from before emailVerified was recorded proves nothing about its email.
  const verified = who.emailVerified ?? oauth.provider !== 'github';
  if (verified && access.emails.includes(email)) return undefined;
  // As the global allowed_domains: Google's hd claim only, never an email suffix; elsewhere the verified email's domain.
  const domain = oauth.provider === 'google' ? who.hd?.toLowerCase() : verified ? email.split('@')[1] : undefined;
  if (domain && access.domains.includes(domain)) return undefined;
  if ((who.orgs ?? []).some((org) => access.githubOrgs.includes(org.toLowerCase()))) return undefined;
  return `${who.email} is not on the access list of ${route.path}`;
}

/** The refusal for a resource URL (a route's), or undefined when it is not a route or the user may use it. */
export function resourceRefusal(config: Pick<Config, 'oauth' | 'routes'>, resource: string, who: ProvenUser): string | undefined {
  const route = routeForResource(config, resource);
  return route ? routeRefusal(config.oauth, route, who) : undefined;
}

/** Every organisation sign-in must ask GitHub about: the global allowed_orgs and those routes name. */
export function githubOrgsToCheck(config: Pick<Config, 'oauth' | 'routes'>): string[] {
  const orgs = [...config.oauth.allowedOrgs, ...config.routes.flatMap((r) => r.access?.githubOrgs ?? [])].map((o) => o.toLowerCase());
  return [...new Set(orgs)];
}
