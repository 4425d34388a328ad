import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect as tcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { Client, StdioClientTransport } from '../../lib/mcp/sdk.ts';
import { CLI } from '../support/stack-process.ts';

// `connect` against a server nobody here wrote: the MCP TypeScript SDK's example server with its
// demo OAuth provider (which approves without a page, so the automation "browser" suffices).

const EXAMPLE = join(import.meta.dirname, '../../node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js');
let server: ChildProcess;
let url = '';

async function listening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const open = await new Promise<boolean>((resolve) => tcp({ port, host: '127.0.0.1' }).once('connect', function (this: import('node:net').Socket) { this.end(); resolve(true); }).once('error', () => resolve(false)));
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing on ${port}`);
}

beforeAll(async () => {
  const [mcpPort, authPort] = [await freePort(), await freePort()];
  server = spawn(process.execPath, [EXAMPLE, '--oauth'], { env: { ...process.env, MCP_PORT: String(mcpPort), MCP_AUTH_PORT: String(authPort) }, stdio: 'ignore' });
  await Promise.all([listening(mcpPort), listening(authPort)]);
  url = `http://localhost:${mcpPort}/mcp`;
}, 30_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
});

describe('connect against the MCP SDK example server and its demo OAuth provider', () => {
  it('discovers, registers, signs in and calls a tool', async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'connect', url],
      env: { ...process.env, MCP_FRONT_CONNECT_DIR: mkdtempSync(join(tmpdir(), 'mcp-front-sdk-')), MCP_FRONT_BROWSER: 'follow' } as Record<string, string>,
      stderr: 'pipe',
    });
    const client = new Client({ name: 'sdk-server-test', version: '1' });
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map((t) => t.name);
    expect(tools).toContain('greet');
    expect(await client.callTool({ name: 'greet', arguments: { name: 'mcp-front' } })).toMatchObject({ content: [{ type: 'text', text: expect.stringContaining('mcp-front') }] });
    await client.close();
  }, 60_000);
});
