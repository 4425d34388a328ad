import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { authorizeWithDevSignIn, registerPublicClient } from '../support/oauth-client.ts';
import { storeSnapshot } from '../support/store-snapshot.ts';

// Hostile input, table-driven, against every public endpoint of a running stack (real HTTP,
// real SQLite file). Each case must get a 4xx with a clear error, never a 5xx or a hang, and
// must leave the store exactly as it was (rate-limit counters aside).

let stack: RunningStack;
let base = '';
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-hostile-'));
let clientId = '';
let otherClientId = '';
let spare: Awaited<ReturnType<typeof authorizeWithDevSignIn>>;
let tokens: Awaited<ReturnType<typeof authorizeWithDevSignIn>>;
let forged: Record<string, string> = {};

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\n  rate_limits: { register: 100000, authorize: 100000, token: 100000 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n  - { path: /other, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
  clientId = await registerPublicClient(base);
  otherClientId = await registerPublicClient(base);
  // A second grant, untouched by the replayed-code case (which revokes the first).
  spare = await authorizeWithDevSignIn(base, { email: 'bob@example.com', resource: `${base}/demo/mcp`, clientId });
  tokens = await authorizeWithDevSignIn(base, { email: 'ada@example.com', resource: `${base}/demo/mcp`, clientId });
  const [header, payload] = tokens.access_token.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
  const other = await generateKeyPair('ES256');
  forged = {
    'alg none': `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${payload}.`,
    'unknown kid': await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'not-a-key' }).sign(other.privateKey),
    'right kid, wrong key': await new SignJWT(claims).setProtectedHeader({ ...JSON.parse(Buffer.from(header!, 'base64url').toString()) }).sign(other.privateKey),
    expired: await new SignJWT({ ...claims, exp: Math.floor(Date.now() / 1000) - 60 }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'x' }).sign(other.privateKey),
    'tampered payload': `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: 'dev:mallory@example.com' })).toString('base64url')}.${tokens.access_token.split('.')[2]}`,
    'wrong audience': tokens.access_token, // issued for /demo, presented to /other
    garbage: 'not.a.jwt',
    'HS256 with the public key': await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' }).sign(new TextEncoder().encode('public-key-material')),
  };
});
afterAll(async () => stack?.close());

const snapshot = () => storeSnapshot(dataDir);

type Case = [name: string, request: () => Promise<Request>, status: number | number[], error?: string, designedChange?: 'grant revoked'];
const form = (body: string, headers: Record<string, string> = {}) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
const json = (body: string) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body });
/** Built when the case runs: CLIENT_ID in a body stands for the client registered in beforeAll. */
const req = (path: string | (() => string), init: RequestInit | (() => RequestInit) = {}) => async () => {
  const resolved = typeof init === 'function' ? init() : init;
  const body = typeof resolved.body === 'string' ? resolved.body.replaceAll('CLIENT_ID', clientId) : resolved.body;
  return new Request(base + (typeof path === 'function' ? path() : path), { ...resolved, body });
};
const authorizeQuery = (over: Record<string, string | null>) => {
  const q: Record<string, string | null> = { response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: 's', resource: `${base}/demo/mcp`, ...over };
  return `/authorize?${new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => e[1] !== null))}`;
};

const cases = (): Case[] => [
  // /token
  ['token: GET', req('/token'), 405],
  ['token: JSON body', req('/token', json('{"grant_type":"refresh_token"}')), 400, 'invalid_request'],
  ['token: text/plain body', req('/token', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'grant_type=refresh_token' }), 400, 'invalid_request'],
  ['token: no grant_type', req('/token', form(`client_id=CLIENT_ID`)), 400, 'invalid_request'],
  ['token: unknown grant_type', req('/token', form(`grant_type=password&client_id=CLIENT_ID&username=a&password=b`)), 400, 'unsupported_grant_type'],
  ['token: client_credentials', req('/token', form(`grant_type=client_credentials&client_id=CLIENT_ID`)), 400, 'unsupported_grant_type'],
  ['token: duplicated grant_type', req('/token', form(`grant_type=refresh_token&grant_type=authorization_code&client_id=CLIENT_ID`)), 400, 'invalid_request'],
  ['token: duplicated code', req('/token', form(`grant_type=authorization_code&code=a&code=b&client_id=CLIENT_ID`)), 400, 'invalid_request'],
  ['token: no client_id', req('/token', form('grant_type=refresh_token&refresh_token=x')), 400, 'invalid_request'],
  ['token: unknown client', req('/token', form('grant_type=refresh_token&refresh_token=x&client_id=nobody')), 401, 'invalid_client'],
  ['token: client_id with injection', req('/token', form(`grant_type=refresh_token&refresh_token=x&client_id=${encodeURIComponent("x' OR '1'='1")}`)), 401, 'invalid_client'],
  ['token: secret for a public client', req('/token', form(`grant_type=refresh_token&refresh_token=x&client_id=CLIENT_ID&client_secret=guess`)), 401, 'invalid_client'],
  ['token: Basic for a public client', req('/token', () => form('grant_type=refresh_token&refresh_token=x', { authorization: `Basic ${Buffer.from(`${clientId}:guess`).toString('base64')}` })), 401, 'invalid_client'],
  ['token: malformed Basic', req('/token', form('grant_type=refresh_token&refresh_token=x', { authorization: 'Basic !!!' })), 400, 'invalid_request'],
  // RFC 6749 §2.3.1: Basic credentials are form-urlencoded; ones that don't decode authenticate no one.
  ['token: Basic with a malformed percent-encoded client_id', req('/token', form('grant_type=refresh_token&refresh_token=x', { authorization: `Basic ${Buffer.from('%zz:secret').toString('base64')}` })), 401, 'invalid_client'],
  ['token: Basic with a malformed percent-encoded secret', req('/token', () => form('grant_type=refresh_token&refresh_token=x', { authorization: `Basic ${Buffer.from(`${clientId}:%E0%A4%A`).toString('base64')}` })), 401, 'invalid_client'],
  ['revoke: Basic with a malformed percent-encoded client_id', req('/revoke', form('token=x', { authorization: `Basic ${Buffer.from('%:secret').toString('base64')}` })), 401, 'invalid_client'],
  ['token: unknown code', req('/token', form(`grant_type=authorization_code&code=nope&redirect_uri=http://127.0.0.1:1/callback&code_verifier=${'a'.repeat(43)}&client_id=CLIENT_ID`)), 400, 'invalid_grant'],
  // Another client can't use a leaked code, and its attempt must not end the user's grant.
  ['token: a used code replayed by another client', req('/token', () => form(`grant_type=authorization_code&code=${spare.code}&redirect_uri=${encodeURIComponent(spare.redirectUri)}&code_verifier=${spare.verifier}&client_id=${otherClientId}`)), 400, 'invalid_grant'],
  // The one designed change: a replayed code revokes the grant it produced (RFC 6749 §4.1.2).
  ['token: replayed code', req('/token', () => form(`grant_type=authorization_code&code=${tokens.code}&redirect_uri=${encodeURIComponent(tokens.redirectUri)}&code_verifier=${tokens.verifier}&client_id=CLIENT_ID`)), 400, 'invalid_grant', 'grant revoked'],
  ['token: code without verifier', req('/token', form(`grant_type=authorization_code&code=x&redirect_uri=http://127.0.0.1:1/callback&client_id=CLIENT_ID`)), 400, 'invalid_request'],
  ['token: unknown code without redirect_uri', req('/token', form(`grant_type=authorization_code&code=x&code_verifier=${'a'.repeat(43)}&client_id=CLIENT_ID`)), 400, 'invalid_grant'],
  ['token: a refresh token of another client', req('/token', () => form(`grant_type=refresh_token&refresh_token=${spare.refresh_token}&client_id=${otherClientId}`)), 400, 'invalid_grant'],
  ['token: refresh for a route outside the grant', req('/token', () => form(`grant_type=refresh_token&refresh_token=${spare.refresh_token}&client_id=CLIENT_ID&resource=${encodeURIComponent(`${base}/other/mcp`)}`)), 400, 'invalid_target'],
  ['token: unknown refresh token', req('/token', form(`grant_type=refresh_token&refresh_token=nope&client_id=CLIENT_ID`)), 400, 'invalid_grant'],
  ['token: refresh without token', req('/token', form(`grant_type=refresh_token&client_id=CLIENT_ID`)), 400, 'invalid_request'],
  ['token: oversized body', req('/token', form(`grant_type=refresh_token&x=${'a'.repeat(40_000)}`)), 413, 'invalid_request'],
  ['token: NUL bytes', req('/token', form(`grant_type=refresh%00_token&client_id=CLIENT_ID`)), 400],
  // /register
  ['register: GET', req('/register'), 405],
  ['register: not JSON', req('/register', json('{redirect_uris:')), 400, 'invalid_client_metadata'],
  ['register: form body', req('/register', form('redirect_uris=https://x')), 400, 'invalid_client_metadata'],
  ['register: array body', req('/register', json('[]')), 400, 'invalid_client_metadata'],
  ['register: no redirect_uris', req('/register', json('{}')), 400, 'invalid_redirect_uri'],
  ['register: empty redirect_uris', req('/register', json('{"redirect_uris":[]}')), 400, 'invalid_redirect_uri'],
  ['register: http non-loopback', req('/register', json('{"redirect_uris":["http://evil.example/cb"]}')), 400, 'invalid_redirect_uri'],
  ['register: javascript:', req('/register', json('{"redirect_uris":["javascript:alert(1)"]}')), 400, 'invalid_redirect_uri'],
  ['register: data:', req('/register', json('{"redirect_uris":["data:text/html,<script>alert(1)</script>"]}')), 400, 'invalid_redirect_uri'],
  ['register: fragment', req('/register', json('{"redirect_uris":["https://ok.example/cb#x"]}')), 400, 'invalid_redirect_uri'],
  ['register: credentials in URI', req('/register', json('{"redirect_uris":["https://u:p@ok.example/cb"]}')), 400, 'invalid_redirect_uri'],
  ['register: 21 URIs', req('/register', json(JSON.stringify({ redirect_uris: Array.from({ length: 21 }, (_, i) => `https://ok.example/${i}`) }))), 400, 'invalid_redirect_uri'],
  ['register: 3000-char URI', req('/register', json(JSON.stringify({ redirect_uris: [`https://ok.example/${'a'.repeat(3000)}`] }))), 400, 'invalid_redirect_uri'],
  ['register: control chars in URI', req('/register', json('{"redirect_uris":["https://ok.example/\\r\\nSet-Cookie: x=1"]}')), 400, 'invalid_redirect_uri'],
  ['register: implicit grant', req('/register', json('{"redirect_uris":["https://ok.example/cb"],"grant_types":["implicit"]}')), 400, 'invalid_client_metadata'],
  ['register: token response type', req('/register', json('{"redirect_uris":["https://ok.example/cb"],"response_types":["token"]}')), 400, 'invalid_client_metadata'],
  ['register: private_key_jwt', req('/register', json('{"redirect_uris":["https://ok.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}')), 400, 'invalid_client_metadata'],
  ['register: 300-char name', req('/register', json(JSON.stringify({ redirect_uris: ['https://ok.example/cb'], client_name: 'n'.repeat(300) }))), 400, 'invalid_client_metadata'],
  ['register: oversized body', req('/register', json(JSON.stringify({ redirect_uris: ['https://ok.example/cb'], pad: 'x'.repeat(70_000) }))), 413, 'invalid_request'],
  // /authorize (errors before the client is verified are pages; after, redirects with error)
  ['authorize: no client_id', req('/authorize'), 400],
  ['authorize: unknown client', req(() => authorizeQuery({ client_id: 'nobody' })), 400],
  ['authorize: unregistered redirect', req(() => authorizeQuery({ redirect_uri: 'https://evil.example/cb' })), 400],
  ['authorize: redirect with extra path', req(() => authorizeQuery({ redirect_uri: 'http://127.0.0.1:1/callback/../evil' })), 400],
  ['authorize: redirect differing in case', req(() => authorizeQuery({ redirect_uri: 'http://127.0.0.1:1/CALLBACK' })), 400],
  ['authorize: duplicated client_id', req(() => `${authorizeQuery({})}&client_id=${clientId}`), 400],
  ['authorize: POST', req(() => authorizeQuery({}), { method: 'POST' }), 405],
  ['authorize: duplicated redirect_uri', req(() => `${authorizeQuery({})}&redirect_uri=${encodeURIComponent('https://evil.example/cb')}`), 400],
  ['authorize: duplicated state', req(() => `${authorizeQuery({})}&state=other`), 400],
  ['authorize: duplicated code_challenge', req(() => `${authorizeQuery({})}&code_challenge=${'B'.repeat(43)}`), 400],
  ['authorize: open redirect, scheme-relative', req(() => authorizeQuery({ redirect_uri: '//evil.example/cb' })), 400],
  ['authorize: open redirect, backslashes', req(() => authorizeQuery({ redirect_uri: '\\\\evil.example\\cb' })), 400],
  ['authorize: open redirect, javascript:', req(() => authorizeQuery({ redirect_uri: 'javascript:alert(document.domain)' })), 400],
  ['authorize: open redirect, registered URI as a prefix', req(() => authorizeQuery({ redirect_uri: 'http://127.0.0.1:1/callback.evil.example' })), 400],
  ['authorize: open redirect, userinfo trick', req(() => authorizeQuery({ redirect_uri: 'http://127.0.0.1:1@evil.example/callback' })), 400],
  // Errors after the client and redirect are verified go back to the client (303 with error).
  ['authorize: plain PKCE', req(() => authorizeQuery({ code_challenge_method: 'plain' })), 303, 'invalid_request'],
  ['authorize: no PKCE', req(() => authorizeQuery({ code_challenge: null, code_challenge_method: null })), 303, 'invalid_request'],
  ['authorize: short code_challenge', req(() => authorizeQuery({ code_challenge: 'abc' })), 303, 'invalid_request'],
  ['authorize: response_type token', req(() => authorizeQuery({ response_type: 'token' })), 303, 'unsupported_response_type'],
  ['authorize: no resource', req(() => authorizeQuery({ resource: null })), 303, 'invalid_target'],
  ['authorize: a foreign resource', req(() => authorizeQuery({ resource: 'https://evil.example/mcp' })), 303, 'invalid_target'],
  ['authorize: unknown scope', req(() => authorizeQuery({ scope: 'mcp admin' })), 303, 'invalid_scope'],
  ['authorize: CR LF in state is carried encoded, never as a header', req(() => authorizeQuery({ state: 'a\r\nSet-Cookie: x=1', response_type: 'token' })), 303, 'unsupported_response_type'],
  // Client ID Metadata Documents: SSRF targets are refused before any connection.
  ...['https://127.0.0.1/client.json', 'https://localhost/client.json', 'https://169.254.169.254/computeMetadata/v1/', 'https://[::1]/client.json', 'https://10.0.0.1/client.json', 'https://[::ffff:192.168.0.1]/client.json', 'https://metadata.google.internal/client.json', 'http://example.com/client.json'].map(
    (target): Case => [`authorize: metadata document at ${target}`, req(() => authorizeQuery({ client_id: target })), 400],
  ),
  ['token: metadata client_id on loopback', req('/token', form(`grant_type=refresh_token&refresh_token=x&client_id=${encodeURIComponent('https://127.0.0.1/client.json')}`)), 401, 'invalid_client'],
  // /signin and /consent
  ['signin: unknown request', req('/signin?request=nope'), 400],
  ['signin: POST without CSRF', req('/signin', form('request=abcdefghijklmnopqrstuvwx&email=a@b.co')), 400],
  ['signin: POST from another origin', req('/signin', form('request=x&csrf=y&email=a@b.co', { origin: 'https://evil.example' })), 403],
  ['consent: no session', req('/consent?request=abcdefghijklmnopqrstuvwx'), 400],
  ['consent: POST from another origin', req('/consent', form('request=x&csrf=y&decision=allow', { origin: 'https://evil.example' })), 403],
  ['consent: POST JSON', req('/consent', json('{}')), 400],
  ['callback: dev provider', req('/callback?code=x&state=y'), 404],
  // metadata
  ['PRM: unknown route', req('/.well-known/oauth-protected-resource/nope/mcp'), 404, 'not_found'],
  ['PRM: traversal', req('/.well-known/oauth-protected-resource/demo/../../etc/passwd'), 404],
  ['PRM: double-encoded', req('/.well-known/oauth-protected-resource/%252e%252e/demo/mcp'), 404],
  ['metadata: POST', req('/.well-known/oauth-authorization-server', { method: 'POST' }), 405],
  ['jwks: POST', req('/jwks.json', { method: 'POST' }), 405],
  ['revoke: no client', req('/revoke', form('token=x')), 400, 'invalid_request'],
  ['unknown path', req('/admin'), 404, 'not_found'],
  // routes: tokens
  ...Object.keys({ 'alg none': 1, 'unknown kid': 1, 'right kid, wrong key': 1, expired: 1, 'tampered payload': 1, 'wrong audience': 1, garbage: 1, 'HS256 with the public key': 1 }).map(
    (name): Case => [`route: ${name} token`, async () => new Request(`${base}/${name === 'wrong audience' ? 'other' : 'demo'}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${forged[name]}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}' }), 401],
  ),
  ['route: no token', req('/demo/mcp', json('{"jsonrpc":"2.0","id":1,"method":"tools/list"}')), 401],
  ['route: Basic instead of Bearer', req('/demo/mcp', { method: 'POST', headers: { authorization: 'Basic YTpi', 'content-type': 'application/json' }, body: '{}' }), 401],
  ['route: foreign Origin', req('/demo/mcp', { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{}' }), 403],
  ['route: traversal to another route', req('/demo/../other/mcp'), [401, 404]],
  ['route: unknown sub-path', req('/demo/admin'), [401, 404]],
];

const authed = (path: string, init: RequestInit & { headers?: Record<string, string> }) => async () =>
  new Request(base + path, { ...init, headers: { authorization: `Bearer ${tokens.access_token}`, accept: 'application/json, text/event-stream', ...init.headers } });

const routeCases = (): Case[] => [
  ['route: not JSON', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":' }), 400],
  ['route: JSON but not JSON-RPC', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"hello":1}' }), 400],
  ['route: wrong content type', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' }), 415],
  ['route: empty batch', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json', 'mcp-session-id': 'x'.repeat(24) }, body: '[]' }), 400],
  ['route: unknown session', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json', 'mcp-session-id': 'a'.repeat(32) }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' }), 404],
  ['route: session id with injection', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json', 'mcp-session-id': "../../etc'--" }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' }), 404],
  ['route: unsupported protocol version', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json', 'mcp-protocol-version': '1900-01-01' }, body: '{}' }), 400],
  ['route: GET without event-stream', authed('/demo/mcp', { method: 'GET', headers: { accept: 'application/json' } }), 406],
  ['route: PUT', authed('/demo/mcp', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' }), 405],
  ['route: DELETE unknown session', authed('/demo/mcp', { method: 'DELETE', headers: { 'mcp-session-id': 'b'.repeat(32) } }), 404],
  ['route: initialize in a batch', authed('/demo/mcp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}},{"jsonrpc":"2.0","id":2,"method":"ping"}]' }), 400],
  ['route: legacy message to an unknown session', authed('/demo/message?session=nope', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' }), 404],
];

describe('hostile input on every public endpoint', () => {
  it.each([...cases(), ...routeCases()])('%s', async (name, make, status, error, designedChange) => {
    const before = snapshot();
    const res = await fetch(await make(), { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
    const allowed = Array.isArray(status) ? status : [status];
    expect(allowed, `${name}: HTTP ${res.status}`).toContain(res.status);
    if (res.status === 303) {
      const location = new URL(res.headers.get('location')!);
      expect(location.origin + location.pathname, name).toBe('http://127.0.0.1:1/callback');
      expect(location.searchParams.get('error'), name).toBe(error);
      await res.arrayBuffer();
    } else if (error) expect(((await res.json()) as { error: string }).error, name).toBe(error);
    else await res.arrayBuffer();
    if (designedChange) {
      const grants = await stack.store.find<{ revokedReason?: string }>('grants', 'clientId', clientId);
      expect(grants.map((g) => g.doc.revokedReason)).toContain('authorization code replayed');
    } else expect(snapshot(), `${name} changed the store`).toBe(before);
  });
});
