import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, startRoute, until, type RouteHarness } from '../support/route-harness.ts';
import { Client, SSEClientTransport } from '../../lib/mcp/sdk.ts';
import { memoryLogger } from '../../lib/log.ts';

// A stdio route end to end: the real demo server as a child per session, the real SDK client,
// real HTTP on loopback, real tokens.

const DEMO = '    path: /demo\n    type: stdio\n    command: [node, examples/demo-server/server.ts]\n    timeout: 20s';

describe('stdio route', () => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startRoute(DEMO);
  });
  afterAll(async () => route?.close());

  const initialize = (headers: Record<string, string> = {}) =>
    fetch(route.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });

  it('answers 401 with the resource metadata challenge when there is no token', async () => {
    const res = await initialize();
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${route.issuer}/.well-known/oauth-protected-resource/demo/mcp", scope="mcp"`);
  });

  it('refuses a token issued for another route', async () => {
    const res = await initialize({ authorization: `Bearer ${await route.token({ aud: `${route.issuer}/other/mcp` })}` });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('refuses a foreign Origin with 403 and an unsupported protocol version with 400', async () => {
    const token = await route.token();
    expect((await initialize({ authorization: `Bearer ${token}`, origin: 'https://attacker.example' })).status).toBe(403);
    expect((await initialize({ authorization: `Bearer ${token}`, 'mcp-protocol-version': '1999-01-01' })).status).toBe(400);
  });

  it('lists tools and calls echo, add, big and slow through the SDK client', async () => {
    const { client, transport } = await route.connect();
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(['add', 'big', 'echo', 'slow']);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'héllo ✓' } })).toEqual({ content: [{ type: 'text', text: 'héllo ✓' }] });
    expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })).toEqual({ content: [{ type: 'text', text: '42' }] });
    const big = (await client.callTool({ name: 'big', arguments: { kb: 10_240 } })) as { content: Array<{ text: string }> };
    expect(big.content[0]!.text.length).toBe(10 * 1024 * 1024);
    expect(await client.callTool({ name: 'slow', arguments: { ms: 50 } })).toEqual({ content: [{ type: 'text', text: 'waited 50 ms' }] });
    await transport.terminateSession();
    await client.close();
  });

  it('matches 1,000 interleaved concurrent calls on one session to their requests, and carries a 1 MB argument', async () => {
    const { client, transport } = await route.connect();
    const texts = Array.from({ length: 1000 }, (_, i) => `call-${i}-${'x'.repeat(i % 7)}`);
    const results = await Promise.all(texts.map((text, i) => (i % 5 === 0 ? client.callTool({ name: 'slow', arguments: { ms: i % 20 } }) : client.callTool({ name: 'echo', arguments: { text } }))));
    results.forEach((result, i) => {
      const expected = i % 5 === 0 ? `waited ${i % 20} ms` : texts[i];
      expect(result).toEqual({ content: [{ type: 'text', text: expected }] });
    });
    const megabyte = 'é'.repeat(512 * 1024); // 1 MiB of UTF-8, multi-byte all the way
    expect(await client.callTool({ name: 'echo', arguments: { text: megabyte } })).toEqual({ content: [{ type: 'text', text: megabyte }] });
    await transport.terminateSession();
    await client.close();
  });

  it('ends the child when the client DELETEs the session', async () => {
    const { client, transport } = await route.connect();
    const [pid] = route.service.childPids();
    expect(pid && alive(pid)).toBe(true);
    await transport.terminateSession();
    expect(await until(() => !alive(pid!))).toBe(true);
    expect(route.service.sessionCount()).toBe(0);
    await client.close();
  });

  it('holds nothing in memory about sessions once they ended, however they ended (a leak the soak found)', async () => {
    for (let i = 0; i < 4; i++) {
      const { client, transport } = await route.connect();
      await client.callTool({ name: 'echo', arguments: { text: 'x' } });
      await transport.terminateSession();
      await client.close();
    }
    // A legacy SSE session, ended by the client dropping its stream.
    const auth = { authorization: `Bearer ${await route.token({ aud: `${route.issuer}/demo/sse` })}` };
    const sse = new SSEClientTransport(new URL(`${route.issuer}/demo/sse`), { requestInit: { headers: auth }, eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) } });
    const legacy = new Client({ name: 't', version: '1' });
    await legacy.connect(sse);
    await legacy.callTool({ name: 'echo', arguments: { text: 'y' } });
    await legacy.close();
    expect(await until(() => route.service.sessionCount() === 0)).toBe(true);
    expect(route.service.heldEntries()).toBe(0);
  });

  it('refuses a session id used by another user, without forwarding anything', async () => {
    const { client, transport } = await route.connect();
    const other = await route.token({ sub: 'dev:mallory@example.com' });
    const res = await fetch(route.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': transport.sessionId! },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    expect(res.status).toBe(404);
    await transport.terminateSession();
    await client.close();
  });

  it('close() ends every child', async () => {
    const a = await route.connect();
    const b = await route.connect();
    const pids = route.service.childPids();
    expect(pids.length).toBe(2);
    await route.service.close();
    expect(pids.filter(alive)).toEqual([]);
    await a.client.close();
    await b.client.close();
  });
});

describe('legacy HTTP+SSE transport (2024-11-05)', () => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startRoute(DEMO);
  });
  afterAll(async () => route?.close());

  it('serves the SDK SSE client: endpoint event, POSTed calls, answers on the stream; the child ends with the stream', async () => {
    const token = await route.token({ aud: `${route.issuer}/demo/sse` });
    const auth = { authorization: `Bearer ${token}` };
    const transport = new SSEClientTransport(new URL(`${route.issuer}/demo/sse`), {
      requestInit: { headers: auth },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) },
    });
    const client = new Client({ name: 'legacy', version: '1' });
    await client.connect(transport);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'over sse' } })).toEqual({ content: [{ type: 'text', text: 'over sse' }] });
    const [pid] = route.service.childPids();
    expect(pid && alive(pid)).toBe(true);
    await client.close();
    expect(await until(() => !alive(pid!))).toBe(true);
  });

  it('five SSE sessions closed at once leave no child 2.5 s later', async () => {
    const auth = { authorization: `Bearer ${await route.token({ aud: `${route.issuer}/demo/sse` })}` };
    const before = new Set(route.service.childPids());
    const clients = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const transport = new SSEClientTransport(new URL(`${route.issuer}/demo/sse`), { requestInit: { headers: auth }, eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) } });
        const client = new Client({ name: `legacy-${i}`, version: '1' });
        await client.connect(transport);
        await client.callTool({ name: 'echo', arguments: { text: String(i) } });
        return client;
      }),
    );
    const pids = route.service.childPids().filter((pid) => !before.has(pid));
    expect(pids).toHaveLength(5);
    await Promise.all(clients.map((c) => c.close()));
    expect(await until(() => pids.every((pid) => !alive(pid)), 2500)).toBe(true);
    expect(route.service.sessionCount()).toBe(before.size);
  });
});

describe('audit', () => {
  it('logs one line per tools/call and per session start and end, without arguments or results', async () => {
    const log = memoryLogger();
    const route = await startRoute(DEMO, { log });
    try {
      const { client, transport } = await route.connect();
      await client.callTool({ name: 'echo', arguments: { text: 'secret-argument-value' } });
      await transport.terminateSession();
      await client.close();
      const calls = log.lines.filter((l) => l.message === 'tools/call');
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ audit: true, tool: 'echo', outcome: 'ok', user: 'dev:ada@example.com', client: 'test-client', route: '/demo' });
      expect(log.lines.map((l) => l.message)).toEqual(expect.arrayContaining(['session started', 'session ended']));
      expect(JSON.stringify(log.lines)).not.toContain('secret-argument-value');
    } finally {
      await route.close();
    }
  });
});

describe('shutdown drain', () => {
  it('lets a call in flight finish before ending its session', async () => {
    const route = await startRoute(DEMO);
    try {
      const { client } = await route.connect();
      const call = client.callTool({ name: 'slow', arguments: { ms: 300 } });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const [pid] = route.service.childPids();
      await route.service.close(5000);
      expect(await call).toEqual({ content: [{ type: 'text', text: 'waited 300 ms' }] });
      expect(alive(pid!)).toBe(false);
      await client.close();
    } finally {
      await route.close();
    }
  });
});
