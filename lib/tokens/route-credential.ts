import { sealer } from '../oauth/sealed.ts';

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

export function sealForRoute(routeKey: Uint8Array, to: { sub: string; route: string }, credential: RouteCredential): string {
  // "version\nvalue", not JSON: escaping could double a value's size, and the token must stay small.
  return sealer(routeKey, PURPOSE).seal(`${credential.version}\n${credential.value}`, context(to.sub, to.route));
}

/** The route's side: opens what was sealed for it and this user, else undefined. */
export function routeCredentialOpener(routeKey: Uint8Array, route: string): (sealed: string, sub: string) => RouteCredential | undefined {
  const s = sealer(routeKey, PURPOSE);
  return (sealed, sub) => {
    const plain = s.open(sealed, context(sub, route));
    if (plain === undefined) return undefined;
    const newline = plain.indexOf('\n');
    return newline > 0 ? { version: plain.slice(0, newline), value: plain.slice(newline + 1) } : undefined;
  };
}
