import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRoute, type RouteHarness } from '../support/route-harness.ts';

// Cloud Run cuts a request at the service timeout (the plan sets 3600 s). The gateway ends its
// long-lived streams itself before that (server.stream_timeout), cleanly: whatever was sent has
// been written, the last thing on the stream is an SSE `retry` hint, and the session lives on
// for the client's next GET. The per-call `timeout` does not apply to streams.

describe('a GET stream outlives the call timeout and is ended by the gateway before the platform would', () => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startRoute('    path: /demo\n    type: stdio\n    command: [node, examples/demo-server/server.ts]\n    timeout: 3s', { keepaliveMs: 200, serverYaml: '  stream_timeout: 6s' });
  });
  afterAll(async () => route?.close());

  const post = async (token: string, body: unknown, session?: string) =>
    fetch(route.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', ...(session ? { 'mcp-session-id': session } : {}) },
      body: JSON.stringify(body),
    });

  it('stays open past route.timeout, ends at server.stream_timeout with a retry hint, and the session goes on', async () => {
    const token = await route.token();
    const init = await post(token, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    const session = init.headers.get('mcp-session-id')!;
    await init.text();
    expect((await post(token, { jsonrpc: '2.0', method: 'notifications/initialized' }, session)).status).toBe(202);

    const opened = Date.now();
    const stream = await fetch(route.url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-protocol-version': '2025-06-18', 'mcp-session-id': session } });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    let openPastCallTimeout = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (!done) text += decoder.decode(value, { stream: true });
      if (Date.now() - opened > 3500 && !done) openPastCallTimeout = true;
      if (done) break;
    }
    const lifetime = Date.now() - opened;
    expect(openPastCallTimeout).toBe(true);
    expect(lifetime).toBeGreaterThanOrEqual(5900);
    // Ended by the gateway (a stream that never ended would fail this test by its timeout); the last event is the hint.
    expect(text.endsWith('retry: 1000\n\n')).toBe(true);

    // The session is still there: a call on it works, and so does the next GET stream.
    const call = await post(token, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'still here' } } }, session);
    expect(await call.text()).toContain('still here');
    const again = await fetch(route.url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-protocol-version': '2025-06-18', 'mcp-session-id': session } });
    expect(again.status).toBe(200);
    await again.body!.cancel();
  });
});
