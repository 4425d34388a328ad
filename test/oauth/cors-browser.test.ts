import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { browserSkipReason, launchBrowser } from '../support/browser.ts';

// A browser-based MCP client (the MCP Inspector's Direct mode) as Chromium runs it: a page on
// another origin does discovery, registration and a token request with fetch(), each with a
// header that makes Chromium send a preflight first, and must be able to read every answer.

const skip = browserSkipReason();

interface Seen {
  readonly status: number;
  readonly body: unknown;
  readonly wwwAuthenticate?: string | null;
}

describe.skipIf(skip)('a browser client on another origin', () => {
  let stack: RunningStack;
  let pageServer: Server;
  let base = '';
  let pageOrigin = '';

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-cors-'));
    const config = parseConfig(`oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n`, {});
    stack = await startStack(config, { log: silentLogger });
    // The client's own origin: another host name and port on loopback.
    const pagePort = await freePort();
    pageOrigin = `http://localhost:${pagePort}`;
    pageServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>MCP client</title>'));
    await new Promise<void>((resolve) => pageServer.listen(pagePort, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    pageServer?.close();
    await stack?.close();
  });

  it('reads the metadata, registers, and reads a token error, all cross-origin', async () => {
    const browser = await launchBrowser();
    try {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${pageOrigin}/`);
      const seen = await page.evaluate(async ({ base, resource }) => {
        const read = async (res: Response): Promise<Seen> => ({ status: res.status, body: await res.json(), wwwAuthenticate: res.headers.get('www-authenticate') });
        const mcp = { 'MCP-Protocol-Version': '2025-06-18' };
        const prm = await read(await fetch(`${base}/.well-known/oauth-protected-resource/demo/mcp`, { headers: mcp }));
        const metadata = await read(await fetch(`${base}/.well-known/oauth-authorization-server`, { headers: mcp }));
        const endpoints = metadata.body as { registration_endpoint: string; token_endpoint: string };
        // A tracing header nobody lists by name, as web apps add: admitted by the wildcard.
        const registered = await read(
          await fetch(endpoints.registration_endpoint, {
            method: 'POST',
            headers: { ...mcp, 'content-type': 'application/json', baggage: 'sentry-environment=test' },
            body: JSON.stringify({ client_name: 'browser client', redirect_uris: [`${location.origin}/oauth/callback`] }),
          }),
        );
        const clientId = (registered.body as { client_id: string }).client_id;
        const form = { grant_type: 'authorization_code', code: 'not-a-code', code_verifier: 'x'.repeat(43), redirect_uri: `${location.origin}/oauth/callback`, resource };
        const badCode = await read(await fetch(endpoints.token_endpoint, { method: 'POST', headers: { ...mcp, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ ...form, client_id: clientId }) }));
        const badClient = await read(await fetch(endpoints.token_endpoint, { method: 'POST', headers: { ...mcp, 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${btoa('nobody:wrong')}` }, body: new URLSearchParams(form) }));
        // The sign-in pages are for top-level navigation: a script on another origin can't read them.
        const authorizePage = await fetch(`${base}/authorize?client_id=${clientId}`).then(
          () => 'readable',
          (err: Error) => err.name,
        );
        return { prm, metadata, registered, badCode, badClient, authorizePage };
      }, { base, resource: `${base}/demo/mcp` });

      expect(seen.prm).toMatchObject({ status: 200, body: { resource: `${base}/demo/mcp`, authorization_servers: [base] } });
      expect(seen.metadata).toMatchObject({ status: 200, body: { issuer: base, token_endpoint: `${base}/token` } });
      expect(seen.registered).toMatchObject({ status: 201, body: { client_name: 'browser client', redirect_uris: [`${pageOrigin}/oauth/callback`] } });
      expect(seen.badCode).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
      expect(seen.badClient).toMatchObject({ status: 401, body: { error: 'invalid_client' }, wwwAuthenticate: 'Basic realm="mcp-front"' });
      expect(seen.authorizePage).toBe('TypeError');
    } finally {
      await browser.closeAll();
    }
  }, 60_000);
});
