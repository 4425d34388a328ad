import type { Config, HttpRouteConfig, RouteConfig } from '../lib/config/config.ts';
import { credentialRoutes, needsAssertionKey, routeResources } from '../lib/config/config.ts';
import { loadCredentialKeys } from '../lib/tokens/credential-keys.ts';
import { ConfigError } from '../lib/config/load.ts';
import { systemClock, type Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/log.ts';
import { json, urlOf, type HttpHandler } from '../lib/http/types.ts';
import { webRequest } from '../lib/http/node-request.ts';
import { healthAnswer } from '../lib/http/health.ts';
import { serveHttpHandler } from '../lib/http/node-server.ts';
import { buildUrlMap, resolveBackend } from '../lib/urlmap.ts';
import { openSessionStore, openStore } from '../lib/store/open.ts';
import type { Store } from '../lib/store/store.ts';
import { loadAssertionKeys, loadKeySet } from '../lib/tokens/keys.ts';
import { createAccessTokenVerifier } from '../lib/tokens/access-token.ts';
import { createOAuthApp, type OAuthAppOptions } from '../functions/oauth/app.ts';
import { createRouteService } from '../services/route/app.ts';
import { programFor, startDevBackend, type DevBackend } from './dev-backend.ts';

// The whole gateway in one process, for `serve`: the OAuth handlers and one route service
// per route behind an in-process router that applies the load balancer's URL map.

/** A stdio route's `node` is this process's Node (see programFor). */
function onThisNode(route: RouteConfig): RouteConfig {
  if (route.type !== 'stdio' || route.command.length === 0) return route;
  return { ...route, command: [programFor(route.command[0]!), ...route.command.slice(1)] };
}

export interface RunningStack {
  readonly issuer: string;
  readonly port: number;
  readonly store: Store;
  readonly routes: ReadonlyArray<{ route: RouteConfig; connectorUrl: string }>;
  /** Stops accepting, ends every session and child, stops dev backends, closes the store. */
  close(): Promise<void>;
}

export async function startStack(config: Config, options: { log: Logger; clock?: Clock; store?: Store; oauthOptions?: OAuthAppOptions }): Promise<RunningStack> {
  const clock = options.clock ?? systemClock;
  const log = options.log;
  const store = options.store ?? (await openStore(config.oauth, clock));
  const cleanups: Array<() => Promise<void>> = [() => store.close()];
  const closeAll = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err: unknown) => log.error('shutdown step failed', { error: String(err) }));
  };
  try {
    const needsCommand = config.routes.findIndex((r) => r.type === 'stdio' && r.command.length === 0);
    if (needsCommand !== -1) throw new ConfigError(`${config.source}: routes[${needsCommand}].command: needed to run the route here (only Cloud Run runs a route from its image's entrypoint)`);
    const accessKeys = await loadKeySet(store, clock, { fromEnv: process.env.MCP_FRONT_SIGNING_KEY });
    const assertion = needsAssertionKey(config) ? await loadAssertionKeys(store, clock, { fromEnv: process.env.MCP_FRONT_ASSERTION_KEY }) : undefined;
    const keys = assertion ? { ...accessKeys, assertion } : accessKeys;
    const verifier = createAccessTokenVerifier({ issuer: config.oauth.issuer, keys: [...keys.published], clock });
    const credentialKeys = credentialRoutes(config).length ? await loadCredentialKeys(store, clock, config.routes, process.env) : undefined;
    const oauth = createOAuthApp({ config, store, keys, clock, log, credentialKeys }, options.oauthOptions);

    const devBackends: DevBackend[] = [];
    cleanups.push(async () => void (await Promise.all(devBackends.map((b) => b.stop()))));
    const routes = await Promise.all(
      config.routes.map(async (route): Promise<RouteConfig> => {
        if (route.type !== 'http' || !route.devBackend) return route;
        const backend = await startDevBackend(route, log);
        devBackends.push(backend);
        return { ...route, backend: backend.url } satisfies HttpRouteConfig;
      }),
    );
    // As deployed: on Firestore the routes keep their sessions in a database of their own.
    const sessionStore = options.store || config.oauth.storage === 'sqlite' ? store : await openSessionStore(config.oauth, clock);
    if (sessionStore !== store) cleanups.push(() => sessionStore.close());
    const services = new Map(routes.map((route) => [route.path, createRouteService({ config, route: onThisNode(route), store: sessionStore, verifier, clock, log: log.child({ route: route.path }), assertionKey: assertion?.current, credentialKeys: credentialKeys?.routes.get(route.path) })]));
    const closeServices = async () => void (await Promise.all([...services.values()].map((s) => s.close())));

    const urlMap = buildUrlMap({ routes });
    const handler: HttpHandler = async (req, ctx) => {
      const { pathname } = urlOf(req);
      const health = healthAnswer(pathname, config.server.healthPath, store);
      if (health) return health;
      const backend = resolveBackend(urlMap, pathname);
      if (!backend) return json({ error: 'not_found', error_description: `nothing is served at ${pathname}` }, 404);
      if (backend.kind === 'oauth') return oauth(webRequest(req), ctx);
      return services.get(backend.route.path)!.handle(req, ctx);
    };

    const server = await serveHttpHandler(handler, { host: config.server.host, port: config.server.port, log, requestTimeoutMs: config.server.requestTimeout, trustedProxies: config.server.trustedProxies });
    // Registered last so it runs first: stop taking requests, end sessions (which closes their
    // streams, so the connections can finish), then wait for the server to be done.
    cleanups.push(async () => {
      const stopped = server.close();
      await closeServices();
      await stopped;
    });
    return {
      issuer: config.oauth.issuer,
      port: server.port,
      store,
      routes: routes.map((route) => ({ route, connectorUrl: routeResources(config.oauth.issuer, route)[0]! })),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
