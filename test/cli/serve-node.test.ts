import { describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { routeToken, startStackProcess } from '../support/stack-process.ts';

// The machine's own `node` is often older than the one running the gateway (here Node 20 on
// PATH, Node 24 from the `node` dev dependency): a route command or dev backend named `node`
// runs on the Node that runs the gateway, whatever PATH finds first.

function pathWithBrokenNode(): string {
  const bin = mkdtempSync(join(tmpdir(), 'mcp-front-old-node-'));
  writeFileSync(join(bin, 'node'), '#!/bin/sh\necho "this is not the node you want" >&2\nexit 1\n');
  chmodSync(join(bin, 'node'), 0o755);
  return `${bin}:${process.env.PATH ?? ''}`;
}

describe('routes named `node` in their command', () => {
  it('run on the gateway’s Node when the first `node` on PATH is another one: the stdio route and the dev backend both answer', async () => {
    const stack = await startStackProcess({ env: { PATH: pathWithBrokenNode() } });
    try {
      for (const route of ['/demo', '/demo-http']) {
        const client = new Client({ name: 'serve-node-test', version: '1' });
        const headers = { authorization: `Bearer ${await routeToken(stack.dataDir, stack.baseUrl, route)}` };
        await client.connect(new StreamableHTTPClientTransport(new URL(`${stack.baseUrl}${route}/mcp`), { requestInit: { headers } }));
        expect(await client.callTool({ name: 'echo', arguments: { text: route } })).toEqual({ content: [{ type: 'text', text: route }] });
        await client.close();
      }
    } finally {
      expect(await stack.stop()).toBe(0);
    }
  }, 60_000);
});
