import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { ManualClock, systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { ASSERTION_TYP, signIdentityAssertion } from '../../lib/tokens/identity-assertion.ts';
import { loadAssertionKeys } from '../../lib/tokens/keys.ts';
import { createAccessTokenVerifier } from '../../lib/tokens/access-token.ts';
import { startHttpToolServer, type HttpToolServer } from '../fixtures/tool-server.ts';
import { authorizeWithDevLogin } from '../support/oauth-client.ts';

// Who the backend sees: a stdio child learns its session's user from its environment; an http
// backend with `identity: assertion` gets a 60-second ES256 JWT per request, which the fixture
// verifies the way a real backend would: jose against the issuer's published JWKS, pinning
// issuer, its own URL as audience, and the typ. The user's access token never reaches it.

let stack: RunningStack;
let base = '';
let asserted: HttpToolServer;
let plain: HttpToolServer;
const refusals: string[] = [];

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const jwks = createRemoteJWKSet(new URL(`${base}/jwks.json`));
  asserted = await startHttpToolServer(async (req, url) => {
    const token = req.headers.get('x-mcp-front-assertion');
    try {
      if (!token) throw Object.assign(new Error('no assertion'), { code: 'MISSING' });
      return (await jwtVerify(token, jwks, { issuer: base, audience: url, typ: ASSERTION_TYP, algorithms: ['ES256'], requiredClaims: ['sub', 'email', 'route', 'iat', 'exp'] })).payload;
    } catch (err) {
      refusals.push((err as { code?: string }).code ?? String(err));
      return new Response('refused', { status: 401 });
    }
  });
  plain = await startHttpToolServer();
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-identity-'))}\nroutes:\n` +
      `  - { path: /who-stdio, type: stdio, command: [node, test/fixtures/tool-server.ts] }\n` +
      `  - { path: /who-http, type: http, backend: "${asserted.url}", identity: assertion, headers: { X-MCP-Front-Assertion: forged-by-config } }\n` +
      `  - { path: /plain-http, type: http, backend: "${plain.url}" }\n` +
      `server:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
}, 60_000);

afterAll(async () => {
  await stack?.close();
  await asserted?.close();
  await plain?.close();
});

async function whoami(route: string, email: string): Promise<{ answer: Record<string, unknown>; accessToken: string }> {
  const resource = `${base}${route}/mcp`;
  const { accessToken } = await authorizeWithDevLogin(base, { email, resource });
  const client = new Client({ name: 'identity-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
  await client.connect(transport);
  const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
  await transport.terminateSession();
  await client.close();
  return { answer: JSON.parse(result.content[0]!.text) as Record<string, unknown>, accessToken };
}

describe('a stdio child knows its session\'s user', () => {
  it('gets MCP_FRONT_USER_EMAIL and MCP_FRONT_USER_SUB, one user per child', async () => {
    expect((await whoami('/who-stdio', 'ada@example.com')).answer).toEqual({ email: 'ada@example.com', sub: 'dev:ada@example.com', inherited: ['MCP_FRONT_USER_EMAIL', 'MCP_FRONT_USER_SUB'] });
    expect((await whoami('/who-stdio', 'bob@example.com')).answer).toMatchObject({ email: 'bob@example.com', sub: 'dev:bob@example.com' });
  });
});

describe('identity: assertion on an http route', () => {
  it('sends every backend request a short-lived assertion the backend verifies with the published JWKS', async () => {
    const before = asserted.requests.length;
    const { answer, accessToken } = await whoami('/who-http', 'ada@example.com');
    const claims = answer as JWTPayload & { email: string; route: string };
    expect(claims).toMatchObject({ iss: base, sub: 'dev:ada@example.com', email: 'ada@example.com', aud: asserted.url, route: '/who-http' });
    expect(claims.exp! - claims.iat!).toBe(60);
    const seen = asserted.requests.slice(before);
    expect(seen.length).toBeGreaterThan(2); // initialize, initialized, the call (and the GET stream, DELETE)
    for (const headers of seen) {
      expect(headers.get('x-mcp-front-assertion')).toMatch(/^ey/); // the configured static header was overridden
      expect([...headers.values()].join('\n')).not.toContain(accessToken);
    }
    expect(refusals).toEqual([]);
  });

  it('the backend refuses an expired assertion, one for another backend, and the user\'s access token', async () => {
    const { current } = await loadAssertionKeys(stack.store, systemClock);
    const subject = { issuer: base, sub: 'dev:ada@example.com', email: 'ada@example.com', audience: asserted.url, route: '/who-http' };
    const twoMinutesAgo = new ManualClock(Date.now() - 120_000);
    const attempts = {
      expired: (await signIdentityAssertion(current, twoMinutesAgo, subject)).token,
      'another backend': (await signIdentityAssertion(current, systemClock, { ...subject, audience: plain.url })).token,
      'an access token': (await authorizeWithDevLogin(base, { email: 'ada@example.com', resource: `${base}/who-http/mcp` })).accessToken,
      fresh: (await signIdentityAssertion(current, systemClock, subject)).token,
    };
    const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'direct', version: '1' } } });
    const status: Record<string, number> = {};
    for (const [name, token] of Object.entries(attempts)) {
      const res = await fetch(asserted.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-mcp-front-assertion': token }, body: initialize });
      status[name] = res.status;
      await res.body?.cancel();
    }
    expect(status).toEqual({ expired: 401, 'another backend': 401, 'an access token': 401, fresh: 200 });
    expect(refusals.splice(0)).toEqual(['ERR_JWT_EXPIRED', 'ERR_JWT_CLAIM_VALIDATION_FAILED', 'ERR_JWT_CLAIM_VALIDATION_FAILED']);
  });

  it('a route never takes a JWT signed with the assertion key for an access token', async () => {
    const { current } = await loadAssertionKeys(stack.store, systemClock);
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ email: 'mallory@example.com', client_id: 'c', scope: 'mcp' })
      .setProtectedHeader({ alg: 'ES256', kid: current.kid, typ: 'at+jwt' })
      .setIssuer(base)
      .setSubject('dev:mallory@example.com')
      .setAudience(`${base}/who-stdio/mcp`)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .setJti('forged')
      .sign(current.privateKey);
    const res = await fetch(`${base}/who-stdio/mcp`, { method: 'POST', headers: { authorization: `Bearer ${forged}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
    expect(res.status).toBe(401);
    // A deployed route verifies against the issuer's JWKS, where the assertion key is published too.
    const deployed = createAccessTokenVerifier({ issuer: base, keys: new URL(`${base}/jwks.json`), clock: systemClock });
    await expect(deployed.verify(forged, [`${base}/who-stdio/mcp`])).rejects.toMatchObject({ name: 'InvalidTokenError', code: 'signature' });
    const genuine = (await authorizeWithDevLogin(base, { email: 'ada@example.com', resource: `${base}/who-stdio/mcp` })).accessToken;
    expect((await deployed.verify(genuine, [`${base}/who-stdio/mcp`])).sub).toBe('dev:ada@example.com');
    const published = ((await (await fetch(`${base}/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
    expect(published).toContain(current.kid);
    expect(current.kid).toMatch(/^assertion-/);
  });

  it('a route without identity: assertion sends none', async () => {
    await whoami('/plain-http', 'ada@example.com');
    expect(plain.requests.length).toBeGreaterThan(0);
    expect(plain.requests.every((h) => !h.has('x-mcp-front-assertion'))).toBe(true);
  });
});
