import { createHash } from 'node:crypto';
import type { OAuthConfig } from '../../config/config.ts';
import { randomToken } from '../../random.ts';
import type { OidcSignIn, Recheck, VerifiedIdentity } from './oidc.ts';

// Sign-in with GitHub (an OAuth app; GitHub is not OpenID Connect): the code flow with PKCE,
// then the API for who the user is: their id and login, their primary verified email, and,
// for each organisation the config names (allowed_orgs, routes' access.github_orgs), whether
// they are an active member.

const TIMEOUT_MS = 10_000;

async function api<T>(url: string, token: string): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/vnd.github+json', 'user-agent': 'mcp-front' }, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'error' });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as T };
}

export interface GithubIdentity extends VerifiedIdentity {
  readonly login: string;
  /** The organisations the config names (globally or on a route) the user is an active member of, lowercase. */
  readonly orgs: readonly string[];
}

/** `orgs`: every organisation whose membership matters (see githubOrgsToCheck). */
export function githubSignIn(oauth: Pick<OAuthConfig, 'clientId' | 'clientSecret' | 'githubUrl' | 'githubApiUrl'>, orgs: readonly string[]): OidcSignIn {
  /** Who the token's user is: id, login, primary email, allowed orgs; undefined when GitHub refuses the token. */
  async function identify(token: string): Promise<GithubIdentity | undefined> {
    const user = await api<{ id?: number; login?: string }>(`${oauth.githubApiUrl}/user`, token);
    if (user.status === 401) return undefined;
    if (user.status !== 200 || !user.body?.id || !user.body.login) throw new Error(`GitHub did not say who the user is (HTTP ${user.status})`);
    const emails = await api<Array<{ email: string; primary: boolean; verified: boolean }>>(`${oauth.githubApiUrl}/user/emails`, token);
    const primary = Array.isArray(emails.body) ? emails.body.find((e) => e.primary) : undefined;
    const memberOf: string[] = [];
    for (const org of orgs) {
      const membership = await api<{ state?: string }>(`${oauth.githubApiUrl}/user/memberships/orgs/${encodeURIComponent(org)}`, token);
      if (membership.status === 200 && membership.body?.state === 'active') memberOf.push(org.toLowerCase());
    }
    return { sub: `github:${user.body.id}`, email: (primary?.email ?? `${user.body.login}@users.noreply.github.com`).toLowerCase(), emailVerified: primary?.verified === true, login: user.body.login.toLowerCase(), orgs: memberOf };
  }

  return {
    async begin(requestId, _request, callbackUrl) {
      const verifier = randomToken(32);
      const url = new URL(`${oauth.githubUrl}/login/oauth/authorize`);
      url.search = new URLSearchParams({
        client_id: oauth.clientId!,
        redirect_uri: callbackUrl,
        state: requestId,
        // read:org only when membership must be checked: ask for no more than is needed.
        scope: orgs.length ? 'read:user user:email read:org' : 'read:user user:email',
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
        allow_signup: 'false',
      }).toString();
      return { location: url.toString(), upstream: { verifier } };
    },

    async complete(code, upstream, callbackUrl): Promise<GithubIdentity & { upstreamToken: string }> {
      const res = await fetch(`${oauth.githubUrl}/login/oauth/access_token`, {
        method: 'POST',
        headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: oauth.clientId!, client_secret: oauth.clientSecret!, code, redirect_uri: callbackUrl, code_verifier: upstream.verifier! }).toString(),
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      });
      const token = ((await res.json().catch(() => ({}))) as { access_token?: string; error_description?: string });
      if (!token.access_token) throw new Error(`GitHub refused the code: ${token.error_description ?? `HTTP ${res.status}`}`);
      const identity = await identify(token.access_token);
      if (!identity) throw new Error('GitHub did not say who the user is');
      // GitHub OAuth app tokens do not expire: kept (sealed) to ask GitHub again at each refresh.
      return { ...identity, upstreamToken: token.access_token };
    },

    async recheck(token): Promise<Recheck> {
      const identity = await identify(token);
      return identity ? { kind: 'identity', identity } : { kind: 'gone', reason: 'GitHub no longer accepts this sign-in (the app was revoked or the account removed)' };
    },
  };
}

/** Why a GitHub user is refused (undefined: admitted): an allowed login, or membership of an allowed org. */
export function admitGithub(oauth: Pick<OAuthConfig, 'allowedOrgs' | 'allowedLogins' | 'allowedEmails'>, who: GithubIdentity): string | undefined {
  const logins = oauth.allowedLogins.map((l) => l.toLowerCase());
  if (logins.includes(who.login)) return undefined;
  if (who.emailVerified && oauth.allowedEmails.includes(who.email)) return undefined;
  // who.orgs may name orgs only a route admits: the global gate counts its own list alone.
  const allowedOrgs = oauth.allowedOrgs.map((o) => o.toLowerCase());
  if (who.orgs.some((org) => allowedOrgs.includes(org))) return undefined;
  if (!oauth.allowedOrgs.length && !logins.length && !oauth.allowedEmails.length) return who.emailVerified ? undefined : `${who.login} has no verified primary email on GitHub.`;
  return oauth.allowedOrgs.length ? `${who.login} is not a member of ${oauth.allowedOrgs.join(' or ')} on GitHub (or has not granted this app access to it).` : `${who.login} is not on the list of allowed GitHub users.`;
}
