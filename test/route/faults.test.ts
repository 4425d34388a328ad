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

  it('a child that ignores SIGTERM and one that started a grandchild leave nothing behind', async () => {
    for (const mode of ['ignore-term', 'grandchild']) {
      route = await startRoute(stdioRoute(mode));
      const { client, transport } = await route.connect();
      const [pid] = route.service.childPids();
      await until(() => descendantsOf(pid!).length > 0 || mode !== 'grandchild');
      const family = [pid!, ...descendantsOf(pid!).map((p) => p.pid)];
      await transport.terminateSession();
      expect(await until(() => family.every((p) => !alive(p)))).toBe(true);
      await client.close();
      await route.close();
      route = undefined;
    }
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
});
