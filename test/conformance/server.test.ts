import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevBackend, type DevBackend } from '../../cli/dev-backend.ts';
import { parseConfig } from '../../lib/config/load.ts';
import type { HttpRouteConfig } from '../../lib/config/config.ts';
import { silentLogger } from '../../lib/log.ts';
import { startStackProcess, type StackProcess } from '../support/stack-process.ts';

// The MCP conformance suite (server scenarios, 2025-11-25) run three times: against the
// fixture directly, and through a stdio route and an http route of `serve`. The gateway must
// be transparent: no scenario that passes directly may fail through a route. Scenarios the
// fixture itself does not implement are listed in expected-failures.yaml, and each must also
// fail directly. Sign-in is off in this config only (refused for a non-loopback issuer).

const SUITE = join(import.meta.dirname, '../../node_modules/@modelcontextprotocol/conformance/dist/index.js');
const EXPECTED = (parseYaml(readFileSync(join(import.meta.dirname, 'expected-failures.yaml'), 'utf8')) as { server: string[] }).server;
const YAML = `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
routes:
  - path: /fixture
    type: stdio
    command: [node, examples/demo-server/server.ts]
  - path: /fixture-http
    type: http
    dev_backend: { command: [node, examples/demo-server/server.ts, --http] }
server:
  port: \${MCP_FRONT_PORT}
  insecure_no_auth: true
`;

type Results = Map<string, boolean>;

async function runSuite(url: string): Promise<{ results: Results; output: string }> {
  // The suite exits non-zero when any scenario fails; the summary is what we read.
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [SUITE, 'server', '--url', url, '--spec-version', '2025-11-25'], { maxBuffer: 16 << 20 }).catch((err: { stdout: string; stderr: string }) => err);
  const output = `${stdout}${stderr}`;
  const results: Results = new Map();
  for (const m of output.matchAll(/^([✓✗]) ([\w-]+): (\d+) passed, (\d+) failed$/gm)) results.set(m[2]!, m[1] === '✓');
  return { results, output: output.slice(output.indexOf('=== SUMMARY ===')) };
}

describe('MCP conformance suite through the gateway', () => {
  let stack: StackProcess;
  let direct: DevBackend;

  beforeAll(async () => {
    stack = await startStackProcess({ yaml: YAML });
    const route = parseConfig(YAML.replaceAll('${MCP_FRONT_PORT}', '1').replaceAll('${MCP_FRONT_DATA_DIR}', '/tmp'), {}).routes[1] as HttpRouteConfig;
    direct = await startDevBackend(route, silentLogger);
  }, 60_000);

  afterAll(async () => {
    await direct?.stop();
    await stack?.stop();
  });

  it('passes through both route kinds whatever passes directly; expected failures also fail directly', async () => {
    const baseline = await runSuite(direct.url);
    const stdio = await runSuite(`${stack.baseUrl}/fixture/mcp`);
    const http = await runSuite(`${stack.baseUrl}/fixture-http/mcp`);
    console.log(`direct:\n${baseline.output}\nthrough the stdio route:\n${stdio.output}\nthrough the http route:\n${http.output}`);

    expect(baseline.results.size).toBeGreaterThan(20);
    for (const [name, passedDirectly] of baseline.results) {
      if (passedDirectly) {
        expect.soft(stdio.results.get(name), `${name} through the stdio route`).toBe(true);
        expect.soft(http.results.get(name), `${name} through the http route`).toBe(true);
      }
    }
    for (const name of EXPECTED) expect.soft(baseline.results.get(name), `${name} is listed as expected to fail: it must fail directly too`).toBe(false);
    // Everything not listed passes through both routes.
    for (const name of baseline.results.keys()) {
      if (EXPECTED.includes(name)) continue;
      expect.soft(stdio.results.get(name), `${name} (stdio route)`).toBe(true);
      expect.soft(http.results.get(name), `${name} (http route)`).toBe(true);
    }
  }, 120_000);
});
