import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { alive, startRoute, until, type RouteHarness } from '../support/route-harness.ts';
import { descendantsOf } from '../support/process-table.ts';

// Children that crash, stall, ignore SIGTERM or leave grandchildren; backends that are down.
// Each ends in a clear error to the client, a working route afterwards, and no process left.

const FIXTURE = 'test/fixtures/misbehaving-server.ts';
const stdioRoute = (mode: string, timeout = '20s') => `    path: /faulty\n    type: stdio\n    command: [node, ${FIXTURE}, ${mode}]\n    timeout: ${timeout}`;

let route: RouteHarness | undefined;
afterEach(async () => {
  await route?.close();
  route = undefined;
});

describe('stdio faults', () => {
  it('a child that dies mid-request fails that request with a JSON-RPC error at once', async () => {
    route = await startRoute(stdioRoute('crash-on-call'));
    const { client } = await route.connect();
    await expect(client.callTool({ name: 'echo', arguments: { text: 'x' } })).rejects.toThrow(/exited/);
    expect(route.service.sessionCount()).toBe(0);
    await client.close();
  });

  it('a stalled child hits the route timeout and the client gets a JSON-RPC error', async () => {
    route = await startRoute(stdioRoute('stall', '1s'));
    const { client, transport } = await route.connect();
    const started = Date.now();
    await expect(client.callTool({ name: 'echo', arguments: { text: 'x' } }, undefined, { timeout: 30_000 })).rejects.toThrow(/did not answer within 1 s/);
    expect(Date.now() - started).toBeLessThan(30_000); // bounded: the route answered, not the client's own timer
    await transport.terminateSession();
    await client.close();
  });

  it('stderr floods and non-JSON stdout lines are logged, not fatal', async () => {
    route = await startRoute(stdioRoute('noisy'));
    const { client, transport } = await route.connect();
    expect(await client.callTool({ name: 'echo', arguments: { text: 'still fine' } })).toEqual({ content: [{ type: 'text', text: 'still fine' }] });
    await transport.terminateSession();
    await client.close();
  });

  it.each([
    ['a child that ignores SIGTERM', 'ignore-term', 0],
    ['a child that started a grandchild', 'grandchild', 1],
  ])('%s leaves nothing behind', async (_name, mode, descendants) => {
    route = await startRoute(stdioRoute(mode));
    const { client, transport } = await route.connect();
    const [pid] = route.service.childPids();
    expect(pid).toBeDefined();
    // The precondition: the grandchild is running before the session ends, else this proves nothing.
    expect(await until(() => descendantsOf(pid!).length === descendants)).toBe(true);
    const family = [pid!, ...descendantsOf(pid!).map((p) => p.pid)];
    expect(family).toHaveLength(1 + descendants);
    expect(family.every(alive)).toBe(true);
    await transport.terminateSession();
    expect(await until(() => family.every((p) => !alive(p)))).toBe(true);
    await client.close();
  });
});

describe('http backend faults', () => {
  it('a backend that is down gives 502 with a JSON-RPC error, and the route stays healthy', async () => {
    route = await startRoute('    path: /down\n    type: http\n    backend: http://127.0.0.1:9/mcp');
    const res = await fetch(route.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { id: number; error: { code: number; message: string } };
    expect(body.id).toBe(1);
    expect(body.error.message).toMatch(/unreachable/);
    expect(route.service.sessionCount()).toBe(0);
  });

  it('a stalled http backend hits the route timeout', async () => {
    const stalled = createServer(() => undefined); // accepts, never answers
    await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
    try {
      route = await startRoute(`    path: /slow\n    type: http\n    backend: http://127.0.0.1:${(stalled.address() as { port: number }).port}/mcp\n    timeout: 1s`);
      const res = await fetch(route.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
      });
      const body = (await res.json()) as { error: { code: number; message: string } };
      expect(body.error.message).toMatch(/did not answer within 1 s/);
    } finally {
      stalled.closeAllConnections();
      stalled.close();
    }
  });

  /** An MCP backend that initializes properly and then answers every request in one bad way. */
  async function misbehavingBackend(mode: 'reset' | 'malformed-sse' | 'truncated-json' | 'wrong-id' | 'html') {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        if (req.method !== 'POST') return void res.writeHead(405).end();
        const msg = JSON.parse(body) as { id?: number; method: string; params?: { protocolVersion?: string } };
        if (msg.method === 'initialize') {
          const result = { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'bad', version: '1' } };
          return void res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'backend-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
        }
        if (msg.id === undefined) return void res.writeHead(202).end();
        if (mode === 'reset') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('event: message\n');
          setTimeout(() => res.socket?.destroy(), 20);
        } else if (mode === 'malformed-sse') {
          res.writeHead(200, { 'content-type': 'text/event-stream' }).end('data: {not json\n\nevent: message\ndata: [1,2\n\n: only a comment\n\nretry: x\n\n');
        } else if (mode === 'truncated-json') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc": "2.0", "id": ');
        } else if (mode === 'wrong-id') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 987654, result: {} }));
        } else {
          res.writeHead(200, { 'content-type': 'text/html' }).end('<html>proxy error</html>');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/mcp`, close: () => (server.closeAllConnections(), server.close()) };
  }

  it.each([
    ['reset', /the MCP server's answer broke off/],
    ['malformed-sse', /the MCP server ended its answer without a response to this request/],
    ['truncated-json', /the MCP server's answer broke off/],
    ['wrong-id', /the MCP server ended its answer without a response to this request/],
    ['html', /the MCP server's answer broke off/],
  ] as const)('a backend that answers a call with %s: the call fails with a clear error, well before the timeout, and the route keeps serving', async (mode, says) => {
    const backend = await misbehavingBackend(mode);
    try {
      route = await startRoute(`    path: /bad\n    type: http\n    backend: ${backend.url}\n    timeout: 20s`);
      const { client } = await route.connect();
      const started = Date.now();
      const error = await client.callTool({ name: 'echo', arguments: { text: 'x' } }).then(() => undefined, (err: Error) => err);
      // The gateway's own JSON-RPC error (BackendFailed), saying what went wrong, not a client-side timeout.
      expect(error).toMatchObject({ code: -32000, message: expect.stringMatching(says) });
      expect(Date.now() - started).toBeLessThan(10_000);
      // Still serving: another session initializes and lists its (broken) backend's answer again.
      const again = await route.connect();
      expect(again.client.getServerVersion()?.name).toBe('bad');
      await again.client.close();
      await client.close();
    } finally {
      backend.close();
    }
  });
});

