import { execSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { loadKeySet, type KeySet } from '../../lib/tokens/keys.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { buildDeployPlan } from '../../infra/plan.ts';
import { freePort } from '../../cli/dev-backend.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';

// The bridge entrypoint started the way the generated Dockerfile starts it: Node and its
// shared objects copied by the Dockerfile's own RUN line, launched through the copied glibc
// loader with the image's ENV, the server command taken from the image's ENTRYPOINT/CMD file.
// Only the store differs (SQLite here; the Firestore store has its own contract tests).

const YAML = `
oauth:
  issuer: ISSUER
  gcp_project: demo-project
  provider: oidc
  oidc_issuer: https://login.example.com
  client_id: id
  client_secret: \${SECRET}
routes:
  - path: /demo
    type: stdio
    image: example/demo-mcp:1.0
deploy:
  secrets: { SECRET: s }
`;

describe('the bridge entrypoint of a stdio route image', () => {
  const root = mkdtempSync(join(tmpdir(), 'mcp-front-image-'));
  const opt = join(root, 'opt/mcp-front');
  let jwks: ReturnType<typeof createServer>;
  let keys: KeySet;
  let issuer = '';
  let bridge: ReturnType<typeof spawn>;
  let routeUrl = '';

  beforeAll(async () => {
    const store = await openSqliteStore({ file: ':memory:', clock: systemClock });
    keys = await loadKeySet(store, systemClock);
    jwks = createServer((_req, res) => res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: keys.published })));
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(jwks.address() as { port: number }).port}`;

    // The plan for a real (https) issuer, then the generated Dockerfile's pieces run here.
    const text = YAML.replace('ISSUER', 'https://mcp.example.com');
    const plan = buildDeployPlan({ config: parseConfig(text, { SECRET: '${SECRET}' }), text, env: {}, outDir: 'build/deploy' });
    const dockerfile = plan.files['build/deploy/mcp-route-demo/Dockerfile']!;
    const run = /RUN (mkdir -p \/opt\/mcp-front\/runtime[\s\S]*?)\n\n/.exec(dockerfile)![1]!.replace(/\\\n/g, ' ');
    const node = execSync('command -v node', { encoding: 'utf8' }).trim(); // Node 24 from the project
    execSync(run.replaceAll('/opt/mcp-front', opt).replaceAll('/usr/local/bin/node', node), { shell: '/bin/bash' });
    const entrypoint = JSON.parse(/ENTRYPOINT (\[.*\])/.exec(dockerfile.split('FROM example/demo-mcp:1.0')[1]!)![1]!) as string[];
    const env = Object.fromEntries([...dockerfile.split('FROM example/demo-mcp:1.0')[1]!.matchAll(/(MCP_FRONT_[A-Z_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));

    // What the image would hold: the app, its config (SQLite here), the image's command.
    mkdirSync(join(opt, 'app'), { recursive: true });
    writeFileSync(join(opt, 'app/config.yaml'), YAML.replace('ISSUER', issuer).replace('  provider: oidc', `  storage: sqlite\n  data_dir: ${join(root, 'data')}\n  provider: oidc`).replace('${SECRET}', 'held-by-the-authorization-server'));
    writeFileSync(join(opt, 'app/image-command.json'), JSON.stringify({ entrypoint: ['node'], cmd: [join(process.cwd(), 'examples/demo-server/server.ts')] }));
    const port = await freePort();
    const argv = entrypoint.map((a) => a.replaceAll('/opt/mcp-front/app/services', join(process.cwd(), 'services')).replaceAll('/opt/mcp-front', opt));
    bridge = spawn(argv[0]!, argv.slice(1), {
      env: { PATH: process.env.PATH, PORT: String(port), ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replaceAll('/opt/mcp-front', opt)])) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    bridge.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    routeUrl = `http://127.0.0.1:${port}/demo/mcp`;
    for (let i = 0; i < 100; i++) {
      if (stderr.includes('route listening')) break;
      if (bridge.exitCode !== null) throw new Error(`the bridge exited: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await store.close();
  }, 60_000);

  afterAll(async () => {
    if (bridge && bridge.exitCode === null) {
      const exited = new Promise((resolve) => bridge.once('exit', resolve));
      bridge.kill('SIGTERM');
      await exited;
    }
    jwks?.close();
  });

  it('serves the image command\'s tools through /<route>/mcp, and exits 0 on SIGTERM', async () => {
    const { token } = await signAccessToken(keys.current, issuer, 60_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${issuer}/demo/mcp`, client_id: 'c', scope: 'mcp' });
    const client = new Client({ name: 'image-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(routeUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    expect(await client.callTool({ name: 'echo', arguments: { text: 'from the image' } })).toEqual({ content: [{ type: 'text', text: 'from the image' }] });
    await client.close();
    const exited = new Promise<number | null>((resolve) => bridge.once('exit', (code) => resolve(code)));
    bridge.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
