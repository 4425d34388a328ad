import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import type { Config, HttpRouteConfig, RouteConfig } from '../../lib/config/config.ts';
import { serveHttpHandler, type RunningServer } from '../../lib/http/node-server.ts';
import { silentLogger, type Logger } from '../../lib/log.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { loadKeySet, type KeySet } from '../../lib/tokens/keys.ts';
import { createAccessTokenVerifier, signAccessToken } from '../../lib/tokens/access-token.ts';
import { createRouteService, type RouteService } from '../../services/route/app.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';

// One route service on a loopback port with real keys and real tokens, for route tests and
// benchmarks: no OAuth flow needed to get a token the route accepts.

export interface RouteHarness {
  readonly config: Config;
  readonly route: RouteConfig;
  readonly service: RouteService;
  readonly server: RunningServer;
  readonly store: Store;
  readonly issuer: string;
  /** The route's MCP endpoint URL. */
  readonly url: string;
  token(options?: { sub?: string; aud?: string; ttlMs?: number }): Promise<string>;
  /** An SDK client connected with a bearer token. */
  connect(token?: string): Promise<{ client: InstanceType<typeof Client>; transport: InstanceType<typeof StreamableHTTPClientTransport> }>;
  close(): Promise<void>;
}

/** `routeYaml` is one route entry (YAML list item body, indented by 4). */
export async function startRoute(routeYaml: string, options: { store?: Store; log?: Logger; keepaliveMs?: number; keys?: KeySet; serverYaml?: string } = {}): Promise<RouteHarness> {
  // The issuer must name the port before it is known: serve on a fixed free port.
  const { freePort } = await import('../../cli/dev-backend.ts');
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const server = options.serverYaml ? `server:\n${options.serverYaml}\n` : '';
  const config = parseConfig(`oauth:\n  issuer: ${issuer}\n  provider: dev\nroutes:\n  -\n${routeYaml}\n${server}`, {}, 'route-harness.yaml');
  const route = config.routes[0]!;
  const store = options.store ?? (await openSqliteStore({ file: ':memory:', clock: systemClock }));
  const keys = options.keys ?? (await loadKeySet(store, systemClock));
  const verifier = createAccessTokenVerifier({ issuer, keys: [...keys.published], clock: systemClock });
  const log = options.log ?? silentLogger;
  const service = createRouteService({ config, route, store, verifier, clock: systemClock, log, keepaliveMs: options.keepaliveMs });
  const running = await serveHttpHandler((req, ctx) => service.handle(req, ctx), { host: '127.0.0.1', port, log });
  const url = `${issuer}${route.path}/mcp`;
  const token = async (o: { sub?: string; aud?: string; ttlMs?: number } = {}) =>
    (await signAccessToken(keys.current, issuer, o.ttlMs ?? 3_600_000, systemClock, { sub: o.sub ?? 'dev:ada@example.com', email: 'ada@example.com', aud: o.aud ?? url, client_id: 'test-client', scope: 'mcp' })).token;
  return {
    config,
    route,
    service,
    server: running,
    store,
    issuer,
    url,
    token,
    async connect(bearer) {
      const client = new Client({ name: 'route-test', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${bearer ?? (await token())}` } } });
      await client.connect(transport);
      return { client, transport };
    },
    async close() {
      await service.close();
      await running.close();
      if (!options.store) await store.close();
    },
  };
}

/** True while a process with this pid exists (zombies included). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function until(condition: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return condition();
}

/**
 * A fixture MCP server behind a route of either kind: a stdio child per session, or the
 * fixture's `--http` form (one server, started here) behind an http route at `path`-http.
 * Closing the route also stops that server.
 */
export async function startFixtureRoute(fixture: string, kind: 'stdio' | 'http', path: string): Promise<RouteHarness> {
  if (kind === 'stdio') return startRoute(`    path: ${path}\n    type: stdio\n    command: [node, ${fixture}]\n    timeout: 20s`);
  const { startDevBackend } = await import('../../cli/dev-backend.ts');
  const backend = await startDevBackend({ path, devBackend: { command: ['node', fixture, '--http'], path: '/mcp' } } as unknown as HttpRouteConfig, silentLogger);
  const route = await startRoute(`    path: ${path}-http\n    type: http\n    backend: ${backend.url}\n    timeout: 20s`).catch(async (err: unknown) => {
    await backend.stop();
    throw err;
  });
  return {
    ...route,
    async close() {
      await route.close();
      await backend.stop();
    },
  };
}
