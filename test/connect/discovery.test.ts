import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectError, discover } from '../../cli/connect/discovery.ts';

// `connect` asks tokens for the resource the protected resource metadata names, so a server
// that names another one (a token for a different MCP server, or another tenant's path on the
// same host) must be refused before anything reaches the authorization server (RFC 9728 §3.3).

let server: Server;
let base = '';
/** What the protected resource metadata says the resource is (null: it leaves `resource` out). */
let claimed: string | null = '';
/** Requests the authorization server got: none must follow a lie. */
const seenByAuthorizationServer: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = new URL(req.url!, base).pathname;
    res.setHeader('content-type', 'application/json');
    if (path === '/tenant-a/mcp') return void res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/tenant-a/mcp"` }).end('{}');
    if (path.startsWith('/.well-known/oauth-protected-resource')) return void res.end(JSON.stringify({ ...(claimed === null ? {} : { resource: claimed }), authorization_servers: [base] }));
    seenByAuthorizationServer.push(path);
    if (path === '/.well-known/oauth-authorization-server') {
      return void res.end(JSON.stringify({ issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`, registration_endpoint: `${base}/register`, code_challenge_methods_supported: ['S256'] }));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => server?.close());

describe('discovery checks the resource the server names (RFC 9728 §3.3)', () => {
  it.each([
    ['another origin', () => 'https://evil.example/tenant-a/mcp'],
    ['another path on the same origin', () => `${base}/tenant-b/mcp`],
    ['a path that merely starts like ours', () => `${base}/tenant-a/mcp-evil`],
    ['another scheme', () => base.replace('http:', 'https:') + '/tenant-a/mcp'],
  ])('refuses metadata naming %s, and never asks the authorization server', async (_name, lie) => {
    claimed = lie();
    seenByAuthorizationServer.length = 0;
    const error = await discover(`${base}/tenant-a/mcp`).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as Error).message).toContain(`names the resource ${claimed}`);
    expect(seenByAuthorizationServer).toEqual([]);
  });

  it.each([
    ['the URL itself', () => `${base}/tenant-a/mcp`],
    ['a parent path of it (the SDK allows a prefix)', () => `${base}/tenant-a`],
  ])('accepts %s, and asks tokens for the resource it names', async (_name, truth) => {
    claimed = truth();
    expect((await discover(`${base}/tenant-a/mcp`)).resource).toBe(claimed);
  });

  it('asks tokens for the URL it was given when the metadata names no resource', async () => {
    claimed = null;
    expect((await discover(`${base}/tenant-a/mcp`)).resource).toBe(`${base}/tenant-a/mcp`);
  });
});
