import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../lib/log.ts';
import { Client, SSEClientTransport } from '../../lib/mcp/sdk.ts';
import { startHttpToolServer, type HttpToolServer } from '../fixtures/tool-server.ts';
import { startRoute, type RouteHarness } from '../support/route-harness.ts';

// routes[].tools: a hidden tool is neither listed nor callable, on a stdio route (the child
// records every call it gets, in a file) and on an http route whose backend answers as SSE
// (it records calls in memory). The refusal is the gateway's own JSON-RPC error, and the audit
// line says so.

const POLICY = '    tools: { allow: ["read_*", "write_file", "whoami"], deny: ["write_*"] }';
const VISIBLE = ['read_dir', 'read_file', 'whoami'];

async function expectRefused(client: InstanceType<typeof Client>, tool: string, route: string) {
  const refused = await client.callTool({ name: tool, arguments: {} }).then(
    () => undefined,
    (err: { code?: number; message?: string }) => err,
  );
  expect(refused?.code).toBe(-32602);
  expect(refused?.message).toContain(`${tool} is not available on ${route} (the route's tool policy hides it)`);
}

function refusalsIn(log: ReturnType<typeof memoryLogger>) {
  return log.lines.filter((l) => l.message === 'tools/call' && l.outcome === 'refused').map((l) => ({ tool: l.tool, route: l.route, user: l.user, audit: l.audit }));
}

describe('tool policy on a stdio route', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-tools-'));
  const callLog = join(dir, 'calls.log');
  const stdinLog = join(dir, 'stdin.log');
  const log = memoryLogger();
  let route: RouteHarness;
  beforeAll(async () => {
    writeFileSync(callLog, '');
    writeFileSync(stdinLog, '');
    route = await startRoute(`    path: /files\n    type: stdio\n    command: [node, test/fixtures/tool-server.ts]\n    environment: { TOOL_CALL_LOG: "${callLog}", TOOL_STDIN_LOG: "${stdinLog}" }\n${POLICY}`, { log });
  });
  afterAll(async () => route?.close());
  const calls = () => readFileSync(callLog, 'utf8').split('\n').filter(Boolean);

  it('lists only the allowed tools not denied, and answers a hidden tool\'s call itself', async () => {
    const { client, transport } = await route.connect();
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(VISIBLE);
    expect(await client.callTool({ name: 'read_file', arguments: { path: '/x' } })).toEqual({ content: [{ type: 'text', text: 'read_file done' }] });
    await expectRefused(client, 'write_file', '/files'); // allowed by name, denied by pattern: deny wins
    await expectRefused(client, 'delete_all', '/files'); // matches no allow pattern
    await transport.terminateSession();
    await client.close();
    expect(calls()).toEqual(['read_file']);
    expect(refusalsIn(log)).toEqual([
      { tool: 'write_file', route: '/files', user: 'dev:ada@example.com', audit: true },
      { tool: 'delete_all', route: '/files', user: 'dev:ada@example.com', audit: true },
    ]);
  });

  it('a call naming its tool twice reaches the server as the policy judged it: one name, not the text as sent', async () => {
    // JSON.parse keeps the last of two keys, some servers' parsers the first: forwarded as sent,
    // this call would be judged as read_file and run as delete_all.
    const { client, transport } = await route.connect();
    const body = '{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"delete_all","name":"read_file","arguments":{}}}';
    const res = await fetch(route.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': transport.sessionId! },
      body,
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('read_file done');
    const sent = readFileSync(stdinLog, 'utf8').split('\n').filter((line) => line.includes('"id":77'));
    expect(sent).toEqual([JSON.stringify(JSON.parse(body))]);
    await transport.terminateSession();
    await client.close();
  });

  it('applies the same policy on the legacy SSE transport', async () => {
    const auth = { authorization: `Bearer ${await route.token({ aud: `${route.issuer}/files/sse` })}` };
    const transport = new SSEClientTransport(new URL(`${route.issuer}/files/sse`), {
      requestInit: { headers: auth },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) },
    });
    const client = new Client({ name: 'legacy', version: '1' });
    await client.connect(transport);
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(VISIBLE);
    await expectRefused(client, 'delete_all', '/files');
    await client.close();
    expect(calls()).not.toContain('delete_all');
  });
});

describe('tool policy on an http route (the backend answers as SSE)', () => {
  const log = memoryLogger();
  let backend: HttpToolServer;
  let route: RouteHarness;
  beforeAll(async () => {
    backend = await startHttpToolServer();
    route = await startRoute(`    path: /remote\n    type: http\n    backend: ${backend.url}\n${POLICY}`, { log });
  });
  afterAll(async () => {
    await route?.close();
    await backend?.close();
  });

  it('filters tools/list and refuses a hidden tool without reaching the backend', async () => {
    const { client, transport } = await route.connect();
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(VISIBLE);
    expect(await client.callTool({ name: 'read_dir', arguments: {} })).toEqual({ content: [{ type: 'text', text: 'read_dir done' }] });
    await expectRefused(client, 'write_file', '/remote');
    await expectRefused(client, 'delete_all', '/remote');
    await transport.terminateSession();
    await client.close();
    expect(backend.calls).toEqual(['read_dir']);
    expect(refusalsIn(log).map((r) => r.tool)).toEqual(['write_file', 'delete_all']);
  });

  it('answers a batch with the refusal in place and the allowed call from the backend', async () => {
    const headers = { authorization: `Bearer ${await route.token()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-03-26' };
    const init = await fetch(route.url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'batch', version: '1' } } }) });
    expect(init.status).toBe(200);
    const session = { ...headers, 'mcp-session-id': init.headers.get('mcp-session-id')! };
    await init.text();
    expect((await fetch(route.url, { method: 'POST', headers: session, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).status).toBe(202);
    const res = await fetch(route.url, {
      method: 'POST',
      headers: session,
      body: JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'delete_all', arguments: {} } },
        { jsonrpc: '2.0', id: 'b', method: 'tools/call', params: { name: 'read_file', arguments: {} } },
        { jsonrpc: '2.0', id: 'c', method: 'tools/list' },
      ]),
    });
    const answers = (await res.json()) as Array<{ id: string; result?: { tools?: Array<{ name: string }>; content?: unknown }; error?: { code: number } }>;
    const byId = Object.fromEntries(answers.map((a) => [a.id, a]));
    expect(byId.a!.error!.code).toBe(-32602);
    expect(byId.b!.result!.content).toEqual([{ type: 'text', text: 'read_file done' }]);
    expect(byId.c!.result!.tools!.map((t) => t.name).sort()).toEqual(VISIBLE);
    await fetch(route.url, { method: 'DELETE', headers: session });
    expect(backend.calls.filter((c) => c === 'delete_all')).toEqual([]);
  });
});
