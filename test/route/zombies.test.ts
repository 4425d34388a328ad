import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { startStackProcess } from '../support/stack-process.ts';
import { descendantsOf, stillPresent } from '../support/process-table.ts';

// Zero zombies: 200 sessions over both transports against a real `serve` process, ended every
// way a session ends (DELETE, a client vanishing mid-call, a crashing child, shutdown with
// children that ignore SIGTERM or have children of their own). After SIGTERM the server exits
// 0 and no process it ever started, directly or not, is left.

const FIXTURE = 'test/fixtures/misbehaving-server.ts';
const SESSIONS = 200;
const YAML = `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
routes:
${['normal', 'stall', 'crash-on-call', 'ignore-term', 'grandchild'].map((mode) => `  - { path: /${mode.replace('-on-call', '')}, type: stdio, command: [node, ${FIXTURE}, ${mode}], timeout: 30s, max_sessions_per_user: 100, max_sessions_per_instance: 200 }`).join('\n')}
server:
  port: \${MCP_FRONT_PORT}
`;

describe('zero zombies', () => {
  it('200 sessions ended every way, then SIGTERM: exit 0 and no descendant left', async () => {
    const stack = await startStackProcess({ yaml: YAML });
    const seen = new Set<number>();
    const note = () => descendantsOf(stack.pid).forEach((p) => seen.add(p.pid));
    const store = await openSqliteStore({ file: join(stack.dataDir, 'mcp-front.sqlite'), clock: systemClock });
    const keys = await loadKeySet(store, systemClock);
    const token = async (path: string, transport: 'mcp' | 'sse') =>
      (await signAccessToken(keys.current, stack.baseUrl, 600_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${stack.baseUrl}${path}/${transport}`, client_id: 'c', scope: 'mcp' })).token;

    const open = async (path: string, kind: 'mcp' | 'sse') => {
      const auth = { authorization: `Bearer ${await token(path, kind)}` };
      const transport =
        kind === 'mcp'
          ? new StreamableHTTPClientTransport(new URL(`${stack.baseUrl}${path}/mcp`), { requestInit: { headers: auth } })
          : new SSEClientTransport(new URL(`${stack.baseUrl}${path}/sse`), {
              requestInit: { headers: auth },
              eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) },
            });
      const client = new Client({ name: 'zombie-test', version: '1' });
      await client.connect(transport);
      return { client, transport };
    };

    const lifecycles: Array<() => Promise<void>> = [];
    for (let i = 0; i < SESSIONS; i++) {
      const kind = i % 2 === 0 ? 'mcp' : 'sse';
      const fate = i % 5;
      lifecycles.push(async () => {
        if (fate === 0) {
          // A normal session, ended by the client.
          const { client, transport } = await open('/normal', kind);
          await client.callTool({ name: 'echo', arguments: { text: 'x' } });
          note();
          if (transport instanceof StreamableHTTPClientTransport) await transport.terminateSession();
          await client.close();
        } else if (fate === 1) {
          // The client vanishes in the middle of a call that never returns.
          const { client } = await open('/stall', kind);
          const abort = new AbortController();
          const call = client.callTool({ name: 'echo', arguments: {} }, undefined, { signal: abort.signal }).catch(() => undefined);
          await new Promise((resolve) => setTimeout(resolve, 50));
          note();
          abort.abort();
          await call;
          await client.close();
        } else if (fate === 2) {
          // The child crashes in the middle of a call.
          const { client } = await open('/crash', kind);
          note();
          await expect(client.callTool({ name: 'echo', arguments: {} })).rejects.toThrow();
          await client.close();
        } else {
          // Left open for the shutdown: a child that ignores SIGTERM, or one with a grandchild.
          await open(fate === 3 ? '/ignore-term' : '/grandchild', kind);
          note();
        }
      });
    }
    // Waves, so 200 Node children don't all start at once on a two-core machine.
    for (let i = 0; i < lifecycles.length; i += 20) await Promise.all(lifecycles.slice(i, i + 20).map((run) => run()));
    await new Promise((resolve) => setTimeout(resolve, 500));
    note();
    await store.close();

    expect(seen.size).toBeGreaterThanOrEqual(SESSIONS * 0.4); // the sessions left open alone: children and grandchildren
    expect(await stack.stop()).toBe(0);
    expect(stillPresent([...seen])).toEqual([]);
  }, 180_000);
});
