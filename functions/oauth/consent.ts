import { hasConsent, loadAuthRequest, narrowAuthRequest, rememberConsent, browserSessionUser, resourcesOf, routeForResource, updateAuthRequest, type AuthRequest } from '../../lib/oauth/authorization.ts';
import { findClient } from '../../lib/oauth/clients.ts';
import { issueCodeForRequest, provenFacts, type SignedInUser } from '../../lib/oauth/grants.ts';
import { consentPage, errorPage, type CredentialField } from '../../lib/oauth/pages.ts';
import { serviceAccountUsable } from '../../lib/oauth/service-accounts.ts';
import { serviceConnection, startServiceConnection } from './connect.ts';
import type { RouteConfig } from '../../lib/config/config.ts';
import { credentialInput, credentialProblem, MAX_CREDENTIAL_BYTES, openUserCredential, saveUserCredential, storedCredential } from '../../lib/oauth/user-credentials.ts';
import { resourceRefusal } from '../../lib/oauth/route-access.ts';
import { safeEqual } from '../../lib/random.ts';
import { checkSameOrigin, MAX_FORM_BYTES, readForm, redirect, type HandlerDeps, type OAuthDeps } from './deps.ts';

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

/**
 * The routes of the request that take each user's own credential and have no usable one of this
 * user's stored: the consent page asks for them, even when consent is remembered.
 */
export async function credentialsToAsk(deps: OAuthDeps, request: AuthRequest, user: SignedInUser): Promise<RouteConfig[]> {
  const routes = resourcesOf(request).flatMap((r) => {
    const route = routeForResource(deps.config, r);
    return route?.userCredential ? [route] : [];
  });
  const missing: RouteConfig[] = [];
  for (const route of new Set(routes)) {
    const record = await storedCredential(deps.store, user.sub, route.path);
    const expected = { userSub: user.sub, route: route.path };
    const usable = deps.credentialKeys && (route.userCredential!.oauth ? serviceAccountUsable(deps.credentialKeys, record, expected, deps.clock.now()) : record && record.kind !== 'service-account' && openUserCredential(deps.credentialKeys, record, expected) !== undefined);
    if (!usable) missing.push(route);
  }
  return missing;
}

/** Routes whose users type their credential in (user_credential), as opposed to connecting an account (user_oauth). */
const typedIn = (route: RouteConfig) => !route.userCredential!.oauth;

export const credentialFieldName = (route: Pick<RouteConfig, 'name'>) => `credential-${route.name}`;

export function credentialField(route: RouteConfig, error?: string): CredentialField {
  const c = route.userCredential!;
  return { name: credentialFieldName(route), route: route.path, label: c.label, instructions: c.instructions, ...(c.helpUrl ? { helpUrl: c.helpUrl } : {}), ...(error ? { error } : {}) };
}

/** A form that may carry credentials: room for each (urlencoded, up to three bytes per byte) on top of the usual. */
export const credentialFormLimit = (deps: Pick<OAuthDeps, 'config'>) => MAX_FORM_BYTES + 3 * MAX_CREDENTIAL_BYTES * deps.config.routes.filter((r) => r.userCredential && !r.userCredential.oauth).length;

/** After sign-in: a code at once when consent is remembered, else the consent page. */
export async function continueAuthorization(deps: OAuthDeps, requestId: string, requested: AuthRequest, user: SignedInUser, extraHeaders: Record<string, string> = {}): Promise<Response> {
  if (requested.purpose === 'account') {
    // A sign-in for the account page itself: no client, no code; the session cookie is the point.
    await deps.store.delete('authRequests', requestId);
    return redirect(`${deps.config.oauth.issuer}/account`, extraHeaders);
  }
  const offered = await offerRoutes(deps, requestId, requested, user, extraHeaders);
  if ('error' in offered) return offered.error;
  const { request } = offered;
  if ((await hasConsent(deps.store, user.sub, request)) && !(await credentialsToAsk(deps, request, user)).length) return grantCode(deps, requestId, request, user, extraHeaders);
  return redirect(`${deps.config.oauth.issuer}/consent?request=${encodeURIComponent(requestId)}`, extraHeaders);
}

export async function grantCode(deps: OAuthDeps, requestId: string, request: AuthRequest, user: SignedInUser, extraHeaders: Record<string, string> = {}): Promise<Response> {
  const code = await issueCodeForRequest(deps.store, deps.clock, deps.config.oauth.codeTtl, requestId, {
    clientId: request.clientId,
    clientName: request.clientName,
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
  if (!request || request.purpose === 'account') return { error: errorPage('Sign-in expired', 'This authorization request is unknown or has expired. Start again from your MCP client.') };
  const user = await browserSessionUser(deps.store, deps.config, req);
  if (!user) return { error: errorPage('Not signed in', 'Your sign-in session has expired. Start again from your MCP client.', 401) };
  if (request.userSub && request.userSub !== user.sub) return { error: errorPage('Wrong account', 'This authorization was started by another account.', 403) };
  const offered = await offerRoutes(deps, requestId!, request, user);
  return 'error' in offered ? offered : { request: offered.request, user };
}

export async function showConsent(req: Request, deps: HandlerDeps): Promise<Response> {
  const requestId = new URL(req.url).searchParams.get('request');
  const found = await requestForUser(deps, req, requestId);
  if ('error' in found) return found.error;
  const { request, user } = found;
  const ask = await credentialsToAsk(deps, request, user);
  if (!ask.length && (await hasConsent(deps.store, user.sub, request))) return grantCode(deps, requestId!, request, user);
  if (!request.userSub) await updateAuthRequest(deps.store, requestId!, request, { userSub: user.sub, email: user.email });
  return renderConsent(deps, requestId!, request, user, ask);
}

/** The page, with a field for each typed-in credential to ask and a note for each account to connect. */
async function renderConsent(deps: HandlerDeps, requestId: string, request: AuthRequest, user: SignedInUser, ask: readonly RouteConfig[], errors: ReadonlyMap<string, string> = new Map()): Promise<Response> {
  const routes = resourcesOf(request).map((r) => routeForResource(deps.config, r)?.path ?? r);
  const credentials = ask.filter(typedIn).map((route) => credentialField(route, errors.get(route.path)));
  const services = await Promise.all(ask.filter((r) => !typedIn(r)).map((route) => serviceConnection(deps, route)));
  return consentPage({ requestId, csrf: request.csrf, clientName: request.clientName, redirectUri: request.redirectUri, routes, email: user.email, credentials, services, maxCredentialBytes: MAX_CREDENTIAL_BYTES });
}

export async function decideConsent(req: Request, deps: HandlerDeps): Promise<Response> {
  if (!checkSameOrigin(req, deps.config.oauth.issuer)) return errorPage('Refused', 'This form was posted from another site.', 403);
  const form = await readForm(req, credentialFormLimit(deps));
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
  // The user's own credentials the routes take: all valid, or the page again saying what is
  // wrong (never echoing what was typed), and nothing stored.
  const ask = await credentialsToAsk(deps, request, user);
  const given = ask.filter(typedIn).map((route) => ({ route, value: credentialInput(form.get(credentialFieldName(route))) }));
  const problems = new Map(given.flatMap(({ route, value }) => {
    const problem = credentialProblem(route, value);
    return problem ? [[route.path, problem] as const] : [];
  }));
  if (problems.size) return renderConsent(deps, requestId!, request, user, ask, problems);
  for (const { route, value } of given) {
    await saveUserCredential(deps.store, deps.clock, deps.credentialKeys!, user, route.path, value);
    deps.log.info('user credential stored', { user: user.sub, route: route.path, via: 'consent' });
  }
  return finishAllowed(deps, requestId!, request, user);
}

/**
 * After Allow: each service account still to connect, one at a time (the browser goes to the
 * service and comes back to /connect/callback, which calls this again); then consent is
 * remembered and the code issued. `connected` was just connected: never asked twice in a row.
 */
export async function finishAllowed(deps: HandlerDeps, requestId: string, request: AuthRequest, user: SignedInUser, connected?: string): Promise<Response> {
  const toConnect = (await credentialsToAsk(deps, request, user)).filter((r) => !typedIn(r) && r.path !== connected);
  if (toConnect.length) return startServiceConnection(deps, requestId, request, user, toConnect[0]!);
  await rememberConsent(deps.store, deps.clock, deps.config.oauth.consentTtl, user.sub, request);
  return grantCode(deps, requestId, request, user);
}
