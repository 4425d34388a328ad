import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevBackend, type DevBackend } from '../../cli/dev-backend.ts';
import { silentLogger } from '../../lib/log.ts';
import type { HttpRouteConfig } from '../../lib/config/config.ts';
import { startRoute } from '../support/route-harness.ts';

// The http proxy: the demo server over Streamable HTTP behind a route, backend credentials
// from config (static headers; a Google ID token minted by a stand-in metadata server), and
// never the user's own token.

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A minimal MCP backend that records the headers of every request it gets. */
function recordingBackend(seen: IncomingHttpHeaders[]): Server {
  return createServer((req, res) => {
    seen.push(req.headers);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const m = JSON.parse(body) as { id?: number; method: string };
      if (m.id === undefined) return void res.writeHead(202).end();
      const result = m.method === 'initialize' ? { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'recorder', version: '1' } } : { content: [{ type: 'text', text: 'recorded' }] };
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'backend-session-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
    });
  });
}

describe('http route', () => {
  let demo: DevBackend;
  beforeAll(async () => {
    demo = await startDevBackend({ path: '/x', devBackend: { command: ['node', 'examples/demo-server/server.ts', '--http'], path: '/mcp' } } as unknown as HttpRouteConfig, silentLogger);
  });
  afterAll(async () => demo?.stop());

  it('proxies the demo server over Streamable HTTP, 10 MB results included', async () => {
    const route = await startRoute(`    path: /demo-http\n    type: http\n    backend: ${demo.url}`);
    try {
      const { client, transport } = await route.connect();
      expect(await client.callTool({ name: 'echo', arguments: { text: 'via http' } })).toEqual({ content: [{ type: 'text', text: 'via http' }] });
      const big = (await client.callTool({ name: 'big', arguments: { kb: 10_240 } })) as { content: Array<{ text: string }> };
      expect(big.content[0]!.text.length).toBe(10 * 1024 * 1024);
      await transport.terminateSession();
      await client.close();
    } finally {
      await route.close();
    }
  });

  it('adds the configured static headers and never forwards the user\'s token', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const backend = recordingBackend(seen);
    const url = await listen(backend);
    const route = await startRoute(`    path: /rec\n    type: http\n    backend: ${url}/mcp\n    headers: { X-Api-Key: backend-secret }`);
    try {
      const token = await route.token();
      const { client } = await route.connect(token);
      await client.callTool({ name: 'anything', arguments: {} });
      await client.close();
      expect(seen.length).toBeGreaterThan(0);
      for (const headers of seen) {
        expect(headers['x-api-key']).toBe('backend-secret');
        expect(JSON.stringify(headers)).not.toContain(token);
      }
      expect(seen.at(-1)!['mcp-session-id']).toBe('backend-session-1');
    } finally {
      await route.close();
      backend.close();
    }
  });

  it('authenticates to a private Cloud Run backend with a Google ID token from the metadata server', async () => {
    const minted: string[] = [];
    const payload = Buffer.from(JSON.stringify({ aud: 'https://private-backend.example', exp: Math.floor(Date.now() / 1000) + 3600, iat: Math.floor(Date.now() / 1000) })).toString('base64url');
    const idToken = `eyJhbGciOiJSUzI1NiJ9.${payload}.c2lnbmF0dXJl`;
    const metadata = createServer((req, res) => {
      res.setHeader('metadata-flavor', 'Google');
      if (req.headers['metadata-flavor'] !== 'Google') return void res.writeHead(403).end();
      const url = new URL(req.url!, 'http://x');
      if (url.pathname.endsWith('/identity')) {
        minted.push(url.searchParams.get('audience') ?? '');
        return void res.end(idToken);
      }
      if (url.pathname === '/computeMetadata/v1/project/project-id') return void res.end('demo-project');
      res.end('');
    });
    const metadataUrl = await listen(metadata);
    const seen: IncomingHttpHeaders[] = [];
    const backend = recordingBackend(seen);
    const url = await listen(backend);
    const saved = { host: process.env.GCE_METADATA_HOST, ip: process.env.GCE_METADATA_IP, detection: process.env.METADATA_SERVER_DETECTION };
    process.env.GCE_METADATA_HOST = metadataUrl.replace('http://', '');
    process.env.METADATA_SERVER_DETECTION = 'assume-present';
    const route = await startRoute(`    path: /private\n    type: http\n    backend: ${url}/mcp\n    google_id_token_audience: https://private-backend.example`);
    try {
      const { client } = await route.connect();
      await client.callTool({ name: 'anything', arguments: {} });
      await client.close();
      expect(minted).toContain('https://private-backend.example');
      // Every request the backend got carried the ID token (and there were some).
      expect(new Set(seen.map((h) => h.authorization))).toEqual(new Set([`Bearer ${idToken}`]));
    } finally {
      await route.close();
      backend.close();
      metadata.close();
      for (const [key, value] of [['GCE_METADATA_HOST', saved.host], ['METADATA_SERVER_DETECTION', saved.detection]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });
});
