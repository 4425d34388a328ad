import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, StdioClientTransport } from '../../lib/mcp/sdk.ts';
import { generateSigningJwk } from '../../lib/tokens/keys.ts';
import { CLI, startStackProcess, type StackProcess } from '../support/stack-process.ts';
import { browserSkipReason, devSignInInBrowser } from '../support/browser.ts';

// `mcp-front connect <gateway> --all`: every route as one stdio server after one sign-in and one
// consent naming all of them; tokens stay audience-bound, one per route.

const skip = browserSkipReason();
const YAML = `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
routes:
  - { path: /alpha, type: stdio, command: [node, examples/demo-server/server.ts] }
  - { path: /beta, type: stdio, command: [node, examples/demo-server/server.ts] }
server:
  port: \${MCP_FRONT_PORT}
`;

let stack: StackProcess;
beforeAll(async () => {
  stack = await startStackProcess({ yaml: YAML });
});
afterAll(async () => stack?.stop());

describe.skipIf(skip)('connect --all', () => {
  it('serves every route\'s tools, prefixed, after one sign-in and one consent', async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'connect', stack.baseUrl, '--all'],
      env: { ...process.env, MCP_FRONT_CONNECT_DIR: mkdtempSync(join(tmpdir(), 'mcp-front-all-')), MCP_FRONT_BROWSER: 'none' } as Record<string, string>,
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const client = new Client({ name: 'all-routes-test', version: '1' });
    const connecting = client.connect(transport);
    let printed: string | undefined;
    for (let i = 0; i < 200 && !printed; i++) {
      printed = /in your browser: (\S+)/.exec(stderr)?.[1];
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(new URL(printed!).searchParams.getAll('resource')).toEqual([`${stack.baseUrl}/alpha/mcp`, `${stack.baseUrl}/beta/mcp`]);
    await devSignInInBrowser(printed!, 'ada@example.com', (consent) => {
      expect(consent).toContain('/alpha');
      expect(consent).toContain('/beta');
    });
    await connecting;
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(['alpha__add', 'alpha__big', 'alpha__echo', 'alpha__slow', 'beta__add', 'beta__big', 'beta__echo', 'beta__slow']);
    expect(await client.callTool({ name: 'beta__echo', arguments: { text: 'via beta' } })).toEqual({ content: [{ type: 'text', text: 'via beta' }] });
    expect(await client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 2 } })).toEqual({ content: [{ type: 'text', text: '3' }] });
    expect(stderr.match(/sign in to/g)).toHaveLength(1);

    // The gateway restarts with a new signing key: every cached token now gets a 401. Each
    // route's token is renewed with the refresh token (no second sign-in), and the sessions
    // carry on from their stored records.
    await stack.stop();
    stack = await startStackProcess({ yaml: YAML, port: Number(new URL(stack.baseUrl).port), dataDir: stack.dataDir, env: { MCP_FRONT_SIGNING_KEY: JSON.stringify(await generateSigningJwk()) } });
    expect(await client.callTool({ name: 'beta__echo', arguments: { text: 'after rotation' } })).toEqual({ content: [{ type: 'text', text: 'after rotation' }] });
    expect(await client.callTool({ name: 'alpha__add', arguments: { a: 2, b: 3 } })).toEqual({ content: [{ type: 'text', text: '5' }] });
    expect(stderr.match(/sign in to/g)).toHaveLength(1);
    await client.close();
  }, 60_000);
});
