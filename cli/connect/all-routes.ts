import { Client, CallToolRequestSchema, ListToolsRequestSchema, Server, StdioServerTransport, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { Authorizer, type AuthOptions } from './auth.ts';
import { ConnectError, checkSafeUrl, fetchJson } from './discovery.ts';

// `mcp-front connect <gateway> --all`: every route of an mcp-front gateway as one stdio MCP
// server, after one sign-in and one consent that cover them all (several RFC 8707 resources in
// one authorization). Tool names get the route's name as a prefix: `notion__search`.

const SEPARATOR = '__';

interface RouteInfo {
  readonly name: string;
  readonly url: string;
}

export async function listRoutes(gateway: string): Promise<RouteInfo[]> {
  const base = checkSafeUrl(gateway, 'the gateway URL');
  const res = await fetchJson(`${base.origin}/routes`);
  const routes = (res.body as { routes?: Array<{ name?: unknown; url?: unknown }> } | undefined)?.routes;
  if (res.status !== 200 || !Array.isArray(routes)) throw new ConnectError(`${base.origin} does not list its routes (GET /routes): is it an mcp-front gateway?`);
  return routes.flatMap((r) => (typeof r.name === 'string' && typeof r.url === 'string' ? [{ name: r.name, url: checkSafeUrl(r.url, 'a route URL').toString() }] : []));
}

export async function runAllRoutes(gateway: string, options: Omit<AuthOptions, 'resources'>): Promise<void> {
  const routes = await listRoutes(gateway);
  if (!routes.length) throw new ConnectError(`${gateway} has no routes`);
  const auth = new Authorizer(routes[0]!.url, { ...options, resources: routes.map((r) => r.url) });
  await auth.accessToken(); // the one sign-in, before the client's first request needs it

  const clients = new Map<string, InstanceType<typeof Client>>();
  await Promise.all(
    routes.map(async (route) => {
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
      await client.connect(new StreamableHTTPClientTransport(new URL(route.url), { fetch: authorized }));
      clients.set(route.name, client);
    }),
  );

  const server = new Server({ name: 'mcp-front (all routes)', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const lists = await Promise.all([...clients].map(async ([name, client]) => (await client.listTools()).tools.map((tool) => ({ ...tool, name: `${name}${SEPARATOR}${tool.name}` }))));
    return { tools: lists.flat() };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const at = request.params.name.indexOf(SEPARATOR);
    const client = at > 0 ? clients.get(request.params.name.slice(0, at)) : undefined;
    if (!client) throw new ConnectError(`no route for tool ${request.params.name}`);
    return client.callTool({ ...request.params, name: request.params.name.slice(at + SEPARATOR.length) });
  });
  const stdio = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => (stdio.onclose = resolve));
  await server.connect(stdio);
  process.stdin.once('end', () => void server.close());
  await closed;
  await Promise.all([...clients.values()].map((c) => c.close()));
}
