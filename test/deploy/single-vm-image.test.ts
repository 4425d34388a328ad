import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { NODE_IMAGE } from '../../infra/image.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { buildImage, canUnshare, runImage, type BuiltImage } from '../support/image-runner.ts';
import { descendantsOf, stillPresent } from '../support/process-table.ts';
import { until } from '../support/route-harness.ts';
import { routeToken } from '../support/stack-process.ts';

// The single-VM image (the repository's Dockerfile) built without a container engine
// (test/support/image-runner.ts) and started as `docker run -v …:/data -v …:/config` would:
// tini as PID 1 of its own PID namespace, `mcp-front serve` under it. SIGTERM to PID 1 — what
// `docker stop` sends — ends every route's child and exits 0.

const DOCKERFILE = readFileSync('Dockerfile', 'utf8');
const ARGV = ['/usr/bin/tini-static', '--', '/usr/local/bin/node', '/opt/mcp-front/app/cli/mcp-front.ts', 'serve', '--config', '/config/mcp-front.yaml'];

/** COPY sources from the build context (not from another stage). */
const copied = DOCKERFILE.split('\n')
  .filter((line) => line.startsWith('COPY ') && !line.includes('--from='))
  .flatMap((line) => line.split(/\s+/).slice(1, -1));

describe('the single-VM Dockerfile', () => {
  it("is built on the route images' pinned Node image, with Debian's tini", () => {
    expect(DOCKERFILE).toContain(`FROM ${NODE_IMAGE}\n`);
    expect(DOCKERFILE).toMatch(/^RUN apt-get update && apt-get install -y --no-install-recommends tini /m);
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    const allowed = readFileSync('.dockerignore', 'utf8').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    expect(copied).toEqual(['package.json', 'package-lock.json', 'lib', 'functions', 'services', 'cli', 'infra']);
    for (const source of copied) {
      expect(existsSync(source), source).toBe(true);
      expect(allowed, source).toContain(source);
    }
  });
});

const skip = canUnshare() ? undefined : 'unshare --pid not permitted here: PID-namespace tests skipped';
if (skip && process.env.CI) throw new Error(`${skip} — but CI must run them`);

describe.skipIf(skip !== undefined)(`the single-VM image started as docker run starts it${skip ? ` (${skip})` : ''}`, () => {
  const data = mkdtempSync(join(tmpdir(), 'mcp-front-vm-data-'));
  const configDir = mkdtempSync(join(tmpdir(), 'mcp-front-vm-config-'));
  let image: BuiltImage;
  let port = 0;

  beforeAll(async () => {
    image = buildImage(process.cwd(), DOCKERFILE, { node: process.execPath, mounts: { '/data': data, '/config': configDir } });
    port = await freePort();
    // The config docs/deploy.md shows, with the dev sign-in (loopback), a stdio server of the
    // operator's, and /data where the rehearsal mounts it (Node reads the path, not the runner).
    writeFileSync(
      join(configDir, 'mcp-front.yaml'),
      `oauth:
  issuer: http://127.0.0.1:${port}
  provider: dev
  storage: sqlite
  data_dir: ${image.map('/data')}
routes:
  - { path: /demo, type: stdio, command: [node, ${join(process.cwd(), 'examples/demo-server/server.ts')}] }
server:
  host: 0.0.0.0
  port: ${port}
`,
    );
  }, 300_000);

  it('runs tini → node → cli/mcp-front.ts serve --config /config/mcp-front.yaml', () => {
    expect(image.entrypoint).toEqual(ARGV);
    expect(image.workdir).toBe('/opt/mcp-front/app');
  });

  it('serves /health and a route from the /data volume; SIGTERM to PID 1 ends everything with exit 0', async () => {
    const running = runImage(image, { PATH: '/usr/bin:/bin' });
    try {
      expect(await until(() => running.output().includes('mcp-front is up'), 30_000), running.output()).toBe(true);
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/health`)).status).toBe(200);
      expect(existsSync(join(data, 'mcp-front.sqlite'))).toBe(true);

      const client = new Client({ name: 'vm-image-test', version: '1' });
      const token = await routeToken(data, base, '/demo');
      await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/demo/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
      expect(await client.callTool({ name: 'echo', arguments: { text: 'one VM' } })).toEqual({ content: [{ type: 'text', text: 'one VM' }] });

      // PID 1 is tini; under it Node, and under Node the session's stdio server.
      const inside = descendantsOf(running.process.pid!);
      expect(inside[0]?.command).toBe('tini-static');
      expect(inside.length).toBeGreaterThanOrEqual(3);

      expect(await running.stop()).toBe(0);
      expect(stillPresent(inside.map((p) => p.pid))).toEqual([]);
      expect(running.output()).not.toContain('"severity":"ERROR"');
    } finally {
      if (running.process.exitCode === null) running.process.kill('SIGKILL');
    }
  }, 60_000);
});
