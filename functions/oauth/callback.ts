import { loadAuthRequest, startBrowserSession, updateAuthRequest } from '../../lib/oauth/authorization.ts';
import { provenFacts, type SignedInUser } from '../../lib/oauth/grants.ts';
import { errorPage } from '../../lib/oauth/pages.ts';
import { sealer } from '../../lib/oauth/sealed.ts';
import { admitFor, callbackUrl, sameBrowser, signInFor } from '../../lib/oauth/providers/upstream.ts';
import { continueAuthorization } from './consent.ts';
import type { OAuthDeps } from './deps.ts';

// GET /callback: the identity provider sends the browser back here. The ID token is verified,
// the user checked against the policy (verified email; Workspace domain by `hd`; allow lists),
// and only then does the AS session start. A refusal is a page that says why; no code is issued.

export async function callback(req: Request, deps: OAuthDeps): Promise<Response> {
  if (deps.config.oauth.provider === 'dev') return errorPage('Not found', 'This gateway signs in locally.', 404);
  const q = new URL(req.url).searchParams;
  const requestId = q.get('state');
  const request = await loadAuthRequest(deps.store, requestId);
  if (!request?.upstream) return errorPage('Sign-in expired', 'This sign-in is unknown or has expired. Start again from your MCP client.');
  if (!sameBrowser(req, requestId!)) return errorPage('Refused', 'This sign-in was started in another browser. Start again from your MCP client.', 403);
  const upstreamError = q.get('error');
  if (upstreamError) return errorPage('Sign-in failed', `The identity provider said: ${q.get('error_description') ?? upstreamError}.`, 403);
  const code = q.get('code');
  if (!code) return errorPage('Sign-in failed', 'The identity provider sent no authorization code.');
  let who;
  try {
    who = await signInFor(deps.config).complete(code, request.upstream, callbackUrl(deps.config));
  } catch (err) {
    deps.log.warn('upstream sign-in failed', { error: (err as Error).message });
    return errorPage('Sign-in failed', `The identity provider's answer could not be verified: ${(err as Error).message}`, 403);
  }
  const refusal = admitFor(deps.config.oauth, who);
  if (refusal) {
    deps.log.warn('sign-in refused by policy', { user: who.sub, reason: refusal });
    await deps.store.delete('authRequests', requestId!);
    return errorPage('Access denied', `${refusal} Ask your administrator if you should have access.`, 403);
  }
  const sealed = who.upstreamToken && deps.config.oauth.clientSecret ? sealer(deps.config.oauth.clientSecret).seal(who.upstreamToken) : undefined;
  const user: SignedInUser = { sub: who.sub, email: who.email, ...provenFacts(who), ...(sealed ? { upstream: sealed } : {}) };
  const signedIn = await updateAuthRequest(deps.store, requestId!, request, { userSub: user.sub, email: user.email });
  const cookie = await startBrowserSession(deps.store, deps.clock, deps.config, user);
  deps.log.info('signed in', { user: user.sub, provider: deps.config.oauth.provider });
  return continueAuthorization(deps, requestId!, signedIn, user, { 'set-cookie': cookie });
}
