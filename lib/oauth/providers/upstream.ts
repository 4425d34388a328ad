import type { Clock } from '../../clock.ts';
import type { Config } from '../../config/config.ts';
import { sha256 } from '../../random.ts';
import type { Store } from '../../store/store.ts';
import { readCookie, updateAuthRequest, type AuthRequest } from '../authorization.ts';
import { admit, oidcSignIn, type OidcSignIn, type VerifiedIdentity } from './oidc.ts';
import { admitGithub, githubSignIn, type GithubIdentity } from './github.ts';
import { githubOrgsToCheck } from '../route-access.ts';
import type { UpstreamProvider } from './provider.ts';

// The google and oidc providers as the authorization server uses them: the browser goes to the
// identity provider with this request's nonce and PKCE verifier kept server-side, and a short
// cookie ties the callback to the browser that started it (no login CSRF).

export const LOGIN_COOKIE = 'mcp_front_login';

export function callbackUrl(config: Config): string {
  return `${config.oauth.issuer}/callback`;
}

export function upstreamProvider(deps: { config: Config; store: Store; clock: Clock }): UpstreamProvider {
  const signIn = signInFor(deps.config);
  const secure = new URL(deps.config.oauth.issuer).protocol === 'https:';
  return {
    name: { google: 'Google', github: 'GitHub', oidc: `OpenID Connect (${deps.config.oauth.oidcIssuer})`, dev: 'dev' }[deps.config.oauth.provider],
    async begin(requestId: string, request: AuthRequest) {
      const { location, upstream } = await signIn.begin(requestId, request, callbackUrl(deps.config));
      await updateAuthRequest(deps.store, requestId, request, { upstream });
      // The login cookie lasts as long as the request it ties to this browser.
      const maxAge = Math.max(0, Math.ceil((request.expiresAt - deps.clock.now()) / 1000));
      const cookie = `${LOGIN_COOKIE}=${sha256(requestId)}; Path=/callback; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${secure ? '; Secure' : ''}`;
      return new Response(null, { status: 303, headers: { location, 'set-cookie': cookie, 'cache-control': 'no-store' } });
    },
  };
}

/** The callback came back in the browser that started this request. */
export function sameBrowser(req: Request, requestId: string): boolean {
  return readCookie(req, LOGIN_COOKIE) === sha256(requestId);
}

/** The provider's sign-in: GitHub's OAuth app flow, or OpenID Connect (Google or any issuer). */
export function signInFor(config: Pick<Config, 'oauth' | 'routes'>): OidcSignIn {
  return config.oauth.provider === 'github' ? githubSignIn(config.oauth, githubOrgsToCheck(config)) : oidcSignIn(config.oauth);
}

/** The policy for the provider in use: undefined admits, a sentence refuses. */
export function admitFor(oauth: Config['oauth'], who: VerifiedIdentity): string | undefined {
  return oauth.provider === 'github' ? admitGithub(oauth, who as GithubIdentity) : admit(oauth, who);
}
