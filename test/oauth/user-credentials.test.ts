import { readFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { memoryLogger } from '../../lib/log.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { credentialId, type UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { COLLECTIONS } from '../../lib/store/store.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { startHttpToolServer, type HttpToolServer } from '../fixtures/tool-server.ts';
import { formPost, hiddenField, obtainCode, redeemCode, refreshGrant, registerPublicClient, send, type TokenResponse } from '../support/oauth-client.ts';
import { storeSnapshot } from '../support/store-snapshot.ts';

// routes[].user_credential end to end, on a real stack over loopback HTTP with the SDK client:
// the consent page asks for the credential, the store keeps it only sealed, the stdio child gets
// it in its environment and the http backend in its header; replacing it ends the sessions that
// run with the old one; deleting it stops new tokens; and every hostile variation (another
// user's or route's sealed value, a token carrying someone else's, markup, oversized or
// multi-line values) is refused without changing the store or leaking the value.

const log = memoryLogger();
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-credentials-'));
let stack: RunningStack;
let backend: HttpToolServer;
let base = '';
const SVC = () => `${base}/svc/mcp`;
const SVC_HTTP = () => `${base}/svc-http/mcp`;
/** Every credential value the tests give: none may ever appear in the store or a log line. */
const given = new Set<string>();
const credential = (value: string) => (given.add(value), value);

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  backend = await startHttpToolServer();
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\n  token_ttl: 10m\nroutes:\n` +
      `  - path: /svc\n    type: stdio\n    command: [node, test/fixtures/tool-server.ts]\n    environment: { TOOL_ECHO_ENV: SVC_TOKEN }\n` +
      `    user_credential: { label: "Service token", instructions: "Make one under <b>Settings</b> & paste it here", help_url: "https://svc.example/tokens", pattern: "svc_[A-Za-z0-9]{8,}", env: SVC_TOKEN }\n` +
      `  - path: /svc-http\n    type: http\n    backend: "${backend.url}"\n` +
      `    user_credential: { label: "HTTP key", instructions: "Your key", header: "Authorization: Bearer {credential}" }\n` +
      `  - { path: /plain, type: stdio, command: [node, test/fixtures/tool-server.ts] }\n` +
      `server:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log });
}, 60_000);

afterAll(async () => {
  await stack?.close();
  await backend?.close();
  // Never logged, at any point of any test in this file.
  const logged = JSON.stringify(log.lines);
  for (const value of given) expect(logged).not.toContain(value);
});

interface Session {
  readonly client: Client;
  readonly transport: StreamableHTTPClientTransport;
}

async function connect(resource: string, accessToken: string): Promise<Session> {
  const client = new Client({ name: 'credentials-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
  await client.connect(transport);
  return { client, transport };
}

async function whoami(session: Session): Promise<{ env?: Record<string, string | null>; pid?: number; email: string }> {
  const result = (await session.client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
  return JSON.parse(result.content[0]!.text) as { env?: Record<string, string | null>; pid?: number; email: string };
}

async function end(session: Session): Promise<void> {
  await session.transport.terminateSession().catch(() => undefined);
  await session.client.close();
}

/** Signs in as `email` (once per cookie), allows with these credential fields; the tokens for `resource`. */
async function authorize(email: string, resource: string, fields: Record<string, string>, cookie: { value?: string } = {}, clientId?: string): Promise<TokenResponse & { clientId: string }> {
  const code = await obtainCode(base, { email, resource, cookie, consentFields: fields, ...(clientId ? { clientId } : {}) });
  const res = await redeemCode(base, code, { resource });
  expect(res.status).toBe(200);
  return { ...((await res.json()) as TokenResponse), clientId: code.clientId };
}

/** /authorize as a client would start it, followed to the page the user sees (sign-in done with `cookie`). */
async function pageAfterAuthorize(clientId: string, resource: string, cookie: { value?: string }): Promise<Response> {
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: 'A'.repeat(43), code_challenge_method: 'S256', resource });
  let res = await send(base, `/authorize?${query}`, { headers: { cookie: cookie.value! } });
  while (res.status === 303 && !res.headers.get('location')!.startsWith('http://127.0.0.1:1/')) res = await send(base, res.headers.get('location')!, { headers: { cookie: cookie.value! } });
  return res;
}

async function accountPage(cookie: { value?: string }): Promise<string> {
  const res = await send(base, '/account', { headers: { cookie: cookie.value! } });
  expect(res.status).toBe(200);
  return res.text();
}

async function accountPost(cookie: { value?: string }, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  const csrf = hiddenField(await accountPage(cookie), 'csrf');
  return send(base, '/account', formPost({ csrf, ...fields }, { origin: base, cookie: cookie.value!, ...headers }));
}

async function storedCredentials(): Promise<Array<{ id: string; doc: UserCredentialRecord }>> {
  return stack.store.list<UserCredentialRecord>('userCredentials');
}

/** A token for a route signed with the stack's own key: what only the authorization server could mint, with a claim of our choosing. */
async function mintToken(sub: string, email: string, resource: string, cred?: string): Promise<string> {
  const keys = await loadKeySet(stack.store, systemClock);
  return (await signAccessToken(keys.current, base, 600_000, systemClock, { sub, email, aud: resource, client_id: 'c', scope: 'mcp', ...(cred ? { cred } : {}) })).token;
}

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { cred?: string };

describe('the consent page asks for the credential', () => {
  it('shows a password field with the instructions as text, and refuses Allow without a valid value: no code, nothing stored', async () => {
    const cookie: { value?: string } = {};
    const clientId = await registerPublicClient(base);
    // Sign in (obtainCode stops at the consent page's refusal: do it by hand).
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: 'A'.repeat(43), code_challenge_method: 'S256', resource: SVC() });
    let res = await send(base, `/authorize?${query}`);
    res = await send(base, res.headers.get('location')!);
    const signIn = await res.text();
    res = await send(base, '/signin', formPost({ request: hiddenField(signIn, 'request'), csrf: hiddenField(signIn, 'csrf'), email: 'nina@example.com' }, { origin: base }));
    cookie.value = res.headers.get('set-cookie')!.split(';')[0];
    res = await send(base, res.headers.get('location')!, { headers: { cookie: cookie.value! } });
    const consent = await res.text();
    expect(consent).toContain('<input type="password" name="credential-svc" autocomplete="off"');
    expect(consent).toContain('Make one under &lt;b&gt;Settings&lt;/b&gt; &amp; paste it here');
    expect(consent).not.toContain('<b>Settings</b>');
    expect(consent).toContain('href="https://svc.example/tokens"');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");

    const before = storeSnapshot(dataDir);
    const post = (value: string | undefined) =>
      send(base, '/consent', formPost({ request: hiddenField(consent, 'request'), csrf: hiddenField(consent, 'csrf'), decision: 'allow', ...(value !== undefined ? { 'credential-svc': value } : {}) }, { origin: base, cookie: cookie.value! }));
    const cases: Array<[string | undefined, string]> = [
      [undefined, 'Enter your Service token.'],
      ['   ', 'Enter your Service token.'],
      [credential('not-a-token'), 'That does not look like a Service token.'],
      [credential(`svc_${'a'.repeat(5000)}`), 'That Service token is longer than 4096 bytes.'],
      [credential('svc_abcdefgh\r\nX-Evil: 1'), 'only printable ASCII'],
      [credential('svc_abcdefgh\u0000'), 'only printable ASCII'],
    ];
    for (const [value, message] of cases) {
      const answer = await post(value);
      expect(answer.status, String(value)).toBe(400);
      expect(answer.headers.get('location')).toBeNull();
      const html = await answer.text();
      expect(html).toContain(message);
      if (value?.trim()) expect(html).not.toContain(value.trim().slice(0, 40));
    }
    expect(storeSnapshot(dataDir)).toBe(before);

    const ok = await post(credential('svc_NinaToken1'));
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toMatch(/^http:\/\/127\.0\.0\.1:1\/callback\?code=/);
  });

  it('a body past the room for every credential field is refused with 413', async () => {
    const res = await send(base, '/consent', formPost({ request: 'x'.repeat(24), csrf: 'y', decision: 'allow', 'credential-svc': 'a'.repeat(80_000) }, { origin: base }));
    expect(res.status).toBe(413);
  });
});

describe('the credential reaches the user\'s own sessions only', () => {
  it('the stdio child sees it in its environment; another user\'s child sees theirs; the raw store has it only sealed', async () => {
    const ada = await authorize('ada@example.com', SVC(), { 'credential-svc': credential('svc_AdaToken01') });
    const bob = await authorize('bob@example.com', SVC(), { 'credential-svc': credential('svc_BobToken01') });
    const adas = await connect(SVC(), ada.access_token);
    const bobs = await connect(SVC(), bob.access_token);
    expect((await whoami(adas)).env).toEqual({ SVC_TOKEN: 'svc_AdaToken01' });
    expect((await whoami(bobs)).env).toEqual({ SVC_TOKEN: 'svc_BobToken01' });
    await end(adas);
    await end(bobs);

    // The access token carries it sealed for /svc alone: not in the clear, not readable by the client.
    expect(claimsOf(ada.access_token).cred).toMatch(/^v1\./);
    expect(Buffer.from(ada.access_token.split('.')[1]!, 'base64url').toString()).not.toContain('svc_AdaToken01');
    // Every document of every collection, and the SQLite files' bytes (WAL included).
    for (const collection of COLLECTIONS) expect(JSON.stringify(await stack.store.list(collection))).not.toContain('svc_AdaToken01');
    for (const file of ['mcp-front.sqlite', 'mcp-front.sqlite-wal'].map((f) => join(dataDir, f)).filter(existsSync)) {
      expect(readFileSync(file).includes(Buffer.from('svc_AdaToken01'))).toBe(false);
    }
    const record = (await storedCredentials()).find((r) => r.doc.email === 'ada@example.com')!;
    expect(record.doc).toMatchObject({ route: '/svc', userSub: 'dev:ada@example.com' });
    expect(record.doc.sealed).toMatch(/^v1\./);
  });

  it('the largest credential allowed (4 KiB) makes it all the way: the token stays under the limits, the child gets it whole', async () => {
    const big = credential(`svc_${'Z'.repeat(4092)}`);
    const tokens = await authorize('olga@example.com', SVC(), { 'credential-svc': big });
    expect(tokens.access_token.length).toBeLessThan(12_288);
    const session = await connect(SVC(), tokens.access_token);
    expect((await whoami(session)).env).toEqual({ SVC_TOKEN: big });
    await end(session);
  });

  it('the http backend gets it in the configured header on every request, and never the user\'s access token', async () => {
    const ada = await authorize('ada@example.com', SVC_HTTP(), { 'credential-svc-http': credential('http-key-ada-1') });
    const before = backend.requests.length;
    const session = await connect(SVC_HTTP(), ada.access_token);
    await whoami(session);
    await end(session);
    const seen = backend.requests.slice(before);
    expect(seen.length).toBeGreaterThan(2);
    for (const headers of seen) {
      expect(headers.get('authorization')).toBe('Bearer http-key-ada-1');
      expect([...headers.values()].join('\n')).not.toContain(ada.access_token);
    }
  });

  it('a route without user_credential gets none, and its tokens carry none', async () => {
    const code = await obtainCode(base, { email: 'ada@example.com', resource: `${base}/plain/mcp` });
    const tokens = (await (await redeemCode(base, code, { resource: `${base}/plain/mcp` })).json()) as TokenResponse;
    expect(claimsOf(tokens.access_token).cred).toBeUndefined();
    const session = await connect(`${base}/plain/mcp`, tokens.access_token);
    expect((await whoami(session)).env).toBeUndefined();
    await end(session);
  });
});

describe('replacing and deleting', () => {
  it('replacing it ends the sessions running with the old one at the first request with a token issued since; new sessions get the new one', async () => {
    const cookie: { value?: string } = {};
    const ada = await authorize('carol@example.com', SVC(), { 'credential-svc': credential('svc_CarolFirst1') }, cookie);
    const session = await connect(SVC(), ada.access_token);
    const first = await whoami(session);
    expect(first.env).toEqual({ SVC_TOKEN: 'svc_CarolFirst1' });
    const sessionId = session.transport.sessionId!;

    const replaced = await accountPost(cookie, { action: 'save-credential', route: '/svc', 'credential-svc': credential('svc_CarolSecond2') });
    expect(replaced.status).toBe(303);
    expect(replaced.headers.get('location')).toBe(`${base}/account?done=saved`);

    const call = (token: string) =>
      fetch(SVC(), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami', arguments: {} } }),
      });
    // The token issued before still works on its session until it expires (token_ttl): the bound.
    expect((await call(ada.access_token)).status).toBe(200);
    const refreshed = await refreshGrant(base, ada.clientId, ada.refresh_token);
    expect(refreshed.status).toBe(200);
    const newer = (await refreshed.json()) as TokenResponse;
    const ended = await call(newer.access_token);
    expect(ended.status).toBe(404);
    // …and it does not come back with the old token either: the session and its record are gone.
    expect((await call(ada.access_token)).status).toBe(404);
    await session.client.close();

    const again = await connect(SVC(), newer.access_token);
    const second = await whoami(again);
    expect(second.env).toEqual({ SVC_TOKEN: 'svc_CarolSecond2' });
    expect(second.pid).not.toBe(first.pid);
    await end(again);
  });

  it('deleting it stops new tokens for the route (invalid_grant saying why) until one is given again; a new authorization asks for it even with consent remembered', async () => {
    const cookie: { value?: string } = {};
    const dan = await authorize('dan@example.com', SVC(), { 'credential-svc': credential('svc_DanToken01') }, cookie);
    const deleted = await accountPost(cookie, { action: 'delete-credential', route: '/svc' });
    expect(deleted.status).toBe(303);
    expect((await storedCredentials()).filter((r) => r.doc.email === 'dan@example.com')).toEqual([]);

    const refused = await refreshGrant(base, dan.clientId, dan.refresh_token);
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ error: 'invalid_grant', error_description: `no Service token is stored for /svc: connect again and give it, or add it on ${base}/account` });

    // Same client, same user: consent is remembered, but the page asks for the credential again.
    const page = await pageAfterAuthorize(dan.clientId, SVC(), cookie);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('name="credential-svc"');

    // Given again on the account page: the old grant's refresh token works again.
    expect((await accountPost(cookie, { action: 'save-credential', route: '/svc', 'credential-svc': credential('svc_DanToken02') })).status).toBe(303);
    const back = await refreshGrant(base, dan.clientId, dan.refresh_token);
    expect(back.status).toBe(200);
    const session = await connect(SVC(), ((await back.json()) as TokenResponse).access_token);
    expect((await whoami(session)).env).toEqual({ SVC_TOKEN: 'svc_DanToken02' });
    await end(session);
  });

  it('mcp-front revoke --user (offboarding) deletes the user\'s credentials too', async () => {
    const { revokeUser } = await import('../../lib/oauth/revocation.ts');
    await authorize('erin@example.com', SVC(), { 'credential-svc': credential('svc_ErinToken1') });
    expect((await storedCredentials()).some((r) => r.doc.email === 'erin@example.com')).toBe(true);
    await revokeUser(stack.store, systemClock, 'erin@example.com');
    expect((await storedCredentials()).some((r) => r.doc.email === 'erin@example.com')).toBe(false);
  });
});

describe('hostile: a credential that is not the user\'s, or not the route\'s', () => {
  it('a sealed record copied onto another user\'s (fields and all, or with the user rewritten) never opens for them: their refresh is refused', async () => {
    await authorize('frank@example.com', SVC(), { 'credential-svc': credential('svc_FrankTok01') });
    const grace = await authorize('grace@example.com', SVC(), { 'credential-svc': credential('svc_GraceTok01') });
    const frankRecord = (await storedCredentials()).find((r) => r.doc.email === 'frank@example.com')!.doc;
    const graceId = credentialId('dev:grace@example.com', '/svc');
    for (const forged of [frankRecord, { ...frankRecord, userSub: 'dev:grace@example.com', email: 'grace@example.com' }]) {
      await stack.store.put('userCredentials', graceId, forged);
      const refused = await refreshGrant(base, grace.clientId, grace.refresh_token);
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { error_description: string }).error_description).toContain('can no longer be read');
    }
    // Onto another route of the same user: the route is in the additional data too.
    await stack.store.put('userCredentials', credentialId('dev:frank@example.com', '/svc-http'), { ...frankRecord, route: '/svc-http' });
    const code = await obtainCode(base, { email: 'frank@example.com', resource: SVC_HTTP(), consentFields: { 'credential-svc-http': credential('http-key-frank') } });
    // The consent page saw a record that does not open, so it asked, and the new value replaced the forgery.
    expect((await redeemCode(base, code, { resource: SVC_HTTP() })).status).toBe(200);
  });

  it('a route refuses a token whose sealed credential was issued for another user or another route, or that carries none', async () => {
    const henry = await authorize('henry@example.com', SVC(), { 'credential-svc': credential('svc_HenryTok01') });
    const sealed = claimsOf(henry.access_token).cred!;
    const initialize = (token: string, resource: string) =>
      fetch(resource, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
      });
    const attempts = {
      "henry's, in a token for ivy": await mintToken('dev:ivy@example.com', 'ivy@example.com', SVC(), sealed),
      "henry's /svc one, in a token for /svc-http": await mintToken('dev:henry@example.com', 'henry@example.com', SVC_HTTP(), sealed),
      'none at all': await mintToken('dev:henry@example.com', 'henry@example.com', SVC()),
      'an altered one': await mintToken('dev:henry@example.com', 'henry@example.com', SVC(), `${sealed.slice(0, -4)}AAAA`),
    };
    for (const [name, token] of Object.entries(attempts)) {
      const resource = name.includes('/svc-http') ? SVC_HTTP() : SVC();
      const res = await initialize(token, resource);
      expect(res.status, name).toBe(401);
      expect(res.headers.get('www-authenticate'), name).toContain('error="invalid_token"');
      expect(res.headers.get('www-authenticate'), name).toMatch(/carries no usable (Service token|HTTP key)/);
    }
    expect((await initialize(henry.access_token, SVC())).status).toBe(200);
  });
});

describe('the account page', () => {
  it('lists connected clients per route with their names escaped; revoking one ends its access at the next refresh', async () => {
    const cookie: { value?: string } = {};
    const hostile = await registerPublicClient(base, 'http://127.0.0.1:1/callback', '<img src=x onerror=alert(1)>');
    const tokens = await authorize('jack@example.com', SVC(), { 'credential-svc': credential('svc_JackTok001') }, cookie, hostile);
    const html = await accountPage(cookie);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<img');
    expect(html).toContain('<h3><code>/svc</code></h3>');
    expect(html).toContain('<code>127.0.0.1:1</code>');
    expect(html).toContain('Make one under &lt;b&gt;Settings&lt;/b&gt;');
    expect(html).toContain('>Replace</button>');

    const grantId = /name="grant" value="([^"]+)"/.exec(html)![1]!;
    const revoked = await accountPost(cookie, { action: 'revoke', grant: grantId });
    expect(revoked.status).toBe(303);
    expect(await accountPage(cookie)).toContain('No client is connected.');
    const refused = await refreshGrant(base, tokens.clientId, tokens.refresh_token);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('refuses posts from another origin or site, without the form token, without a session, for another user\'s grant, and oversized: the store unchanged', async () => {
    const cookie: { value?: string } = {};
    await authorize('kate@example.com', SVC(), { 'credential-svc': credential('svc_KateTok001') }, cookie);
    const liam = await authorize('liam@example.com', SVC(), { 'credential-svc': credential('svc_LiamTok001') });
    const liamGrant = (await stack.store.find<{ clientId: string }>('grants', 'email', 'liam@example.com')).find((g) => g.doc.clientId === liam.clientId)!.id;
    const csrf = hiddenField(await accountPage(cookie), 'csrf');
    const before = storeSnapshot(dataDir);
    const post = (fields: Record<string, string>, headers: Record<string, string>) => send(base, '/account', formPost(fields, { cookie: cookie.value!, ...headers }));
    const attempts: Array<[string, Promise<Response>, number]> = [
      ['another origin', post({ csrf, action: 'sign-out' }, { origin: 'https://evil.example' }), 403],
      ['a null origin', post({ csrf, action: 'sign-out' }, { origin: 'null' }), 403],
      ['a cross-site fetch', post({ csrf, action: 'sign-out' }, { origin: base, 'sec-fetch-site': 'cross-site' }), 403],
      ['no form token', post({ action: 'sign-out' }, { origin: base }), 403],
      ['the form token of another session', post({ csrf: 'A'.repeat(43), action: 'sign-out' }, { origin: base }), 403],
      ['no session', send(base, '/account', formPost({ csrf, action: 'sign-out' }, { origin: base })), 401],
      ["another user's grant", post({ csrf, action: 'revoke', grant: liamGrant }, { origin: base }), 404],
      ['an unknown route', post({ csrf, action: 'save-credential', route: '/plain', 'credential-plain': 'x' }, { origin: base }), 404],
      ['an oversized credential', post({ csrf, action: 'save-credential', route: '/svc', 'credential-svc': credential(`svc_${'b'.repeat(4100)}`) }, { origin: base }), 400],
      ['a multi-line credential', post({ csrf, action: 'save-credential', route: '/svc', 'credential-svc': credential('svc_abcdefgh\nX: y') }, { origin: base }), 400],
      ['an oversized body', post({ csrf, action: 'save-credential', route: '/svc', 'credential-svc': 'c'.repeat(100_000) }, { origin: base }), 413],
      ['an unknown action', post({ csrf, action: 'delete-everything' }, { origin: base }), 400],
      // Connect (routes[].user_oauth): only with the form token, from the page, for a route that connects an account.
      ['connect without the form token', post({ action: 'connect-service', route: '/svc' }, { origin: base }), 403],
      ['connect from another origin', post({ csrf, action: 'connect-service', route: '/svc' }, { origin: 'https://evil.example' }), 403],
      ['connect for a route with a typed-in credential', post({ csrf, action: 'connect-service', route: '/svc' }, { origin: base }), 404],
      ['connect for a route without credentials', post({ csrf, action: 'connect-service', route: '/plain' }, { origin: base }), 404],
    ];
    for (const [name, pending, status] of attempts) {
      const res = await pending;
      expect(res.status, name).toBe(status);
      expect(res.headers.get('set-cookie'), name).toBeNull();
    }
    expect(storeSnapshot(dataDir)).toBe(before);
  });

  it('without a session, starts a sign-in that comes back to it; sign out ends the session', async () => {
    let res = await send(base, '/account');
    expect(res.status).toBe(303);
    res = await send(base, res.headers.get('location')!);
    const signIn = await res.text();
    expect(signIn).toContain('Sign in to continue to your account page');
    res = await send(base, '/signin', formPost({ request: hiddenField(signIn, 'request'), csrf: hiddenField(signIn, 'csrf'), email: 'mia@example.com' }, { origin: base }));
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`${base}/account`);
    const cookie = { value: res.headers.get('set-cookie')!.split(';')[0]! };
    const html = await accountPage(cookie);
    expect(html).toContain('Signed in as <strong>mia@example.com</strong>');
    expect(html).toContain('None stored');
    // The account sign-in's request can't be turned into a consent or a code.
    expect((await send(base, `/consent?request=${hiddenField(signIn, 'request')}`, { headers: { cookie: cookie.value } })).status).toBe(400);

    const out = await accountPost(cookie, { action: 'sign-out' });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/^mcp_front_session=; .*Max-Age=0/);
    expect((await send(base, '/account', { headers: { cookie: cookie.value } })).status).toBe(303);
  });
});
