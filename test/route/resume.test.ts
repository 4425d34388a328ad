import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { systemClock } from '../../lib/clock.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { openFirestoreStore } from '../../lib/store/firestore-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { freePort } from '../../cli/dev-backend.ts';
import { startStackProcess } from '../support/stack-process.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';

// The gateway killed (SIGKILL) between two calls of a session and started again: the client's
// next call with the same Mcp-Session-Id succeeds, on the SQLite store and on Firestore.

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

function config(storage: string): string {
  return `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  ${storage}
routes:
  - path: /demo
    type: stdio
    command: [node, examples/demo-server/server.ts]
server:
  port: \${MCP_FRONT_PORT}
  # On Firestore the killed process's lease must lapse before the restarted one (a new
  # instance) takes the session over: a short lease keeps the test short.
  session_lease: 3s
`;
}

async function survivesRestart(yaml: string, env: Record<string, string>, openStore: (dataDir: string) => Promise<Store>) {
  const port = await freePort();
  let stack = await startStackProcess({ yaml, env, port });
  const store = await openStore(stack.dataDir);
  try {
    const keys = await loadKeySet(store, systemClock);
    const url = `${stack.baseUrl}/demo/mcp`;
    const { token } = await signAccessToken(keys.current, stack.baseUrl, 600_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: url, client_id: 'c', scope: 'mcp' });
    const client = new Client({ name: 'resume', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
    await client.connect(transport);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'before' } })).toEqual({ content: [{ type: 'text', text: 'before' }] });
    const sessionId = transport.sessionId;

    await stack.kill();
    stack = await startStackProcess({ yaml, env, port, dataDir: stack.dataDir });
    expect(await client.callTool({ name: 'echo', arguments: { text: 'after' } })).toEqual({ content: [{ type: 'text', text: 'after' }] });
    expect(transport.sessionId).toBe(sessionId);
    // Another user can't take the session over by its id.
    const { token: other } = await signAccessToken(keys.current, stack.baseUrl, 600_000, systemClock, { sub: 'dev:mallory@example.com', email: 'm@example.com', aud: url, client_id: 'c', scope: 'mcp' });
    const stolen = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId! },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
    });
    expect(stolen.status).toBe(404);
    await transport.terminateSession();
    await client.close();
  } finally {
    await stack.stop();
    await store.close();
  }
}

describe('a session survives the gateway being killed and restarted', () => {
  it('on the SQLite store', async () => {
    await survivesRestart(config('storage: sqlite\n  data_dir: ${MCP_FRONT_DATA_DIR}'), {}, (dataDir) => openSqliteStore({ file: join(dataDir, 'mcp-front.sqlite'), clock: systemClock }));
  }, 60_000);

  it.skipIf('skip' in emulator)('on Firestore (emulator)', async () => {
    if ('skip' in emulator) return;
    await survivesRestart(config('storage: firestore\n  gcp_project: demo-mcp-front'), { FIRESTORE_EMULATOR_HOST: emulator.host, METADATA_SERVER_DETECTION: 'none' }, () => {
      process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
      return openFirestoreStore({ projectId: 'demo-mcp-front', clock: systemClock });
    });
  }, 60_000);
});
