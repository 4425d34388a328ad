import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import type { KeySet } from '../../lib/tokens/keys.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { buildDeployPlan } from '../../infra/plan.ts';
import { stageContext } from '../../infra/stage.ts';
import { freePort } from '../../cli/dev-backend.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { buildImage, canUnshare, runImage, uploadSet, type BuiltImage, type RunningImage } from '../support/image-runner.ts';
import { startJwksStandIn, type JwksStandIn } from '../support/jwks-stand-in.ts';
import { descendantsOf } from '../support/process-table.ts';
import { until } from '../support/route-harness.ts';

// A stdio route's image as the generated Dockerfile builds it (test/support/image-runner.ts),
// started the way Cloud Run starts it: its ENTRYPOINT as PID 1 of a PID namespace. tini is
// PID 1 and reaps what a stdio server's helpers leave behind; Node as PID 1 would not (the
// control case shows the check can fail). Only the store differs (SQLite here).

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
  - path: /orphans
    type: stdio
    command: [node, test/fixtures/misbehaving-server.ts, orphan]
deploy:
  secrets: { SECRET: s }
`;

const unshare = canUnshare();
const skip = unshare ? undefined : 'unshare --pid not permitted here: PID-namespace tests skipped';
if (skip && process.env.CI) throw new Error(`${skip} — but CI must run them`);

describe.skipIf(skip !== undefined)(`a route image started as Cloud Run starts it${skip ? ` (${skip})` : ''}`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-image-data-'));
  let jwks: JwksStandIn;
  let keys: KeySet;
  let issuer = '';
  const images = new Map<string, BuiltImage>();

  beforeAll(async () => {
    jwks = await startJwksStandIn();
    ({ keys, issuer } = jwks);

    // The plan for a real (https) issuer; each route's staged context, uploaded, built.
    const text = YAML.replace('ISSUER', 'https://mcp.example.com');
    const plan = buildDeployPlan({ config: parseConfig(text, { SECRET: '${SECRET}' }), text, env: {}, outDir: 'build/deploy', packageJson: readFileSync('package.json', 'utf8') });
    for (const name of ['demo', 'orphans']) {
      const staged = mkdtempSync(join(tmpdir(), 'mcp-front-stage-'));
      const context = plan.contexts[`build/deploy/mcp-route-${name}`]!;
      stageContext(process.cwd(), staged, context);
      const upload = uploadSet(staged);
      const image = buildImage(upload, context.files.Dockerfile!, { node: process.execPath, imageCommand: { entrypoint: [process.execPath], cmd: [join(process.cwd(), 'examples/demo-server/server.ts')] } });
      // The image's config, for a loopback issuer and SQLite (the deployed one names Firestore).
      writeFileSync(image.map('/opt/mcp-front/app/config.yaml'), YAML.replace('ISSUER', issuer).replace('  provider: oidc', `  storage: sqlite\n  data_dir: ${dataDir}\n  provider: oidc`).replace('${SECRET}', 'held-by-the-authorization-server'));
      images.set(name, image);
    }
  }, 180_000);

  afterAll(async () => {
    await jwks?.close();
  });

  const start = async (name: string, entrypoint?: string[]): Promise<{ running: RunningImage; url: string }> => {
    const image = images.get(name)!;
    const port = await freePort();
    const running = runImage(entrypoint ? { ...image, entrypoint } : image, { PATH: `${join(process.execPath, '..')}:/usr/bin:/bin`, PORT: String(port), MCP_FRONT_ROUTE: `/${name}` });
    if (!(await until(() => running.output().includes('route listening'), 20_000))) throw new Error(`the route did not start: ${running.output()}`);
    return { running, url: `http://127.0.0.1:${port}/${name}/mcp` };
  };

  const connect = async (url: string, name: string) => {
    const { token } = await signAccessToken(keys.current, issuer, 60_000, systemClock, { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${issuer}/${name}/mcp`, client_id: 'c', scope: 'mcp' });
    const client = new Client({ name: 'image-test', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
    await client.connect(transport);
    return { client, transport };
  };

  it("serves the server image's own command through /<route>/mcp, and PID 1 exits 0 on SIGTERM", async () => {
    const { running, url } = await start('demo');
    const { client } = await connect(url, 'demo');
    expect(await client.callTool({ name: 'echo', arguments: { text: 'from the image' } })).toEqual({ content: [{ type: 'text', text: 'from the image' }] });
    await client.close();
    expect(await running.stop()).toBe(0);
  });

  /** Zombies in the namespace after a session whose server orphaned helpers has ended. */
  const zombiesAfterOrphans = async (entrypoint?: string[]): Promise<number> => {
    const { running, url } = await start('orphans', entrypoint);
    const { client, transport } = await connect(url, 'orphans');
    for (let i = 0; i < 3; i++) await client.callTool({ name: 'echo', arguments: { text: String(i) } });
    await transport.terminateSession();
    await client.close();
    // The helpers (sleep 0.2) have exited by now; whoever is PID 1 had to reap them.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const zombies = descendantsOf(running.process.pid!).filter((p) => p.state === 'Z').length;
    await running.stop();
    return zombies;
  };

  it("reaps a stdio server's orphaned helpers: tini is PID 1, no zombie is left after the session", async () => {
    expect(images.get('orphans')!.entrypoint[0]).toBe('/opt/mcp-front/runtime/tini');
    expect(await zombiesAfterOrphans()).toBe(0);
  });

  it('(control) without tini, Node as PID 1 leaves the orphans as zombies: the check above can fail', async () => {
    const withoutTini = images.get('orphans')!.entrypoint.slice(2);
    expect(await zombiesAfterOrphans(withoutTini)).toBeGreaterThan(0);
  });
});
