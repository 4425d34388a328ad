import { describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStackProcess } from '../support/stack-process.ts';

// `serve --port` (what `serve --help` offers) against a config whose loopback issuer names the
// listen port, as examples/local.yaml's does: the issuer, the metadata and the connector URLs
// must name the port the server listens on, or discovery sends clients to the old one.

const metadata = async (url: string) => (await fetch(url)).json() as Promise<Record<string, unknown>>;

describe('mcp-front serve --port', () => {
  it('moves a loopback issuer on the configured port to the new port: metadata and connector URLs name it', async () => {
    const port = await freePort();
    // MCP_FRONT_PORT empty: examples/local.yaml falls back to 8080 for both the issuer and server.port.
    const stack = await startStackProcess({ port, env: { MCP_FRONT_PORT: '' }, serveArgs: ['--port', String(port)] });
    try {
      const base = `http://127.0.0.1:${port}`;
      expect((await metadata(`${base}/.well-known/oauth-authorization-server`)).issuer).toBe(base);
      expect(await metadata(`${base}/.well-known/oauth-protected-resource/demo/mcp`)).toMatchObject({ resource: `${base}/demo/mcp`, authorization_servers: [base] });
      expect(stack.output()).toContain(`issuer:    ${base}\n`);
      expect(stack.output()).toContain(`${base}/demo-http/mcp`);
      expect(stack.output()).not.toContain(':8080');
    } finally {
      await stack.stop();
    }
  });

  it('leaves an issuer on another port alone (a local proxy in front of the server)', async () => {
    const port = await freePort();
    const yaml = `oauth:\n  issuer: http://127.0.0.1:9443\n  provider: dev\n  data_dir: \${MCP_FRONT_DATA_DIR}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: 8080\n`;
    const stack = await startStackProcess({ port, yaml, serveArgs: ['--port', String(port)] });
    try {
      expect((await metadata(`http://127.0.0.1:${port}/.well-known/oauth-authorization-server`)).issuer).toBe('http://127.0.0.1:9443');
    } finally {
      await stack.stop();
    }
  });
});
