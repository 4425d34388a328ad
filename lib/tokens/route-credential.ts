import { keySetSealer } from '../oauth/sealed.ts';
import type { CredentialKeySet } from './credential-keys.ts';

// A user's credential on its way to a route: sealed (AES-256-GCM) with that route's own key and
// carried in the access token for that route (the `cred` claim), so the route needs no store
// read and no access to where credentials are kept. The additional data names the user and the
// route: a sealed value lifted into another user's token, or another route's, does not open.

export interface RouteCredential {
  /** Changes whenever the user replaces the credential: a session started with another one ends. */
  readonly version: string;
  readonly value: string;
}

const PURPOSE = 'route credential';
const context = (sub: string, route: string) => `mcp-front route credential\n${sub}\n${route}`;

/** Under the route's newest key: the route holds that one before the authorization server seals with it (docs/deploy.md). */
export function sealForRoute(routeKeys: CredentialKeySet, to: { sub: string; route: string }, credential: RouteCredential): string {
  // "version\nvalue", not JSON: escaping could double a value's size, and the token must stay small.
  return keySetSealer(routeKeys, PURPOSE).seal(`${credential.version}\n${credential.value}`, context(to.sub, to.route));
}

/** The route's side: opens what was sealed for it and this user, under any of its keys (a token from before a rotation), else undefined. */
export function routeCredentialOpener(routeKeys: CredentialKeySet, route: string): (sealed: string, sub: string) => RouteCredential | undefined {
  const s = keySetSealer(routeKeys, PURPOSE);
  return (sealed, sub) => {
    const plain = s.unseal(sealed, context(sub, route))?.plain;
    if (plain === undefined) return undefined;
    const newline = plain.indexOf('\n');
    return newline > 0 ? { version: plain.slice(0, newline), value: plain.slice(newline + 1) } : undefined;
  };
}
