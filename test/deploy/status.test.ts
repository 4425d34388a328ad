import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OAuth2Client } from 'google-auth-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderStatuses, routeStatuses } from '../../cli/status.ts';
import { loadDeployConfig } from '../../infra/service-config.ts';
import { CLI } from '../support/stack-process.ts';

// `mcp-front status` against a loopback stand-in of the Cloud Run Admin API v2 (REST), reached
// by the real @google-cloud/run client through its apiEndpoint.

const PROJECT = 'example-tools';
const REGION = 'europe-west4';
const requests: Array<{ path: string; authorization?: string }> = [];

function service(name: string, overrides: { timeout?: string; minInstances?: number; route?: string } = {}) {
  return {
    name: `projects/${PROJECT}/locations/${REGION}/services/${name}`,
    uri: `https://${name}-abc-ez.a.run.app`,
    ingress: 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER',
    latestReadyRevision: `projects/${PROJECT}/locations/${REGION}/services/${name}/revisions/${name}-00007-xyz`,
    terminalCondition: { type: 'Ready', state: 'CONDITION_SUCCEEDED' },
    trafficStatuses: [{ type: 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST', percent: 100 }],
    template: {
      serviceAccount: `mcp-route-${name.replace('mcp-route-', '')}@${PROJECT}.iam.gserviceaccount.com`,
      timeout: overrides.timeout ?? '3600s',
      maxInstanceRequestConcurrency: 250,
      sessionAffinity: true,
      scaling: { minInstanceCount: overrides.minInstances ?? 0, maxInstanceCount: 10 },
      containers: [{ image: 'x', env: [{ name: 'MCP_FRONT_ROUTE', value: overrides.route ?? `/${name.replace('mcp-route-', '')}` }] }],
    },
  };
}

const services: Record<string, unknown> = {
  // /linear, /github and /incidents are as the plan deployed them (every route: Cloud Run's whole
  // 3600 s, streams outlast calls); /demo was changed by hand: min instances, and a timeout that
  // would cut its streams.
  'mcp-route-linear': service('mcp-route-linear'),
  'mcp-route-github': service('mcp-route-github'),
  'mcp-route-incidents': service('mcp-route-incidents'),
  'mcp-route-demo': service('mcp-route-demo', { timeout: '300s', minInstances: 2 }),
};

const server = createServer((req: IncomingMessage, res) => {
  requests.push({ path: req.url ?? '', authorization: req.headers.authorization });
  const name = decodeURIComponent(req.url ?? '').split('?')[0]!.split('/services/')[1];
  const found = name ? services[name] : undefined;
  res.setHeader('content-type', 'application/json');
  if (req.headers.authorization === 'Bearer expired') {
    res.statusCode = 401;
    res.end(JSON.stringify({ error: { code: 401, status: 'UNAUTHENTICATED', message: 'Request had invalid authentication credentials.' } }));
    return;
  }
  if (!found) {
    res.statusCode = 404;
    res.end(JSON.stringify({ error: { code: 404, status: 'NOT_FOUND', message: `Service ${name} not found` } }));
    return;
  }
  res.end(JSON.stringify(found));
});

let endpoint = '';
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function authClient(token = 'test-token') {
  const client = new OAuth2Client();
  client.setCredentials({ access_token: token, expiry_date: Date.now() + 3_600_000 });
  return client;
}

/** `mcp-front status --config` as a user runs it, with only `path` on PATH (no application-default credentials either: HOME is empty). */
function statusCommand(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { PATH: path, HOME: mkdtempSync(join(tmpdir(), 'mcp-front-home-')), METADATA_SERVER_DETECTION: 'none' };
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'status', '--config', 'examples/deploy/http-google.yaml'], { env }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
  });
}

describe('mcp-front status', () => {
  it('lists each route service with its revision and traffic, and flags drift from the YAML', async () => {
    const { config } = loadDeployConfig('examples/deploy/mixed-github.yaml', { PATH: process.env.PATH });
    const statuses = await routeStatuses(config, { apiEndpoint: endpoint, authClient: authClient() });
    const linear = statuses.find((s) => s.route === '/linear')!;
    expect(linear).toMatchObject({ state: 'ready', revision: 'mcp-route-linear-00007-xyz', url: 'https://mcp-route-linear-abc-ez.a.run.app', drift: [] });
    expect(linear.traffic).toContain('100%');
    const demo = statuses.find((s) => s.route === '/demo')!;
    expect(demo.drift).toEqual(['timeout is 300, the config says 3600', 'min instances is 2, the config says 0']);
    expect(renderStatuses(statuses)).toContain('1 of 4 routes differ from the config');
    expect(requests.every((r) => r.authorization === 'Bearer test-token')).toBe(true);
  });

  it('reports a route that is not deployed', async () => {
    const { config } = loadDeployConfig('examples/deploy/http-google.yaml', { PATH: process.env.PATH });
    const [notion] = await routeStatuses(config, { apiEndpoint: endpoint, authClient: authClient() });
    expect(notion).toMatchObject({ route: '/notion', state: 'missing' });
    expect(notion!.drift[0]).toContain('mcp-front deploy --apply');
  });

  it('takes the token from CLOUDSDK_AUTH_ACCESS_TOKEN, as gcloud does', async () => {
    requests.length = 0;
    const { config } = loadDeployConfig('examples/deploy/http-google.yaml', { PATH: process.env.PATH });
    await routeStatuses(config, { apiEndpoint: endpoint, env: { CLOUDSDK_AUTH_ACCESS_TOKEN: 'from-the-environment' } });
    expect(requests.map((r) => r.authorization)).toEqual(['Bearer from-the-environment']);
  });

  it('says in one line what to run when Cloud Run refuses the token', async () => {
    const { config } = loadDeployConfig('examples/deploy/http-google.yaml', { PATH: process.env.PATH });
    await expect(routeStatuses(config, { apiEndpoint: endpoint, authClient: authClient('expired') })).rejects.toThrow(/^status: Cloud Run refused the credentials \(Request had invalid authentication credentials\.\): run `gcloud auth login` as an account that can view example-prod, or set CLOUDSDK_AUTH_ACCESS_TOKEN$/);
  });

  it('without gcloud: one line saying what to run, no stack trace, exit 1', async () => {
    const run = await statusCommand(mkdtempSync(join(tmpdir(), 'mcp-front-empty-path-')));
    expect(run).toEqual({ code: 1, stdout: '', stderr: 'mcp-front: status: no Google Cloud credentials (gcloud is not installed): run `gcloud auth login`, or set CLOUDSDK_AUTH_ACCESS_TOKEN\n' });
  }, 30_000);

  it('with gcloud logged out: one line with gcloud\'s reason, exit 1', async () => {
    const tools = mkdtempSync(join(tmpdir(), 'mcp-front-tools-'));
    // What the Cloud SDK says with no active account.
    writeFileSync(join(tools, 'gcloud'), '#!/bin/sh\necho "ERROR: (gcloud.auth.print-access-token) You do not currently have an active account selected." >&2\necho "Please run:" >&2\nexit 1\n');
    chmodSync(join(tools, 'gcloud'), 0o755);
    const run = await statusCommand(`${tools}:/usr/bin:/bin`);
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: 'mcp-front: status: no Google Cloud credentials (ERROR: (gcloud.auth.print-access-token) You do not currently have an active account selected.): run `gcloud auth login`, or set CLOUDSDK_AUTH_ACCESS_TOKEN\n',
    });
  }, 30_000);
});
