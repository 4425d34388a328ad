import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

async function apply(behaviour: string, secret = 'gocspx-secret') {
  const tools = fakeTools(behaviour);
  const root = mkdtempSync(join(tmpdir(), 'mcp-front-root-'));
  const env = { PATH: `${tools.dir}:/usr/bin:/bin`, GOOGLE_CLIENT_SECRET: secret };
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
    expect(run.calls().some((c) => c.startsWith('gcloud functions deploy mcp-front-oauth'))).toBe(true);
    expect(run.calls().some((c) => c.startsWith('gcloud compute url-maps import mcp-front-url-map'))).toBe(true);
    expect(ran).toBeGreaterThan(20);
    expect(readFileSync(join(run.root, 'build/deploy/url-map.yaml'), 'utf8')).toContain('mcp-route-notion-backend');
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
    expect(run.calls().some((c) => c.startsWith('gcloud functions deploy'))).toBe(false);
  });

  it('never passes a secret on a command line', async () => {
    const run = await apply('case "$*" in *describe*) exit 1;; esac; exit 0', 'gocspx-do-not-leak');
    await run.result;
    expect(run.calls().join('\n')).not.toContain('gocspx-do-not-leak');
    expect(run.out.join('\n')).not.toContain('gocspx-do-not-leak');
  });
});
