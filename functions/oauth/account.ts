import type { RouteConfig } from '../../lib/config/config.ts';
import type { RequestContext } from '../../lib/http/types.ts';
import { accountPage, type Connection, type CredentialRow } from '../../lib/oauth/account-page.ts';
import { accountFormToken, browserSessionUser, endBrowserSession, resourcesOf, routeForResource, saveAuthRequest } from '../../lib/oauth/authorization.ts';
import type { ClientRecord } from '../../lib/oauth/clients.ts';
import type { GrantRecord, SignedInUser } from '../../lib/oauth/grants.ts';
import { grantIsLive, revokeGrantOfUser } from '../../lib/oauth/revocation.ts';
import { errorPage, page, redirectPlace } from '../../lib/oauth/pages.ts';
import { knownClientName } from '../../lib/oauth/presets.ts';
import { enforceLimit } from '../../lib/oauth/rate-limit.ts';
import { routeRefusal } from '../../lib/oauth/route-access.ts';
import { credentialInput, credentialProblem, credentialsOf, deleteUserCredential, MAX_CREDENTIAL_BYTES, saveUserCredential } from '../../lib/oauth/user-credentials.ts';
import { disconnectServiceAccount, type Disconnection } from '../../lib/oauth/service-accounts.ts';
import { safeEqual } from '../../lib/random.ts';
import { serviceConnection, startAccountServiceConnection } from './connect.ts';
import { credentialField, credentialFormLimit } from './consent.ts';
import { checkSameOrigin, readForm, redirect, type HandlerDeps } from './deps.ts';

// GET and POST /account: the user's own view of their access, behind the same browser session
// as /authorize. Without one, it starts a sign-in that comes back here. Posts must come from the
// page itself: same origin (Origin, Sec-Fetch-Site) and the page's CSRF token; the session
// cookie is SameSite=Lax, so another site's form never carries it anyway. Connect and Reconnect
// of a service account leave for the service's sign-in and come back through /connect/callback.

const NOTICES: Record<string, string> = {
  revoked: 'The connection is revoked: its client can no longer refresh its access.',
  saved: 'Your credential is stored. Sessions started with the one before end when their client next refreshes.',
  deleted: 'Your credential is deleted. Clients of that route get no new token until you give one again.',
  connected: 'Your account is connected. Clients of that route get its access with their next token.',
  reconnected: 'Your account is connected again, with new tokens. Sessions started with the previous connection end when their client next refreshes.',
  disconnected: 'Your account is disconnected: the service revoked this gateway\'s access, and its tokens are deleted here. Clients of that route get no new token until you connect it again.',
  'disconnected-here': 'Your account is disconnected: its tokens are deleted here (the service offers no way to revoke them from here; you can remove this gateway\'s access in its own settings). Clients of that route get no new token until you connect it again.',
  'disconnected-unconfirmed': 'Your account is disconnected here: its tokens are deleted. Revocation at the service could not be confirmed; to be sure, remove this gateway\'s access in the service\'s own settings. Clients of that route get no new token until you connect it again.',
};

/** Where Disconnect lands: the notice says whether the service confirmed the revocation. */
const DISCONNECTED: Record<Disconnection, string> = { revoked: 'disconnected', 'not-offered': 'disconnected-here', unconfirmed: 'disconnected-unconfirmed', 'nothing-stored': 'disconnected-here' };

export async function showAccount(req: Request, deps: HandlerDeps, ctx: RequestContext): Promise<Response> {
  const user = await browserSessionUser(deps.store, deps.config, req);
  if (!user) return startAccountSignIn(deps, ctx);
  const notice = NOTICES[new URL(req.url).searchParams.get('done') ?? ''];
  return renderAccount(deps, req, user, { ...(notice ? { notice } : {}) });
}

/** A sign-in that ends on this page (continueAuthorization sees the purpose): rate-limited like /authorize, whose store writes it makes too. */
async function startAccountSignIn(deps: HandlerDeps, ctx: RequestContext): Promise<Response> {
  await enforceLimit(deps.store, deps.clock, 'authorize', ctx.clientIp, { max: deps.config.oauth.rateLimits.authorize, windowMs: 60_000 });
  const issuer = deps.config.oauth.issuer;
  const { id, request } = await saveAuthRequest(deps.store, deps.clock, { purpose: 'account', clientId: '', clientName: 'your account page', redirectUri: `${issuer}/account`, codeChallenge: '', resource: '', scope: '' });
  return deps.provider.begin(id, request);
}

async function renderAccount(deps: HandlerDeps, req: Request, user: SignedInUser, extra: { notice?: string; errors?: Map<string, string> }, status = 200): Promise<Response> {
  const now = deps.clock.now();
  const grants = (await deps.store.find<GrantRecord>('grants', 'userSub', user.sub)).filter((g) => grantIsLive(g.doc, now, deps.config.oauth.refreshTtl));
  const connections = new Map<string, Connection[]>();
  const clients = new Map<string, ClientRecord | undefined>();
  for (const { id, doc } of grants.sort((a, b) => a.doc.createdAt - b.doc.createdAt)) {
    if (!clients.has(doc.clientId)) clients.set(doc.clientId, await deps.store.get<ClientRecord>('clients', doc.clientId));
    const client = clients.get(doc.clientId);
    const redirectUri = doc.redirectUri ?? client?.redirectUris[0];
    const routes = resourcesOf(doc).map((r) => routeForResource(deps.config, r)?.path ?? r);
    const connection: Connection = {
      grantId: id,
      clientName: doc.clientName ?? client?.clientName ?? doc.clientId,
      ...(redirectUri && knownClientName(redirectUri) ? { knownAs: knownClientName(redirectUri)! } : {}),
      place: redirectUri ? redirectPlace(redirectUri) : 'unknown',
      firstUse: doc.createdAt,
      lastUse: doc.lastUsedAt ?? doc.createdAt,
      routes,
    };
    for (const route of new Set(routes)) connections.set(route, [...(connections.get(route) ?? []), connection]);
  }
  const stored = new Map((await credentialsOf(deps.store, user.sub)).map((c) => [c.route, c]));
  // The routes that take a credential and this user may use, and any they still have one stored for.
  const rows = deps.config.routes
    .filter((r) => r.userCredential)
    .map((r) => ({ route: r, refused: routeRefusal(deps.config.oauth, r, user) !== undefined }))
    .filter(({ route, refused }) => !refused || stored.has(route.path));
  const credentials: CredentialRow[] = rows.map(({ route: r, refused }) => ({
    ...credentialField(r, extra.errors?.get(r.path)),
    ...(stored.has(r.path) ? { storedAt: stored.get(r.path)!.updatedAt } : {}),
    ...(r.userCredential!.oauth ? { serviceAccount: true, connectable: !refused } : {}),
  }));
  // Connect and Reconnect lead to the service's sign-in: the page's CSP must let its forms go
  // there. Discovery is cached (service-oauth.ts), as for the consent page.
  const signIns = await Promise.all(rows.filter(({ route, refused }) => route.userCredential!.oauth && !refused).map(({ route }) => serviceConnection(deps, route)));
  const serviceSignIns = signIns.flatMap((c) => (c.authorizationEndpoint ? [c.authorizationEndpoint] : []));
  return accountPage({ email: user.email, csrf: accountFormToken(req, deps.config)!, ...(extra.notice ? { notice: extra.notice } : {}), connections, credentials, serviceSignIns, maxCredentialBytes: MAX_CREDENTIAL_BYTES, tokenTtlSeconds: deps.config.oauth.tokenTtl / 1000 }, status);
}

/** A post from elsewhere: another origin, or (where the browser says) another site. */
function crossSite(req: Request, issuer: string): boolean {
  const site = req.headers.get('sec-fetch-site');
  return !checkSameOrigin(req, issuer) || (site !== null && site !== 'same-origin' && site !== 'none');
}

export async function changeAccount(req: Request, deps: HandlerDeps, ctx: RequestContext): Promise<Response> {
  if (crossSite(req, deps.config.oauth.issuer)) return errorPage('Refused', 'This form was posted from another site.', 403);
  const form = await readForm(req, credentialFormLimit(deps));
  const user = await browserSessionUser(deps.store, deps.config, req);
  if (!user) return errorPage('Not signed in', 'Your sign-in session has expired. Open your account page again to sign in.', 401);
  const expected = accountFormToken(req, deps.config);
  if (!expected || !safeEqual(form.get('csrf') ?? '', expected)) return errorPage('Refused', 'The form token does not match. Open your account page again.', 403);
  const back = (done: string) => redirect(`${deps.config.oauth.issuer}/account?done=${done}`);

  switch (form.get('action')) {
    case 'revoke': {
      const grantId = form.get('grant') ?? '';
      // Another user's grant looks exactly like a missing one.
      if (!/^[A-Za-z0-9_-]{16,64}$/.test(grantId) || !(await revokeGrantOfUser(deps.store, deps.clock, grantId, user.sub))) return errorPage('Not found', 'There is no such connection of yours (it may have ended already).', 404);
      deps.log.info('grant revoked by its user', { user: user.sub, grant: grantId });
      return back('revoked');
    }
    case 'save-credential': {
      const route = credentialRoute(deps, form.get('route'));
      // A service account is connected through the service, never typed in.
      if (!route || route.userCredential!.oauth) return errorPage('Not found', 'No route of this gateway takes a credential of yours by that name.', 404);
      const refusal = routeRefusal(deps.config.oauth, route, user);
      if (refusal) return errorPage('No access to this MCP server', `${refusal}.`, 403);
      const value = credentialInput(form.get(credentialField(route).name));
      const problem = credentialProblem(route, value);
      if (problem) return renderAccount(deps, req, user, { errors: new Map([[route.path, problem]]) }, 400);
      await saveUserCredential(deps.store, deps.clock, deps.credentialKeys!, user, route.path, value);
      deps.log.info('user credential stored', { user: user.sub, route: route.path, via: 'account' });
      return back('saved');
    }
    case 'connect-service': {
      const route = credentialRoute(deps, form.get('route'));
      if (!route?.userCredential!.oauth) return errorPage('Not found', 'No route of this gateway connects an account of yours by that name.', 404);
      const refusal = routeRefusal(deps.config.oauth, route, user);
      if (refusal) return errorPage('No access to this MCP server', `${refusal}.`, 403);
      // Each start writes a pending request, as /authorize does: limited like it.
      await enforceLimit(deps.store, deps.clock, 'authorize', ctx.clientIp, { max: deps.config.oauth.rateLimits.authorize, windowMs: 60_000 });
      return startAccountServiceConnection(deps, req, user, route);
    }
    case 'delete-credential': {
      const route = credentialRoute(deps, form.get('route'));
      if (!route) return errorPage('Not found', 'No route of this gateway takes a credential of yours by that name.', 404);
      if (route.userCredential!.oauth) return back(DISCONNECTED[await disconnectServiceAccount({ ...deps, credentialKeys: deps.credentialKeys! }, route, user.sub)]);
      if (await deleteUserCredential(deps.store, user.sub, route.path)) deps.log.info('user credential deleted', { user: user.sub, route: route.path, via: 'account' });
      return back('deleted');
    }
    case 'sign-out': {
      const cookie = await endBrowserSession(deps.store, deps.config, req);
      return page({ title: 'Signed out', headers: { 'set-cookie': cookie }, body: '<h1>Signed out</h1><p>This browser is signed out of the gateway. Your connected clients keep their access; revoke them on your account page.</p><p class="muted">You can close this window.</p>' });
    }
    default:
      return errorPage('Refused', 'Unknown action.', 400);
  }
}

function credentialRoute(deps: HandlerDeps, path: string | null): RouteConfig | undefined {
  return deps.config.routes.find((r) => r.path === path && r.userCredential);
}
