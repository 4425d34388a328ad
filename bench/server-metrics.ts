import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../cli/dev-backend.ts';
import { startStack } from '../cli/stack.ts';
import { systemClock } from '../lib/clock.ts';
import { parseConfig } from '../lib/config/load.ts';
import { silentLogger } from '../lib/log.ts';
import { countingStore } from '../lib/store/counting-store.ts';
import { openSqliteStore } from '../lib/store/sqlite-store.ts';
import { startRoute } from '../test/support/route-harness.ts';
import { startFirestoreEmulator } from '../test/support/firestore-emulator.ts';
import { authorizeWithDevSignIn, refreshTokens } from '../test/support/oauth-client.ts';
import { ROOT } from './targets.ts';

// The authorization server and store side of the benchmark.

/** Store operations per tools/call on a live session, counted at the store. */
export async function countedCallsPerToolCall(): Promise<{ reads: number; writes: number }> {
  const store = countingStore(await openSqliteStore({ file: ':memory:', clock: systemClock }));
  const route = await startRoute('    path: /demo\n    type: stdio\n    command: [node, examples/demo-server/server.ts]', { store });
  try {
    const { client, transport } = await route.connect();
    store.reset();
    const calls = 200;
    for (let i = 0; i < calls; i++) await client.callTool({ name: 'echo', arguments: { text: 'x' } });
    const result = { reads: store.counts.reads / calls, writes: store.counts.writes / calls };
    await transport.terminateSession();
    await client.close();
    return result;
  } finally {
    await route.close();
    await store.close();
  }
}

/** Process start to "route listening" for the Cloud Run entrypoint of a stdio route. */
export async function routeServiceColdStart(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-cold-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `oauth:\n  issuer: http://127.0.0.1:1\n  provider: dev\n  data_dir: ${dir}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n`);
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, ['services/route/main.ts'], { cwd: ROOT, env: { ...process.env, MCP_FRONT_CONFIG: config, MCP_FRONT_ROUTE: '/demo', PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('route listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`route exited ${code}: ${err}`)));
  });
  const ms = performance.now() - started;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  return ms;
}

/** The identity provider the /token lineages signed in with: `dev` is never asked again at refresh (lib/oauth/recheck.ts). */
export const TOKEN_PROVIDER = 'dev';

/** Refresh-token grants per second with 8 lineages in flight. */
export async function tokenThroughput(storage: 'sqlite' | 'firestore', seconds: number): Promise<number | undefined> {
  const emulator = storage === 'firestore' ? await startFirestoreEmulator() : undefined;
  if (emulator && 'skip' in emulator) return undefined;
  if (emulator) process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: ${TOKEN_PROVIDER}\n  rate_limits: { token: 1000000, authorize: 100000 }\n  storage: ${storage}\n  gcp_project: demo-mcp-front\n  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-token-'))}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n`,
    {},
  );
  const stack = await startStack(config, { log: silentLogger });
  try {
    const lineages = await Promise.all(Array.from({ length: 8 }, (_, i) => authorizeWithDevSignIn(base, { email: `user${i}@example.com`, resource: `${base}/demo/mcp` })));
    let done = 0;
    const until = performance.now() + seconds * 1000;
    await Promise.all(
      lineages.map(async (lineage) => {
        let token = lineage.refresh_token;
        while (performance.now() < until) {
          token = (await refreshTokens(base, lineage.clientId, token)).refresh_token;
          done++;
        }
      }),
    );
    return Math.round(done / seconds);
  } finally {
    await stack.close();
    if (emulator && !('skip' in emulator)) await emulator.stop();
  }
}

/** Process start to the first answered request for the OAuth Cloud Function under the Functions Framework (the app is built on first request). */
export async function oauthFunctionColdStart(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-fn-'));
  const port = await freePort();
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `oauth:\n  issuer: http://127.0.0.1:${port}\n  provider: dev\n  data_dir: ${dir}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n`);
  const started = performance.now();
  const child = spawn(process.execPath, ['node_modules/@google-cloud/functions-framework/build/src/main.js', '--target=oauth', '--source=functions/index.ts', `--port=${port}`], {
    cwd: ROOT,
    env: { ...process.env, MCP_FRONT_CONFIG: config },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/.well-known/oauth-authorization-server`).then((r) => r.ok, () => false);
      if (ok) return performance.now() - started;
      if (child.exitCode !== null) throw new Error(`the function exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}
