import type { RouteConfig } from '../../lib/config/config.ts';
import { browserSessionBinding, browserSessionUser, saveAuthRequest, takeServiceConnection, updateAuthRequest, type AuthRequest } from '../../lib/oauth/authorization.ts';
import type { SignedInUser } from '../../lib/oauth/grants.ts';
import { errorPage, type ServiceConnection } from '../../lib/oauth/pages.ts';
import { saveServiceTokens } from '../../lib/oauth/service-accounts.ts';
import { storedCredential } from '../../lib/oauth/user-credentials.ts';
import { ServiceOAuthError } from '../../lib/oauth/service-oauth.ts';
import { randomToken } from '../../lib/random.ts';
import { finishAllowed } from './consent.ts';
import { redirect, type HandlerDeps } from './deps.ts';
import { createHash } from 'node:crypto';

// Connecting a user's own account at a route's service (routes[].user_oauth), between our
// consent Allow and our code: the browser goes to the service's authorization endpoint
// (authorization code, PKCE S256) with a state that names our pending authorization request and
// a secret kept in it, and comes back to GET /connect/callback, in the same browser session, as
// the same user. The code is exchanged at the service's token endpoint (SSRF-safe fetch), the
// tokens stored sealed (lib/oauth/service-accounts.ts), and our own flow goes on. A refusal or
// an unusable answer is a page that says so; nothing is stored and no code of ours is issued.
// The account page starts the same round trip on its own (Connect, Reconnect): then the pending
// request has no client, is also bound to the browser session, and ends back on /account.

export const connectCallbackUrl = (deps: Pick<HandlerDeps, 'config'>) => `${deps.config.oauth.issuer}/connect/callback`;

/** For the consent page: the account, and where the browser will go (so its CSP lets the form lead there). */
export async function serviceConnection(deps: HandlerDeps, route: RouteConfig): Promise<ServiceConnection> {
  const { label, oauth } = route.userCredential!;
  try {
    const { authorizationEndpoint } = await deps.serviceOAuth.endpoints(route.path, oauth!);
    return { route: route.path, label, authorizationEndpoint };
  } catch (err) {
    if (!(err instanceof ServiceOAuthError)) throw err;
    // Said when the user allows (startServiceConnection); the page can still be shown.
    return { route: route.path, label };
  }
}

/** Where the service's sign-in is, or the page that says why it can't be reached now. */
async function serviceSignIn(deps: HandlerDeps, route: RouteConfig, from: string): Promise<{ authorizationEndpoint: string } | { error: Response }> {
  const { label, oauth } = route.userCredential!;
  try {
    return { authorizationEndpoint: (await deps.serviceOAuth.endpoints(route.path, oauth!)).authorizationEndpoint };
  } catch (err) {
    if (!(err instanceof ServiceOAuthError)) throw err;
    deps.log.warn('service sign-in not found', { route: route.path, reason: err.code, error: err.message });
    return { error: errorPage('Service unavailable', `Your ${label} for ${route.path} can't be connected now: ${err.message}. Try again later from ${from}.`, 502) };
  }
}

export async function startServiceConnection(deps: HandlerDeps, requestId: string, request: AuthRequest, user: SignedInUser, route: RouteConfig): Promise<Response> {
  const signIn = await serviceSignIn(deps, route, 'your MCP client');
  if ('error' in signIn) return signIn.error;
  const nonce = randomToken(24);
  const verifier = randomToken(32);
  await updateAuthRequest(deps.store, requestId, request, { allowed: true, connect: { route: route.path, nonce, verifier } });
  deps.log.info('service account connection started', { user: user.sub, route: route.path });
  return redirect(serviceAuthorizationUrl(deps, route, signIn.authorizationEndpoint, `${requestId}.${nonce}`, verifier));
}

/** Connect or Reconnect on the account page: a pending request of its own (no client), bound to the user and this browser session. */
export async function startAccountServiceConnection(deps: HandlerDeps, req: Request, user: SignedInUser, route: RouteConfig): Promise<Response> {
  const signIn = await serviceSignIn(deps, route, 'your account page');
  if ('error' in signIn) return signIn.error;
  const nonce = randomToken(24);
  const verifier = randomToken(32);
  const issuer = deps.config.oauth.issuer;
  const { id } = await saveAuthRequest(deps.store, deps.clock, {
    purpose: 'account',
    clientId: '',
    clientName: 'your account page',
    redirectUri: `${issuer}/account`,
    codeChallenge: '',
    resource: '',
    scope: '',
    userSub: user.sub,
    email: user.email,
    connect: { route: route.path, nonce, verifier, browser: browserSessionBinding(req, deps.config)! },
  });
  deps.log.info('service account connection started', { user: user.sub, route: route.path, via: 'account' });
  return redirect(serviceAuthorizationUrl(deps, route, signIn.authorizationEndpoint, `${id}.${nonce}`, verifier));
}

/** The service's authorization request: code, PKCE S256, our exact callback, and a state naming the pending request with its secret. */
function serviceAuthorizationUrl(deps: HandlerDeps, route: RouteConfig, authorizationEndpoint: string, state: string, verifier: string): string {
  const oauth = route.userCredential!.oauth;
  const url = new URL(authorizationEndpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', oauth!.clientId);
  url.searchParams.set('redirect_uri', connectCallbackUrl(deps));
  if (oauth!.scopes.length) url.searchParams.set('scope', oauth!.scopes.join(' '));
  url.searchParams.set('state', state);
  url.searchParams.set('code_challenge', createHash('sha256').update(verifier).digest('base64url'));
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

/** What a service put in error_description, fit to be shown: printable ASCII, short. */
const said = (text: string) => text.replace(/[^\x20-\x7e]/g, '').slice(0, 200);

export async function connectCallback(req: Request, deps: HandlerDeps): Promise<Response> {
  const q = new URL(req.url).searchParams;
  const [requestId = '', nonce = ''] = (q.get('state') ?? '').split('.');
  const expired = () => errorPage('Connection expired', 'This connection is unknown, was already answered, or has expired. Start again where you began: your MCP client or your account page.');
  if (!/^[A-Za-z0-9_-]{16,64}$/.test(requestId) || !nonce) return expired();
  const user = await browserSessionUser(deps.store, deps.config, req);
  if (!user) return errorPage('Not signed in', 'Your sign-in session has expired. Start again where you began: your MCP client or your account page.', 401);
  // Single use: taken off the request before anything else, so a replay finds nothing.
  const request = await takeServiceConnection(deps.store, requestId, nonce);
  const fromAccount = request?.purpose === 'account';
  if (!request?.connect || !(request.allowed || fromAccount)) return expired();
  if (request.userSub !== user.sub) return errorPage('Wrong account', 'This authorization was started by another account.', 403);
  if (fromAccount && (!request.connect.browser || request.connect.browser !== browserSessionBinding(req, deps.config))) return errorPage('Wrong browser', 'This connection was started in another browser session. Start again from your account page.', 403);
  const route = deps.config.routes.find((r) => r.path === request.connect!.route && r.userCredential?.oauth);
  if (!route) return expired();
  const { label, oauth } = route.userCredential!;
  const notConnected = (why: string, status: number) => errorPage('Not connected', `Your ${label} for ${route.path} was not connected: ${why}. Nothing was stored; start again from ${fromAccount ? 'your account page' : 'your MCP client'} to try again.`, status);

  const refused = q.get('error');
  if (refused) {
    deps.log.warn('service account connection refused', { user: user.sub, route: route.path, error: said(refused) });
    return notConnected(`the service said ${said(q.get('error_description') ?? refused)}`, 403);
  }
  // RFC 9207: a service that names itself must be the one we sent the user to.
  const iss = q.get('iss');
  if (iss !== null && oauth!.issuer && iss !== oauth!.issuer) return notConnected('the answer came from another issuer', 400);
  const code = q.get('code');
  if (!code) return notConnected('the service sent no authorization code', 400);
  let tokens;
  try {
    tokens = await deps.serviceOAuth.exchangeCode(route.path, oauth!, { code, verifier: request.connect.verifier, redirectUri: connectCallbackUrl(deps) });
  } catch (err) {
    if (!(err instanceof ServiceOAuthError)) throw err;
    deps.log.warn('service account connection failed', { user: user.sub, route: route.path, reason: err.code, error: err.message });
    return notConnected(err.message, 502);
  }
  if (fromAccount) {
    // A new version, as when a typed-in credential is replaced: sessions started with the tokens
    // it replaces end at their client's next refresh (services/route/registry.ts). The replaced
    // refresh token is not revoked at the service: many services revoke the whole grant of a
    // token, which a reconnection to the same account there may share.
    const replaced = (await storedCredential(deps.store, user.sub, route.path)) !== undefined;
    await saveServiceTokens(deps.store, deps.clock, deps.credentialKeys!, user, route.path, tokens);
    await deps.store.delete('authRequests', requestId);
    deps.log.info('service account connected', { user: user.sub, route: route.path, via: 'account', replaced });
    return redirect(`${deps.config.oauth.issuer}/account?done=${replaced ? 'reconnected' : 'connected'}`);
  }
  await saveServiceTokens(deps.store, deps.clock, deps.credentialKeys!, user, route.path, tokens);
  deps.log.info('service account connected', { user: user.sub, route: route.path });
  const { connect: _done, ...rest } = request;
  return finishAllowed(deps, requestId, rest as AuthRequest, user, route.path);
}
