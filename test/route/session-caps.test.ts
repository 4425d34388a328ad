import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descendantsOf } from '../support/process-table.ts';
import { startRoute, until, type RouteHarness } from '../support/route-harness.ts';

// A call without a session (ChatGPT sends some) still runs a server: on a stdio route, a child
// for the length of the call. It counts against max_sessions_per_user and
// max_sessions_per_instance like a session does, or a cap of 1 would run any number of children.

const ROUTE = '    path: /demo\n    type: stdio\n    command: [node, examples/demo-server/server.ts]\n    max_sessions_per_user: 1\n    max_sessions_per_instance: 2';

/** The demo servers this process started (by command line: Node names its main thread "MainThread"). */
const demoChildren = () =>
  descendantsOf(process.pid).filter((p) => {
    try {
      return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes('demo-server/server.ts');
    } catch {
      return false; // ended between listing and reading
    }
  });

describe('calls without a session count against the session caps', () => {
  let route: RouteHarness;
  beforeAll(async () => {
    route = await startRoute(ROUTE);
  });
  afterAll(async () => route?.close());

  /** tools/call `slow` with no Mcp-Session-Id: the route serves it with a session of its own. */
  const sessionless = async (sub: string, ms: number, signal?: AbortSignal) =>
    fetch(route.url, {
      method: 'POST',
      signal,
      headers: { authorization: `Bearer ${await route.token({ sub })}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'slow', arguments: { ms } } }),
    });

  /** Calls that run until the test lets go of them (the client hangs up: the route ends their child). */
  const held = async (subs: string[]) => {
    const abort = new AbortController();
    const calls = subs.map((sub) => sessionless(sub, 600_000, abort.signal).catch(() => undefined));
    const settled = () => demoChildren().length === 0;
    if (!(await until(() => demoChildren().length === subs.length, 10_000))) throw new Error(`expected ${subs.length} children, found ${demoChildren().length}`);
    return {
      async release() {
        abort.abort();
        await Promise.all(calls);
        expect(await until(settled, 10_000), JSON.stringify(demoChildren())).toBe(true);
      },
    };
  };

  it('per user: while one is running, two more are refused with 429 and start no child', async () => {
    expect(demoChildren()).toEqual([]);
    const first = await held(['dev:ada@example.com']);
    const [second, third] = await Promise.all([sessionless('dev:ada@example.com', 0), sessionless('dev:ada@example.com', 0)]);
    expect([second.status, third.status]).toEqual([429, 429]);
    expect(((await second.json()) as { error: { message: string } }).error.message).toContain('at most 1 sessions per user');
    await third.arrayBuffer();
    expect(demoChildren()).toHaveLength(1);
    await first.release();
    // The cap is free again, and a call that finishes ends its child.
    const answered = await sessionless('dev:ada@example.com', 0);
    expect(answered.status).toBe(200);
    expect(await answered.text()).toContain('"result"');
    expect(await until(() => demoChildren().length === 0, 10_000)).toBe(true);
  });

  it('per instance: two users running, a third user gets 503 with Retry-After', async () => {
    const running = await held(['dev:ada@example.com', 'dev:grace@example.com']);
    const refused = await sessionless('dev:linus@example.com', 0);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBeTruthy();
    await refused.arrayBuffer();
    expect(demoChildren()).toHaveLength(2);
    await running.release();
  });
});
