import { readFileSync } from 'node:fs';
import { systemClock } from '../../lib/clock.ts';
import { ConfigError, loadConfig } from '../../lib/config/load.ts';
import type { StdioRouteConfig } from '../../lib/config/config.ts';
import { serveHttpHandler } from '../../lib/http/node-server.ts';
import { createLogger } from '../../lib/log.ts';
import { openSessionStore } from '../../lib/store/open.ts';
import { urlOf, type HttpHandler } from '../../lib/http/types.ts';
import { healthAnswer } from '../../lib/http/health.ts';
import { createAccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import { loadAssertionKeys, type SigningKey } from '../../lib/tokens/keys.ts';
import { createRouteService } from './app.ts';
import { loadRouteCredentialKeys, routeKeyVariable } from '../../lib/tokens/credential-keys.ts';

// The Cloud Run entrypoint of one route (and the bridge layered onto a stdio server's image):
// MCP_FRONT_CONFIG names the config, MCP_FRONT_ROUTE the route; tokens verify against the
// issuer's JWKS. The only process it starts is the route's server, one per session.

const log = createLogger({ base: { service: 'mcp-route' } });

function routeFromEnv() {
  const file = process.env.MCP_FRONT_CONFIG;
  const path = process.env.MCP_FRONT_ROUTE;
  if (!file || !path) throw new ConfigError('set MCP_FRONT_CONFIG (the YAML) and MCP_FRONT_ROUTE (e.g. /notion)');
  const config = loadConfig(file);
  let route = config.routes.find((r) => r.path === path);
  if (!route) throw new ConfigError(`${file}: no route ${path}`);
  if (route.type === 'stdio' && route.command.length === 0) route = { ...route, command: imageCommand() } satisfies StdioRouteConfig;
  return { config, route };
}

/** The server image's own ENTRYPOINT + CMD, captured at build time (see infra/image.ts). */
function imageCommand(): string[] {
  const file = process.env.MCP_FRONT_COMMAND_FILE;
  if (!file) throw new ConfigError('the route has no command and MCP_FRONT_COMMAND_FILE is not set');
  const { entrypoint, cmd } = JSON.parse(readFileSync(file, 'utf8')) as { entrypoint: string[] | null; cmd: string[] | null };
  const command = [...(entrypoint ?? []), ...(cmd ?? [])];
  if (!command.length) throw new ConfigError(`${file}: the image has neither ENTRYPOINT nor CMD`);
  return command;
}

/** Cloud Run allows 10 s between SIGTERM and SIGKILL: calls get 5 s to finish, children 3 s more to exit. */
const DRAIN_MS = 5000;

try {
  const { config, route } = routeFromEnv();
  // The sessions database only: this process's credentials are within reach of the stdio server.
  const store = await openSessionStore(config.oauth, systemClock);
  const verifier = createAccessTokenVerifier({ issuer: config.oauth.issuer, keys: new URL(`${config.oauth.issuer}/jwks.json`), clock: systemClock });
  // Only an http route that sends identity assertions holds the assertion key (deploy grants it
  // that secret alone); never the store's: a route reaches the sessions database only.
  let assertionKey: SigningKey | undefined;
  if (route.type === 'http' && route.identity === 'assertion') {
    if (!process.env.MCP_FRONT_ASSERTION_KEY) throw new ConfigError(`${route.path}: identity: assertion needs MCP_FRONT_ASSERTION_KEY (deploy sets it from the mcp-front-assertion-key secret)`);
    assertionKey = (await loadAssertionKeys(undefined, systemClock, { fromEnv: process.env.MCP_FRONT_ASSERTION_KEY })).current;
  }
  // A route taking users' own credentials holds its own key for them (deploy grants it that
  // secret alone), never the sealing key of the stored ones nor another route's.
  if (route.userCredential && !process.env[routeKeyVariable(route)]) throw new ConfigError(`${route.path}: user_credential needs ${routeKeyVariable(route)} (deploy sets it from the ${route.name} credential key secret)`);
  const credentialKeys = route.userCredential ? await loadRouteCredentialKeys(undefined, systemClock, route, process.env) : undefined;
  const service = createRouteService({ config, route, store, verifier, clock: systemClock, log: log.child({ route: route.path }), assertionKey, credentialKeys });
  // Liveness, and readiness (the startup probe the deploy plan sets): the sessions store answers.
  const handler: HttpHandler = (req, ctx) => healthAnswer(urlOf(req).pathname, config.server.healthPath, store) ?? service.handle(req, ctx);
  const server = await serveHttpHandler(handler, { host: config.server.host, port: Number(process.env.PORT ?? config.server.port), log, trustedProxies: config.server.trustedProxies, drainMs: DRAIN_MS + 2000, requestTimeoutMs: config.server.requestTimeout });
  log.info('route listening', { route: route.path, port: server.port, type: route.type });
  // Stop accepting, let calls finish, end sessions and children, exit: all inside Cloud Run's 10 s.
  const stop = async (signal: string) => {
    log.info('shutting down', { signal });
    const stopped = server.close();
    await service.close(DRAIN_MS);
    await stopped;
    await store.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  if (err instanceof ConfigError) {
    log.error(err.message);
    process.exit(1);
  }
  throw err;
}
