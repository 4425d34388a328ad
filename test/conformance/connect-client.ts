
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, StdioClientTransport } from '../../lib/mcp/sdk.ts';

// The client command for `conformance client --suite auth`: an MCP client that reaches the
// scenario's server only through `mcp-front connect`, which does all of the OAuth. Every run
// gets a fresh token directory, so scenarios never share a sign-in.

const url = process.argv.at(-1)!;
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}') as { client_id?: string; client_secret?: string };
const args = [join(import.meta.dirname, '../../cli/mcp-front.ts'), 'connect', url, '--client-metadata-url', 'https://conformance-test.local/client-metadata.json'];
if (context.client_id) args.push('--client-id', context.client_id);
if (context.client_secret) args.push('--client-secret', context.client_secret);
const transport = new StdioClientTransport({
  command: process.execPath,
  args,
  env: { ...process.env, MCP_FRONT_CONNECT_DIR: mkdtempSync(join(tmpdir(), 'mcp-front-conformance-')), MCP_FRONT_BROWSER: 'follow' } as Record<string, string>,
  stderr: 'inherit',
});
const client = new Client({ name: 'mcp-front-connect-conformance', version: '1.0.0' });
await client.connect(transport);
await client.listTools();
await client.callTool({ name: 'test-tool', arguments: {} });
await client.close();
