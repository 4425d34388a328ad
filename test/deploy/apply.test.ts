import { createServer } from 'node:http';
import { chmodSync, symlinkSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyDeploy } from '../../cli/deploy.ts';
import { loadDeployConfig } from '../../infra/service-config.ts';

// `deploy --apply` against stand-ins for gcloud and npx (real child processes on PATH) that
// record every call: no Google account is reachable here.

function fakeTools(behaviour: string): { dir: string; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-deploy-'));
  const log = join(dir, 'calls.log');
  const script = `#!/bin/sh\necho "$(basename "$0") $*" >> ${log}\ncat > /dev/null\n${behaviour}\n`;
  for (const tool of ['gcloud', 'npx']) {
    writeFileSync(join(dir, tool), script);
    chmodSync(join(dir, tool), 0o755);
  }
  return { dir, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []) };
}

// The Firebase Rules API, on loopback: a ruleset per call, releases recorded.
const rulesReleases: string[] = [];
const rulesServer = createServer((req, res) => {
  if (req.method === 'PATCH') rulesReleases.push(decodeURIComponent(req.url!.slice(4)));
  res.setHeader('content-type', 'application/json').end(JSON.stringify({ name: 'projects/example-prod/rulesets/r1' }));
});
await new Promise<void>((resolve) => rulesServer.listen(0, '127.0.0.1', resolve));
const rulesApi = `http://127.0.0.1:${(rulesServer.address() as { port: number }).port}`;

async function apply(behaviour: string, secret = 'gocspx-secret') {
  rulesReleases.length = 0;
  const tools = fakeTools(behaviour);
  const root = mkdtempSync(join(tmpdir(), 'mcp-front-root-'));
  // The checkout the plan stages its uploads from.
  for (const entry of ['package.json', 'package-lock.json', 'lib', 'functions', 'services', 'cli', 'firestore.rules', 'node_modules']) symlinkSync(join(process.cwd(), entry), join(root, entry));
  const env = { PATH: `${tools.dir}:/usr/bin:/bin`, GOOGLE_CLIENT_SECRET: secret, CLOUDSDK_AUTH_ACCESS_TOKEN: 'stand-in-token', MCP_FRONT_RULES_API: rulesApi };
  const { config, text } = loadDeployConfig('examples/deploy/http-google.yaml', env);
  const out: string[] = [];
  const result = applyDeploy({ config, text, env, root, outDir: 'build/deploy', out: (line) => out.push(line) });
  return { result, out, calls: tools.calls, root };
}

describe('deploy --apply', () => {
  it('on an empty project creates everything, writing the generated files first', async () => {
    // Every describe fails: nothing exists yet.
    const run = await apply('case "$*" in *describe*) exit 1;; esac; exit 0');
    const { ran, skipped } = await run.result;
    expect(skipped).toBe(0);
    expect(run.calls().some((c) => c.startsWith('gcloud run deploy mcp-front-oauth --source=build/deploy/oauth'))).toBe(true);
    expect(run.calls().some((c) => c.startsWith('gcloud compute url-maps import mcp-front-url-map'))).toBe(true);
    expect(ran).toBeGreaterThan(20);
    expect(readFileSync(join(run.root, 'build/deploy/url-map.yaml'), 'utf8')).toContain('mcp-route-notion-backend');
    expect(JSON.parse(readFileSync(join(run.root, 'build/deploy/oauth/package.json'), 'utf8')).main).toBe('functions/index.ts');
    expect(existsSync(join(run.root, 'build/deploy/mcp-route-notion/Dockerfile'))).toBe(true);
    expect(rulesReleases).toEqual(['projects/example-prod/releases/cloud.firestore', 'projects/example-prod/releases/cloud.firestore/mcp-sessions']);
  });

  it('on an up-to-date project creates nothing: only the declarative steps run', async () => {
    const run = await apply('case "$*" in *"--format=value(backends[].group)"*) echo "https://x/regions/r/networkEndpointGroups/mcp-front-oauth-neg https://x/networkEndpointGroups/mcp-route-notion-neg";; esac; exit 0');
    await run.result;
    const creations = run.calls().filter((c) => / (create|add-backend) /.test(c));
    expect(creations).toEqual([]);
  });

  it('stops at the first failure with the command, its output and what to do', async () => {
    const run = await apply('case "$*" in *describe*) exit 1;; *"secrets create"*) echo "PERMISSION_DENIED: secretmanager.secrets.create" >&2; exit 1;; esac; exit 0');
    await expect(run.result).rejects.toThrow(/failed \(exit 1\): Create secret mcp-front-signing-key[\s\S]*PERMISSION_DENIED[\s\S]*run `mcp-front deploy --apply` again/);
    expect(run.calls().some((c) => c.startsWith('gcloud run deploy'))).toBe(false);
  });

  it('never passes a secret on a command line', async () => {
    const run = await apply('case "$*" in *describe*) exit 1;; esac; exit 0', 'gocspx-do-not-leak');
    await run.result;
    expect(run.calls().join('\n')).not.toContain('gocspx-do-not-leak');
    expect(run.out.join('\n')).not.toContain('gocspx-do-not-leak');
  });
});
