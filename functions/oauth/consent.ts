import { hasConsent, loadAuthRequest, narrowAuthRequest, rememberConsent, browserSessionUser, resourcesOf, routeForResource, updateAuthRequest, type AuthRequest } from '../../lib/oauth/authorization.ts';
import { findClient } from '../../lib/oauth/clients.ts';
import { issueCodeForRequest, provenFacts, type SignedInUser } from '../../lib/oauth/grants.ts';
import { consentPage, errorPage } from '../../lib/oauth/pages.ts';
import { resourceRefusal } from '../../lib/oauth/route-access.ts';
import { safeEqual } from '../../lib/random.ts';
import { checkSameOrigin, readForm, redirect, type HandlerDeps, type OAuthDeps } from './deps.ts';

// Our own consent page: names the client, where it returns to and the routes it asks for.
// Consent is remembered per (user, client, route, scope); a remembered one skips the page.

/** Back to the client with the RFC 9207 `iss` and the client's `state`. */
export function redirectToClient(issuer: string, request: Pick<AuthRequest, 'redirectUri' | 'state'>, params: Record<string, string>): Response {
  const url = new URL(request.redirectUri);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  if (request.state !== undefined) url.searchParams.set('state', request.state);
  url.searchParams.set('iss', issuer);
  return redirect(url.toString());
}

/**
 * Per-route access, once the user is known: a route they may not use is not offered (the
 * request keeps the others); when none is left, a page says so (403) and the request ends.
 * Every path to a code goes through here (after sign-in, and on the consent page).
 */
async function offerRoutes(deps: OAuthDeps, requestId: string, request: AuthRequest, user: SignedInUser, extraHeaders: Record<string, string> = {}): Promise<{ request: AuthRequest } | { error: Response }> {
  const requested = resourcesOf(request);
  const refusals = new Map(requested.map((r) => [r, resourceRefusal(deps.config, r, user)] as const));
  const offered = requested.filter((r) => !refusals.get(r));
  if (offered.length === requested.length) return { request };
  deps.log.warn('routes withheld by their access lists', { user: user.sub, client: request.clientId, withheld: requested.filter((r) => refusals.get(r)) });
  if (offered.length) return { request: await narrowAuthRequest(deps.store, requestId, request, offered) };
  await deps.store.delete('authRequests', requestId);
  const reasons = [...new Set(refusals.values())].join('; ');
  const response = errorPage('No access to this MCP server', `${reasons}. Ask your administrator if you should have access.`, 403);
  // The sign-in itself succeeded: the AS session starts anyway (other routes need no new sign-in).
  for (const [name, value] of Object.entries(extraHeaders)) response.headers.set(name, value);
  return { error: response };
}

/** After sign-in: a code at once when consent is remembered, else the consent page. */
export async function continueAuthorization(deps: OAuthDeps, requestId: string, requested: AuthRequest, user: SignedInUser, extraHeaders: Record<string, string> = {}): Promise<Response> {
  const offered = await offerRoutes(deps, requestId, requested, user, extraHeaders);
  if ('error' in offered) return offered.error;
  const { request } = offered;
  if (await hasConsent(deps.store, user.sub, request)) return grantCode(deps, requestId, request, user, extraHeaders);
  return redirect(`${deps.config.oauth.issuer}/consent?request=${encodeURIComponent(requestId)}`, extraHeaders);
}

async function grantCode(deps: OAuthDeps, requestId: string, request: AuthRequest, user: SignedInUser, extraHeaders: Record<string, string> = {}): Promise<Response> {
  const code = await issueCodeForRequest(deps.store, deps.clock, deps.config.oauth.codeTtl, requestId, {
    clientId: request.clientId,
    redirectUri: request.redirectUri,
    ...(request.redirectUriImplied ? { redirectUriImplied: true } : {}),
    codeChallenge: request.codeChallenge,
    resource: request.resource,
    ...(request.extraResources ? { extraResources: request.extraResources } : {}),
    scope: request.scope,
    userSub: user.sub,
    email: user.email,
    ...provenFacts(user),
    ...(user.upstream ? { upstream: user.upstream } : {}),
  });
  if (!code) return errorPage('Already answered', 'This authorization request was already answered. Return to your MCP client.');
  deps.log.info('authorization code issued', { client: request.clientId, user: user.sub, resource: request.resource });
  const response = redirectToClient(deps.config.oauth.issuer, request, { code });
  for (const [k, v] of Object.entries(extraHeaders)) response.headers.set(k, v);
  return response;
}

async function requestForUser(deps: OAuthDeps, req: Request, requestId: string | null): Promise<{ error: Response } | { request: AuthRequest; user: SignedInUser }> {
  const request = await loadAuthRequest(deps.store, requestId);
  if (!request) return { error: errorPage('Sign-in expired', 'This authorization request is unknown or has expired. Start again from your MCP client.') };
  const user = await browserSessionUser(deps.store, deps.config, req);
  if (!user) return { error: errorPage('Not signed in', 'Your sign-in session has expired. Start again from your MCP client.', 401) };
  if (request.userSub && request.userSub !== user.sub) return { error: errorPage('Wrong account', 'This authorization was started by another account.', 403) };
  const offered = await offerRoutes(deps, requestId!, request, user);
  return 'error' in offered ? offered : { request: offered.request, user };
}

export async function showConsent(req: Request, deps: OAuthDeps): Promise<Response> {
  const requestId = new URL(req.url).searchParams.get('request');
  const found = await requestForUser(deps, req, requestId);
  if ('error' in found) return found.error;
  const { request, user } = found;
  if (await hasConsent(deps.store, user.sub, request)) return grantCode(deps, requestId!, request, user);
  if (!request.userSub) await updateAuthRequest(deps.store, requestId!, request, { userSub: user.sub, email: user.email });
  const routes = resourcesOf(request).map((r) => routeForResource(deps.config, r)?.path ?? r);
  return consentPage({ requestId: requestId!, csrf: request.csrf, clientName: request.clientName, redirectUri: request.redirectUri, routes, email: user.email });
}

export async function decideConsent(req: Request, deps: HandlerDeps): Promise<Response> {
  if (!checkSameOrigin(req, deps.config.oauth.issuer)) return errorPage('Refused', 'This form was posted from another site.', 403);
  const form = await readForm(req);
  const requestId = form.get('request');
  const found = await requestForUser(deps, req, requestId);
  if ('error' in found) return found.error;
  const { request, user } = found;
  if (!request.userSub) return errorPage('Refused', 'Open the consent page before answering it.', 400);
  if (!safeEqual(form.get('csrf') ?? '', request.csrf)) return errorPage('Refused', 'The form token does not match. Start again from your MCP client.', 403);
  // The client may have been deleted meanwhile; never send a code to a redirect we can't vouch for.
  if (!(await findClient(deps.store, request.clientId, deps.metadataClients).catch(() => undefined))) return errorPage('Unknown client', 'The client that asked for access is no longer registered.');
  const decision = form.get('decision');
  if (decision === 'deny') {
    await deps.store.delete('authRequests', requestId!);
    return redirectToClient(deps.config.oauth.issuer, request, { error: 'access_denied', error_description: 'the user denied access' });
  }
  if (decision !== 'allow') return errorPage('Refused', 'Choose Allow or Deny.');
  await rememberConsent(deps.store, deps.clock, deps.config.oauth.consentTtl, user.sub, request);
  return grantCode(deps, requestId!, request, user);
}
