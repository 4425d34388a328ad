import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configRoutes, runDoctor, renderChecks } from '../../cli/doctor.ts';
import { CLI, startStackProcess, type StackProcess } from '../support/stack-process.ts';

// `mcp-front doctor` from outside, against the real local stack and against a stand-in
// deployment with a wrong issuer and no protected resource metadata.

describe('mcp-front doctor', () => {
  let stack: StackProcess;
  let broken: Server;
  let brokenUrl = '';

  beforeAll(async () => {
    stack = await startStackProcess();
    broken = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/.well-known/oauth-authorization-server') {
        // The issuer a misconfigured deployment would announce: not the URL clients use.
        return res.end(JSON.stringify({ issuer: 'https://old-name.example.com', authorization_endpoint: `${brokenUrl}/authorize`, token_endpoint: `${brokenUrl}/token`, registration_endpoint: `${brokenUrl}/register`, jwks_uri: `${brokenUrl}/jwks.json`, code_challenge_methods_supported: ['S256'] }));
      }
      if (req.url === '/demo/mcp') {
        res.statusCode = 401;
        res.setHeader('www-authenticate', `Bearer resource_metadata="${brokenUrl}/.well-known/oauth-protected-resource/demo/mcp"`);
        return res.end('{}');
      }
      res.statusCode = 404;
      res.end('{}');
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    brokenUrl = `http://127.0.0.1:${(broken.address() as { port: number }).port}`;
  }, 60_000);

  afterAll(async () => {
    broken?.close();
    if (stack) await stack.stop();
  });

  it('passes every check against the local stack', async () => {
    const checks = await runDoctor(stack.baseUrl, ['/demo', '/demo-http']);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.length).toBeGreaterThan(15);
    expect(renderChecks(checks)).toMatch(/all \d+ checks passed/);
  });

  it('names a wrong issuer and a missing PRM document, with the fix', async () => {
    const checks = await runDoctor(brokenUrl, ['/demo']);
    const failed = new Map(checks.filter((c) => !c.ok).map((c) => [c.name, c]));
    expect(failed.get('metadata issuer equals the URL clients use')?.fix).toContain(`set oauth.issuer to exactly ${brokenUrl}`);
    expect(failed.get('/demo: protected resource metadata (RFC 9728)')?.fix).toContain('/.well-known/*');
    // It answers OPTIONS as if it were a GET, with no CORS headers: a browser client can't discover it.
    expect(failed.get('browser clients: CORS preflight on the metadata')?.detail).toBe('HTTP 200, Access-Control-Allow-Origin null');
    expect(renderChecks(checks)).toContain('fix:');
  });

  it('--config needs no secret values: unset variables stay placeholders and are named', async () => {
    // The deploy config as an operator has it: its secrets live in Secret Manager, not here.
    const file = join(mkdtempSync(join(tmpdir(), 'mcp-front-doctor-')), 'mcp-front.yaml');
    writeFileSync(
      file,
      `oauth:
  issuer: https://mcp.example.com
  provider: google
  client_id: id
  client_secret: \${DOCTOR_TEST_CLIENT_SECRET}
routes:
  - { path: /demo, type: stdio, command: [node, server.js], environment: { TOKEN: "\${DOCTOR_TEST_TOKEN}" } }
  - { path: /demo-http, type: http, backend: "https://b.example.com/\${DOCTOR_TEST_PATH:-mcp}" }
deploy:
  secrets: { DOCTOR_TEST_CLIENT_SECRET: oauth-client-secret }
`,
    );
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DOCTOR_TEST_')));
    const run = await promisify(execFile)(process.execPath, [CLI, 'doctor', stack.baseUrl, '--config', file], { env });
    expect(run.stdout).toContain('note: not set here, left as placeholders (doctor needs only the route paths): DOCTOR_TEST_CLIENT_SECRET (secret oauth-client-secret), DOCTOR_TEST_TOKEN\n');
    expect(run.stdout).toContain('/demo-http: 401 with WWW-Authenticate');
    expect(run.stdout).toMatch(/all \d+ checks passed/);
  }, 30_000);

  it('names the unset variable when its placeholder is not a valid value', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mcp-front-doctor-')), 'mcp-front.yaml');
    writeFileSync(file, 'oauth:\n  issuer: ${DOCTOR_TEST_ISSUER}\nroutes: []\n');
    expect(() => configRoutes(file, {})).toThrow(/oauth\.issuer: .*\n\(not set here: DOCTOR_TEST_ISSUER; set them, or name the routes with --route\)$/);
  });

  it('reads the routes of a deploy example without its secrets', () => {
    expect(configRoutes('examples/deploy/http-google.yaml', {})).toEqual({
      routes: ['/notion'],
      note: 'not set here, left as placeholders (doctor needs only the route paths): GOOGLE_CLIENT_SECRET (secret google-oauth-client-secret)',
    });
  });
});
