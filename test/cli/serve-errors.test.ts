import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../support/stack-process.ts';

// User errors are one clear line and exit 1: never a stack trace.

function runServe(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'serve', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

function configFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'mcp-front-cli-')), 'config.yaml');
  writeFileSync(file, text);
  return file;
}

const valid = `oauth:
  issuer: http://127.0.0.1:PORT
  data_dir: DATA
routes:
  - path: /db
    type: stdio
    command: [node, server.js]
    environment: { TOKEN: "\${DB_TOKEN}" }
server:
  port: PORT
`;

function expectUserError(result: { code: number | null; stderr: string }, message: string) {
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(message);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

describe('mcp-front serve refuses bad input with one clear message', () => {
  it('names the key path of an invalid setting', async () => {
    const file = configFile(valid.replace('type: stdio', 'type: stdio\n    timeout: soon').replace(/PORT/g, '8080').replace('DATA', tmpdir()));
    expectUserError(await runServe(['--config', file], { DB_TOKEN: 'x' }), 'routes[0].timeout: "soon" is not a duration');
  });

  it('names a missing environment variable', async () => {
    const file = configFile(valid.replace(/PORT/g, '8080').replace('DATA', tmpdir()));
    expectUserError(await runServe(['--config', file]), 'environment variable DB_TOKEN is not set');
  });

  it('says when the config file does not exist', async () => {
    expectUserError(await runServe(['--config', '/nonexistent/mcp-front.yaml']), '/nonexistent/mcp-front.yaml: cannot read config (ENOENT)');
  });

  it('says when a dev backend exits before it listens', async () => {
    const file = configFile(`oauth:
  issuer: http://127.0.0.1:8080
  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-data-'))}
routes:
  - path: /broken
    type: http
    dev_backend: { command: [node, -e, "process.exit(3)"], path: /mcp }
server:
  port: 0
`);
    expectUserError(await runServe(['--config', file]), 'dev backend for /broken exited (3) before it listened');
  });

  it('says when the port is already in use', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = String((taken.address() as { port: number }).port);
    try {
      const file = configFile(valid.replace(/PORT/g, port).replace('DATA', mkdtempSync(join(tmpdir(), 'mcp-front-data-'))));
      expectUserError(await runServe(['--config', file], { DB_TOKEN: 'x' }), `port ${port} on 127.0.0.1 is already in use`);
    } finally {
      taken.close();
    }
  });
});
