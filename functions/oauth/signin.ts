import { loadAuthRequest, startBrowserSession, updateAuthRequest } from '../../lib/oauth/authorization.ts';
import { devIdentity } from '../../lib/oauth/providers/dev.ts';
import { errorPage, signInPage } from '../../lib/oauth/pages.ts';
import { safeEqual } from '../../lib/random.ts';
import { continueAuthorization } from './consent.ts';
import { checkSameOrigin, readForm, type OAuthDeps } from './deps.ts';

// The dev provider's sign-in page (loopback only): one email field, a CSRF token, then the AS
// session cookie and on to consent.

export async function showSignIn(req: Request, deps: OAuthDeps): Promise<Response> {
  if (deps.config.oauth.provider !== 'dev') return errorPage('Not found', 'Sign-in happens at your identity provider.', 404);
  const requestId = new URL(req.url).searchParams.get('request');
  const request = await loadAuthRequest(deps.store, requestId);
  if (!request) return errorPage('Sign-in expired', 'This authorization request is unknown or has expired. Start again from your MCP client.');
  return signInPage({ requestId: requestId!, csrf: request.csrf, clientName: request.clientName, formTarget: request.redirectUri });
}

export async function submitSignIn(req: Request, deps: OAuthDeps): Promise<Response> {
  if (deps.config.oauth.provider !== 'dev') return errorPage('Not found', 'Sign-in happens at your identity provider.', 404);
  if (!checkSameOrigin(req, deps.config.oauth.issuer)) return errorPage('Refused', 'This form was posted from another site.', 403);
  const form = await readForm(req);
  const requestId = form.get('request');
  const request = await loadAuthRequest(deps.store, requestId);
  if (!request) return errorPage('Sign-in expired', 'This authorization request is unknown or has expired. Start again from your MCP client.');
  if (!safeEqual(form.get('csrf') ?? '', request.csrf)) return errorPage('Refused', 'The form token does not match. Start again from your MCP client.', 403);
  const user = devIdentity(form.get('email') ?? '');
  if (!user) return signInPage({ requestId: requestId!, csrf: request.csrf, clientName: request.clientName, formTarget: request.redirectUri, error: 'Enter a valid email address.' });
  const signedIn = await updateAuthRequest(deps.store, requestId!, request, { userSub: user.sub, email: user.email });
  const cookie = await startBrowserSession(deps.store, deps.clock, deps.config, user);
  deps.log.info('signed in', { user: user.sub, provider: 'dev' });
  return continueAuthorization(deps, requestId!, signedIn, user, { 'set-cookie': cookie });
}
