import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevBackend, type DevBackend } from '../../cli/dev-backend.ts';
import type { HttpRouteConfig } from '../../lib/config/config.ts';
import { silentLogger } from '../../lib/log.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import { startRoute, type RouteHarness } from '../support/route-harness.ts';

// A stream is open when its client sees the response head, not when the first event or
// keep-alive comes: clients wait for the head (and a legacy client for its `endpoint` event)
// before they go on. With keep-alives an hour apart, the head must come at once.

const KEEPALIVE_MS = 3_600_000;
/** Far below the keep-alive: a head that waits for one fails here. */
const HEAD_WITHIN_MS = 5_000;

const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'stream-headers', version: '1' } } });

async function openSession(route: RouteHarness, auth: Record<string, string>): Promise<string> {
  const headers = { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await fetch(route.url, { method: 'POST', headers, body: initialize });
  expect(init.status).toBe(200);
  await init.text();
  const session = init.headers.get('mcp-session-id')!;
  const initialized = await fetch(route.url, { method: 'POST', headers: { ...headers, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  expect(initialized.status).toBe(202);
  return session;
}

describe('stream response heads are sent at once', () => {
  let demo: DevBackend;
  beforeAll(async () => {
    demo = await startDevBackend({ path: '/x', devBackend: { command: ['node', 'examples/demo-server/server.ts', '--http'], path: '/mcp' } } as unknown as HttpRouteConfig, silentLogger);
  });
  afterAll(async () => demo?.stop());

  const kinds = () => [
    ['stdio', `    path: /demo\n    type: stdio\n    command: [node, examples/demo-server/server.ts]`],
    ['http', `    path: /demo\n    type: http\n    backend: ${demo.url}`],
  ];

  it.each(['stdio', 'http'])('%s route: the GET stream has its head before anything is sent on it', async (kind) => {
    const route = await startRoute(kinds().find(([k]) => k === kind)![1]!, { keepaliveMs: KEEPALIVE_MS });
    try {
      const auth = { authorization: `Bearer ${await route.token()}` };
      const session = await openSession(route, auth);
      const stream = await fetch(route.url, { headers: { ...auth, accept: 'text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' }, signal: AbortSignal.timeout(HEAD_WITHIN_MS) });
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toBe('text/event-stream');
      await stream.body!.cancel();
      expect((await fetch(route.url, { method: 'DELETE', headers: { ...auth, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } })).status).toBe(204);
    } finally {
      await route.close();
    }
  });

  it.each(['stdio', 'http'])('%s route: the legacy SSE stream has its head and its endpoint event at once', async (kind) => {
    const route = await startRoute(kinds().find(([k]) => k === kind)![1]!, { keepaliveMs: KEEPALIVE_MS });
    try {
      const auth = { authorization: `Bearer ${await route.token({ aud: `${route.issuer}/demo/sse` })}` };
      const stream = await fetch(`${route.issuer}/demo/sse`, { headers: { ...auth, accept: 'text/event-stream' }, signal: AbortSignal.timeout(HEAD_WITHIN_MS) });
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toBe('text/event-stream');
      const events = readEvents(stream.body!);
      const first = await events.next();
      expect(first.value).toMatchObject({ event: 'endpoint', data: expect.stringMatching(/^\/demo\/message\?session=[A-Za-z0-9_-]+$/) });
      await events.return(undefined);
      await stream.body!.cancel();
    } finally {
      await route.close();
    }
  });
});
