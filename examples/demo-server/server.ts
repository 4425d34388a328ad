import { createServer } from 'node:http';
import { z } from 'zod';
import { McpServer, StdioServerTransport } from '../../lib/mcp/sdk.ts';
import { perSessionEndpoint } from '../../lib/mcp/sdk-sessions.ts';
import { toNodeListener } from '../../lib/http/node-server.ts';
import { silentLogger } from '../../lib/log.ts';

// The bundled demo MCP server, written with the official SDK: what `npm start` serves on both
// example routes, and what the tests and benchmarks measure against. stdio by default;
// `--http` serves Streamable HTTP on 127.0.0.1:$PORT/mcp (stateful, one transport per session).

function demoServer(): McpServer {
  const server = new McpServer({ name: 'mcp-front-demo', version: '1.0.0' });
  server.registerTool('echo', { description: 'Returns its text', inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text }] }));
  server.registerTool('add', { description: 'Adds two numbers', inputSchema: { a: z.number(), b: z.number() } }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
  server.registerTool('slow', { description: 'Waits ms milliseconds', inputSchema: { ms: z.number().int().min(0).max(600_000) } }, async ({ ms }, extra) => {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      extra.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()));
    });
    return { content: [{ type: 'text', text: `waited ${ms} ms` }] };
  });
  server.registerTool('big', { description: 'Returns kb kilobytes of text', inputSchema: { kb: z.number().int().min(0).max(100_000) } }, async ({ kb }) => ({
    content: [{ type: 'text', text: 'x'.repeat(kb * 1024) }],
  }));
  return server;
}

async function serveStdio(): Promise<void> {
  const server = demoServer();
  await server.connect(new StdioServerTransport());
  process.stdin.on('end', () => process.exit(0));
}

async function serveHttp(port: number): Promise<void> {
  const endpoint = perSessionEndpoint((transport) => demoServer().connect(transport));
  const handler = async (req: Request): Promise<Response> => (new URL(req.url).pathname === '/mcp' ? endpoint(req) : new Response('not found', { status: 404 }));
  const http = createServer(toNodeListener(async (req) => handler(req), { log: silentLogger }));
  await new Promise<void>((resolve) => http.listen(port, '127.0.0.1', resolve));
  const address = http.address() as { port: number };
  process.stdout.write(`listening on http://127.0.0.1:${address.port}/mcp\n`);
  process.on('SIGTERM', () => {
    http.closeAllConnections();
    http.close(() => process.exit(0));
  });
}

if (process.argv.includes('--http')) await serveHttp(Number(process.env.PORT ?? 0));
else await serveStdio();
