import type { AuthRequest } from '../authorization.ts';

// Where users prove who they are. Each provider sends the browser off to sign in and, when it
// comes back, yields a verified identity; the policy (domains, allow lists) is applied there.

export interface UpstreamProvider {
  /** Shown on pages and printed by `serve`. */
  readonly name: string;
  /** The browser's first step of sign-in for this authorization request (a redirect, or our own page). */
  begin(requestId: string, request: AuthRequest): Promise<Response>;
}
