import { IttyRouter, type IRequest } from 'itty-router';
import type { Handler, RequestContext } from '../../lib/http/types.ts';
import { json } from '../../lib/http/types.ts';
import { errorJson, OAuthError } from '../../lib/oauth/errors.ts';
import { defaultMetadataFetcher, metadataClients, type MetadataFetcher } from '../../lib/oauth/client-metadata.ts';
import { redirectPolicy } from '../../lib/oauth/clients.ts';
import { devProvider } from '../../lib/oauth/providers/dev.ts';
import type { UpstreamProvider } from '../../lib/oauth/providers/provider.ts';
import { StoreUnavailableError } from '../../lib/store/store.ts';
import { authorize } from './authorize.ts';
import { changeAccount, showAccount } from './account.ts';
import { credentialRoutes } from '../../lib/config/config.ts';
import { callback } from './callback.ts';
import { connectCallback } from './connect.ts';
import type { SafeFetchOptions } from '../../lib/http/safe-fetch.ts';
import { serviceOAuth } from '../../lib/oauth/service-oauth.ts';
import { enforceLimit } from '../../lib/oauth/rate-limit.ts';
import { upstreamProvider } from '../../lib/oauth/providers/upstream.ts';
import { decideConsent, showConsent } from './consent.ts';
import { preflightAnswer, publicEndpointMethods, readableFromAnyOrigin } from './cors.ts';
import type { HandlerDeps, OAuthDeps } from './deps.ts';
import { authorizationServerMetadata, jwks, protectedResourceMetadata, routeList } from './metadata.ts';
import { register } from './register.ts';
import { revoke } from './revoke.ts';
import { showSignIn, submitSignIn } from './signin.ts';
import { token } from './token.ts';

// The authorization server: every endpoint behind one itty-router (the only place it is
// imported), errors rendered in one place. The same Handler serves the Cloud Function,
// `mcp-front serve` and the tests.

export type { OAuthDeps } from './deps.ts';

const ALLOWED: Record<string, string> = {
  '/authorize': 'GET',
  '/token': 'POST, OPTIONS',
  '/register': 'POST, OPTIONS',
  '/revoke': 'POST, OPTIONS',
  '/consent': 'GET, POST',
  '/callback': 'GET',
  '/connect/callback': 'GET',
  '/signin': 'GET, POST',
  '/jwks.json': 'GET, OPTIONS',
  '/routes': 'GET, OPTIONS',
  '/account': 'GET, POST',
};

function providerFor(deps: OAuthDeps): UpstreamProvider {
  if (deps.config.oauth.provider === 'dev') return devProvider(deps.config.oauth.issuer);
  return upstreamProvider(deps);
}

export interface OAuthAppOptions {
  readonly provider?: UpstreamProvider;
  /** Tests only: fetch metadata documents from a loopback stand-in. */
  readonly fetchClientMetadata?: MetadataFetcher;
  /** Tests only: reach a service's OAuth server on a loopback stand-in (its address and certificate). */
  readonly serviceFetch?: Partial<SafeFetchOptions>;
}

export function createOAuthApp(deps: OAuthDeps, options: OAuthAppOptions = {}): Handler {
  if (credentialRoutes(deps.config).length && !deps.credentialKeys) throw new Error('routes with user_credential need the credential keys (lib/tokens/credential-keys.ts)');
  const full: HandlerDeps = {
    ...deps,
    provider: options.provider ?? providerFor(deps),
    metadataClients: metadataClients(deps.store, deps.clock, options.fetchClientMetadata ?? defaultMetadataFetcher(), redirectPolicy(deps.config.oauth)),
    serviceOAuth: serviceOAuth(deps.clock, options.serviceFetch),
  };
  const router = IttyRouter<IRequest, [RequestContext]>();
  const limits = deps.config.oauth.rateLimits;
  // Per client IP (as the trusted proxies saw it: lib/http/client-ip.ts), per minute, counted in the store.
  const limited =
    (name: keyof typeof limits, handler: (req: IRequest) => Promise<Response>) =>
    async (req: IRequest, ctx: RequestContext) => {
      await enforceLimit(deps.store, deps.clock, name, ctx.clientIp, { max: limits[name], windowMs: 60_000 });
      return handler(req);
    };
  router
    .get('/.well-known/oauth-authorization-server', () => authorizationServerMetadata(full))
    .get('/.well-known/openid-configuration', () => authorizationServerMetadata(full))
    .get('/.well-known/oauth-protected-resource/*', (req) => protectedResourceMetadata(full, new URL(req.url).pathname))
    .get('/jwks.json', () => jwks(full))
    .get('/routes', () => routeList(full))
    .post('/register', limited('register', (req) => register(req, full)))
    .get('/authorize', limited('authorize', (req) => authorize(req, full)))
    .get('/signin', (req) => showSignIn(req, full))
    .post('/signin', (req) => submitSignIn(req, full))
    .get('/callback', (req) => callback(req, full))
    .get('/connect/callback', (req) => connectCallback(req, full))
    .get('/consent', (req) => showConsent(req, full))
    .post('/consent', (req) => decideConsent(req, full))
    .get('/account', (req, ctx) => showAccount(req, full, ctx))
    .post('/account', (req, ctx) => changeAccount(req, full, ctx))
    .post('/token', limited('token', (req) => token(req, full)))
    .post('/revoke', (req) => revoke(req, full));

  const answer: Handler = async (req, ctx) => {
    try {
      const response: Response | undefined = await router.fetch(req as IRequest, ctx);
      if (response) return response;
      const { pathname } = new URL(req.url);
      const wellKnown = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'].includes(pathname) || pathname.startsWith('/.well-known/oauth-protected-resource/');
      // 405 only for a path that exists under another method; an unknown path is a 404.
      const allow = ALLOWED[pathname] ?? (wellKnown && req.method !== 'GET' ? 'GET, OPTIONS' : undefined);
      if (allow) return json({ error: 'invalid_request', error_description: `${req.method} is not allowed on ${pathname}` }, 405, { allow });
      return json({ error: 'not_found', error_description: `nothing is served at ${pathname}` }, 404);
    } catch (err) {
      if (err instanceof OAuthError) return errorJson(err);
      if (err instanceof StoreUnavailableError) {
        deps.log.error('store unavailable', { error: err.message });
        return json({ error: 'temporarily_unavailable', error_description: 'the authorization server cannot reach its store; try again shortly' }, 503, { 'retry-after': '5' });
      }
      deps.log.error('authorization server error', { error: err instanceof Error ? err.stack : String(err) });
      return json({ error: 'server_error', error_description: 'unexpected error' }, 500);
    }
  };

  // Browser-based clients call the public endpoints cross-origin (cors.ts); the pages stay same-origin.
  return async (req, ctx) => {
    const methods = publicEndpointMethods(new URL(req.url).pathname);
    if (!methods) return answer(req, ctx);
    if (req.method === 'OPTIONS') return preflightAnswer(methods);
    return readableFromAnyOrigin(await answer(req, ctx));
  };
}
