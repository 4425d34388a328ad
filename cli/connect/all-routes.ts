import { Client, CallToolRequestSchema, ListToolsRequestSchema, Server, StdioServerTransport, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { Authorizer, ResourceRefused, type AuthOptions } from './auth.ts';
import { ConnectError, checkSafeUrl, fetchJson } from './discovery.ts';

// `mcp-front connect <gateway> --all`: every route of an mcp-front gateway as one stdio MCP
// server, after one sign-in and one consent that cover them all (several RFC 8707 resources in
// one authorization). Tool names get the route's name as a prefix: `notion__search`. A route
// the user may not use (routes[].access) is not in the grant: it is skipped, and the others served.

const SEPARATOR = '__';

interface RouteInfo {
  readonly name: string;
  readonly path: string;
  readonly url: string;
}

export async function listRoutes(gateway: string): Promise<RouteInfo[]> {
  const base = checkSafeUrl(gateway, 'the gateway URL');
  const res = await fetchJson(`${base.origin}/routes`);
  const routes = (res.body as { routes?: Array<{ name?: unknown; path?: unknown; url?: unknown }> } | undefined)?.routes;
  if (res.status !== 200 || !Array.isArray(routes)) throw new ConnectError(`${base.origin} does not list its routes (GET /routes): is it an mcp-front gateway?`);
  return routes.flatMap((r) =>
    typeof r.name === 'string' && typeof r.url === 'string' ? [{ name: r.name, path: typeof r.path === 'string' ? r.path : `/${r.name}`, url: checkSafeUrl(r.url, 'a route URL').toString() }] : [],
  );
}

/** Why a route gave no token, for a person. */
function refusalReason(refused: ResourceRefused): string {
  // invalid_target (RFC 8707 §2.2): not in the grant; mcp-front leaves out the routes a user may not use.
  if (refused.code === 'invalid_target') return "you don't have access to this route";
  return `you no longer have access to this route${refused.description ? ` (${refused.description})` : ''}`;
}

/** A token for the route now, or why the server will not give one. */
async function tokenAnswer(auth: Authorizer, route: RouteInfo): Promise<ResourceRefused | undefined> {
  try {
    await auth.accessTokenFor(route.url);
    return undefined;
  } catch (err) {
    if (err instanceof ResourceRefused) return err;
    throw err;
  }
}

/** The routes refused a token, each asked in turn (each refresh rotates the token the next one uses). */
async function refusals(auth: Authorizer, routes: readonly RouteInfo[]): Promise<Map<RouteInfo, ResourceRefused>> {
  const refused = new Map<RouteInfo, ResourceRefused>();
  for (const route of routes) {
    const answer = await tokenAnswer(auth, route);
    if (answer) refused.set(route, answer);
  }
  return refused;
}

/**
 * Signs in if need be and asks a token for each route by name. Every route refused with
 * invalid_grant means the grant is over (expired, revoked, or no route left to it): one new
 * sign-in, unless this run just made one.
 */
async function refusedRoutes(auth: Authorizer, routes: readonly RouteInfo[]): Promise<Map<RouteInfo, ResourceRefused>> {
  const signedInNow = await auth.ensureSignedIn();
  const refused = await refusals(auth, routes);
  if (signedInNow || refused.size < routes.length || [...refused.values()].some((r) => r.code !== 'invalid_grant')) return refused;
  await auth.ensureSignedIn({ again: true });
  return refusals(auth, routes);
}

export async function runAllRoutes(gateway: string, options: Omit<AuthOptions, 'resources'>): Promise<void> {
  const routes = await listRoutes(gateway);
  if (!routes.length) throw new ConnectError(`${gateway} has no routes`);
  // routes[0] only names the grant file and where discovery starts: no route is the primary one,
  // since any of them may be left out of the grant.
  const auth = new Authorizer(routes[0]!.url, { ...options, resources: routes.map((r) => r.url) });
  const refused = await refusedRoutes(auth, routes);

  const clients = new Map<string, InstanceType<typeof Client>>();
  await Promise.all(
    routes.map(async (route) => {
      if (refused.has(route)) return;
      // A 401 (the gateway rotated its key, or the token was cut short): refresh once and retry.
      const authorized: typeof fetch = async (input, init) => {
        const send = async (token: string) => fetch(input, { ...init, headers: { ...Object.fromEntries(new Headers(init?.headers)), authorization: `Bearer ${token}` } });
        const token = await auth.accessTokenFor(route.url);
        const res = await send(token);
        if (res.status !== 401) return res;
        await res.body?.cancel();
        return send(await auth.renewFor(route.url, token));
      };
      const client = new Client({ name: 'mcp-front connect --all', version: '1.0.0' });
      try {
        await client.connect(new StreamableHTTPClientTransport(new URL(route.url), { fetch: authorized }));
        clients.set(route.name, client);
      } catch (err) {
        // A token cached from before was refused (401) and the refresh answered for the route now.
        if (!(err instanceof ResourceRefused)) throw err;
        refused.set(route, err);
        await client.close();
      }
    }),
  );
  const reasons = routes.flatMap((route) => (refused.has(route) ? [`${route.path}: ${refusalReason(refused.get(route)!)}`] : []));
  if (!clients.size) throw new ConnectError(`you don't have access to any route of ${gateway} (${reasons.join('; ')})`);
  for (const reason of reasons) options.log(`mcp-front connect: skipping ${reason}`);
  const pathOf = new Map(routes.map((r) => [r.name, r.path]));
  // A route taken away since (refresh answers invalid_grant for it): its tools are left out and
  // its calls answer why; the other routes carry on.
  const withdrawn = (name: string, err: unknown) => {
    if (!(err instanceof ResourceRefused)) throw err;
    return `mcp-front connect: ${pathOf.get(name)}: ${refusalReason(err)}`;
  };

  const server = new Server({ name: 'mcp-front (all routes)', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const lists = await Promise.all(
      [...clients].map(async ([name, client]) => {
        try {
          return (await client.listTools()).tools.map((tool) => ({ ...tool, name: `${name}${SEPARATOR}${tool.name}` }));
        } catch (err) {
          options.log(withdrawn(name, err));
          return [];
        }
      }),
    );
    return { tools: lists.flat() };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const at = request.params.name.indexOf(SEPARATOR);
    const name = at > 0 ? request.params.name.slice(0, at) : '';
    const client = clients.get(name);
    if (!client) throw new ConnectError(`no route for tool ${request.params.name}`);
    try {
      return await client.callTool({ ...request.params, name: request.params.name.slice(at + SEPARATOR.length) });
    } catch (err) {
      return { content: [{ type: 'text' as const, text: withdrawn(name, err) }], isError: true };
    }
  });
  const stdio = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => (stdio.onclose = resolve));
  await server.connect(stdio);
  process.stdin.once('end', () => void server.close());
  await closed;
  await Promise.all([...clients.values()].map((c) => c.close()));
}
