import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../lib/config/load.ts';
import { parseContainerRun, sessionContainer } from '../../lib/mcp/session-container.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { routeToken, startStackProcess, type StackProcess } from '../support/stack-process.ts';

// A local stdio route whose command is `docker run`: its container outlives the CLI, so every
// session's container is named after the session and removed by name when the session ends.
// There is no container engine on this machine (nor in CI): a fake `docker` first on PATH
// records each command line it is given and, for `run`, becomes the demo MCP server, so the
// test checks the commands the gateway runs, not what an engine does with them.

const DEMO_SERVER = join(import.meta.dirname, '../../examples/demo-server/server.ts');

function fakeDocker(): { bin: string; calls: () => string[][] } {
  const bin = mkdtempSync(join(tmpdir(), 'mcp-front-fake-docker-'));
  const record = join(bin, 'calls.jsonl');
  writeFileSync(
    join(bin, 'docker'),
    `#!${process.execPath}
require('node:fs').appendFileSync(${JSON.stringify(record)}, JSON.stringify(process.argv.slice(2)) + '\\n');
if (process.argv[2] === 'run') import(${JSON.stringify(DEMO_SERVER)});
`,
  );
  chmodSync(join(bin, 'docker'), 0o755);
  const calls = () => (existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as string[]) : []);
  return { bin, calls };
}

async function until(condition: () => boolean, withinMs = 10_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the command for a session of a `docker run` route', () => {
  it('gets --rm, --init and the session-named --name right after run, leaving the rest as it was', () => {
    const container = sessionContainer(['docker', 'run', '-i', '-e', 'TOKEN', '-v', '/data:/data:ro', 'example/server:1', '--rm'], 'AbC_-123456789012345678');
    expect(container).toEqual({
      name: 'mcp-front-AbC_-12345678901',
      command: ['docker', 'run', '--rm', '--init', '--name', 'mcp-front-AbC_-12345678901', '-i', '-e', 'TOKEN', '-v', '/data:/data:ro', 'example/server:1', '--rm'],
      removeCommand: ['docker', 'rm', '-f', 'mcp-front-AbC_-12345678901'],
    });
  });

  it('adds no second --rm or --init, and knows podman and `container run`', () => {
    expect(sessionContainer(['/usr/bin/podman', 'container', 'run', '--init', '-i', '--rm=true', 'img'], 'session-id-0123456789')?.command).toEqual([
      '/usr/bin/podman', 'container', 'run', '--name', 'mcp-front-session-id-01234', '--init', '-i', '--rm=true', 'img',
    ]);
  });

  it('reads flags with values, attached values and switch clusters up to the image, and only those', () => {
    expect(parseContainerRun(['docker', 'run', '-it', '-eA=1', '-p', '80:80', '--network=host', '--env-file', 'f', 'img', '-i', '--init'])?.options).toEqual(['-it', '-eA=1', '-p', '80:80', '--network=host', '--env-file', 'f']);
    expect(sessionContainer(['docker', 'run', '-i', 'img', '--init'], 'x'.repeat(32))?.command).toContain('--init');
  });

  it('leaves every other command alone', () => {
    for (const command of [['node', 'server.js'], ['docker', 'exec', '-i', 'c', 'srv'], ['dockerd'], ['npx', 'docker', 'run']]) expect(sessionContainer(command, 'x'.repeat(32))).toBeUndefined();
  });

  it('is a configuration error when the route names its container itself', () => {
    const yaml = (command: string) => `oauth: { issuer: http://127.0.0.1:8080, provider: dev }\nroutes:\n  - { path: /c, type: stdio, command: ${command} }\n`;
    expect(() => parseConfig(yaml('[docker, run, -i, --name, fixed, img]'), {}, 'c.yaml')).toThrow(ConfigError);
    expect(() => parseConfig(yaml('[docker, run, -i, --name, fixed, img]'), {}, 'c.yaml')).toThrow(/routes\[0\]\.command: drop --name/);
    expect(() => parseConfig(yaml('[docker, run, -i, img, --name, for-the-server]'), {}, 'c.yaml')).not.toThrow();
  });
});

describe('a `docker run` route under serve (fake docker on PATH)', () => {
  const docker = fakeDocker();
  let stack: StackProcess;
  const yaml = `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
routes:
  - { path: /container, type: stdio, command: [docker, run, -i, example/mcp-server:1] }
  - { path: /idle, type: stdio, command: [docker, run, --rm, -i, --init, example/mcp-server:1], idle_timeout: 1s }
server:
  port: \${MCP_FRONT_PORT}
`;

  beforeAll(async () => {
    stack = await startStackProcess({ yaml, env: { PATH: `${docker.bin}:${process.env.PATH}` } });
  });
  afterAll(async () => {
    if (stack) await stack.stop();
    rmSync(docker.bin, { recursive: true, force: true });
  });

  async function openSession(route: string) {
    const token = await routeToken(stack.dataDir, stack.baseUrl, route);
    const transport = new StreamableHTTPClientTransport(new URL(`${stack.baseUrl}${route}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
    const client = new Client({ name: 'docker-run-test', version: '1.0.0' });
    await client.connect(transport);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'from the container' } })).toMatchObject({ content: [{ type: 'text', text: 'from the container' }] });
    const name = `mcp-front-${transport.sessionId!.slice(0, 16)}`;
    return { client, transport, name };
  }

  const removed = (name: string) => docker.calls().some((c) => c.join(' ') === `rm -f ${name}`);

  it('runs the session in a container of its own name and removes it when the client DELETEs the session', async () => {
    const { client, transport, name } = await openSession('/container');
    expect(docker.calls()).toContainEqual(['run', '--rm', '--init', '--name', name, '-i', 'example/mcp-server:1']);
    expect(removed(name)).toBe(false);
    await transport.terminateSession();
    await client.close();
    await until(() => removed(name));
  });

  it('removes the container of a session ended as idle, adding only the --name a command lacks', async () => {
    const { client, name } = await openSession('/idle');
    expect(docker.calls()).toContainEqual(['run', '--name', name, '--rm', '-i', '--init', 'example/mcp-server:1']);
    // Gone without a DELETE: its GET stream closes, and nothing keeps the session busy.
    await client.close();
    expect(removed(name)).toBe(false);
    await until(() => removed(name));
  });

  it('removes the container of every session still open when the gateway shuts down', async () => {
    const sessions = [await openSession('/container'), await openSession('/container')];
    expect(await stack.stop()).toBe(0);
    for (const { name } of sessions) expect(removed(name)).toBe(true);
    for (const { client } of sessions) await client.close();
  });
});
