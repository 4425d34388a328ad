import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { authorizeWithDevLogin } from '../support/oauth-client.ts';
import { storeSnapshot } from '../support/store-snapshot.ts';

// Hostile input against the MCP routes of a running stack (real HTTP, real SQLite file, real
// stdio children): forged and misdirected tokens, other users' sessions, bad protocol headers,
// bodies and paths, and malformed HTTP on a raw socket. Each case gets the exact 4xx, no hang,
// and the store stays as it was (the sessions made in beforeAll are recorded before the first snapshot).

let stack: RunningStack;
let base = '';
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-hostile-routes-'));
const token: Record<string, string> = {};
const forged: Record<string, string> = {};
let adaSession = '';
let adaLegacy = '';
const legacyStream = new AbortController();

const INIT = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'hostile', version: '1' } } });
const LIST = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
const MCP_ACCEPT = 'application/json, text/event-stream';

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\n  rate_limits: { register: 100000, authorize: 100000, token: 100000 }\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n  - { path: /other, type: stdio, command: [node, examples/demo-server/server.ts] }\nserver:\n  port: ${port}\n  request_timeout: 2s\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
  for (const [who, email] of [['ada', 'ada@example.com'], ['bob', 'bob@example.com']]) {
    for (const resource of ['/demo/mcp', '/demo/sse', '/other/mcp']) token[`${who} ${resource}`] = (await authorizeWithDevLogin(base, { email: email!, resource: `${base}${resource}` })).accessToken;
  }
  // Ada's sessions, made before any snapshot: a Streamable HTTP one (recorded in the store) and a legacy SSE one.
  const init = await fetch(`${base}/demo/mcp`, { method: 'POST', headers: { authorization: `Bearer ${token['ada /demo/mcp']}`, 'content-type': 'application/json', accept: MCP_ACCEPT }, body: INIT });
  adaSession = init.headers.get('mcp-session-id')!;
  await init.arrayBuffer();
  const sse = await fetch(`${base}/demo/sse`, { headers: { authorization: `Bearer ${token['ada /demo/sse']}`, accept: 'text/event-stream' }, signal: legacyStream.signal });
  const reader = sse.body!.getReader();
  let text = '';
  while (!/session=([A-Za-z0-9_-]+)/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
  adaLegacy = /session=([A-Za-z0-9_-]+)/.exec(text)![1]!;
  // Tokens signed with the gateway's real key but wrong in one claim each.
  const keys = await loadKeySet(stack.store, systemClock);
  const key = keys.current.privateKey;
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: 'dev:ada@example.com', email: 'ada@example.com', aud: `${base}/demo/mcp`, client_id: 'c', scope: 'mcp', jti: 'j', iat: now, exp: now + 600 };
  const sign = (over: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT({ ...claims, ...over } as never).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: keys.current.kid, ...header }).setIssuer((over.iss as string) ?? base).sign(key);
  forged['another issuer'] = await sign({ iss: 'https://evil.example' });
  forged['an audience array'] = await sign({ aud: [`${base}/demo/mcp`, `${base}/other/mcp`] });
  forged['expired an hour ago'] = await sign({ exp: now - 3600, iat: now - 7200 });
  forged['not yet valid'] = await sign({ nbf: now + 3600 });
  forged['typ JWT (an ID token, not an access token)'] = await sign({}, { typ: 'JWT' });
  forged['no jti'] = await sign({ jti: undefined });
  forged['the audience of the route without /mcp of another route'] = await sign({ aud: `${base}/other` });
  forged['an audience on another host'] = await sign({ aud: `http://localhost:${port}/demo/mcp` });
  forged['no exp'] = await sign({ exp: undefined });
  forged['no sub'] = await sign({ sub: undefined });
  // Not signed by the gateway's key: no signature at all, a key it doesn't know, its kid on another key.
  const [, payload] = token['ada /demo/mcp']!.split('.');
  const stranger = await generateKeyPair('ES256');
  forged['alg none'] = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${payload}.`;
  forged['an unknown kid'] = await new SignJWT({ ...claims, iss: base }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'not-a-key' }).sign(stranger.privateKey);
  forged["the gateway's kid on another key"] = await new SignJWT({ ...claims, iss: base }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: keys.current.kid }).sign(stranger.privateKey);
}, 60_000);

afterAll(async () => {
  legacyStream.abort();
  await stack?.close();
});

type Case = [name: string, path: string, init: () => RequestInit, status: number];
const bearer = (name: string) => ({ authorization: `Bearer ${token[name] ?? forged[name] ?? name}` });
/** Headers may be given as a function: tokens exist only once beforeAll has run. */
const post = (headers: Record<string, string> | (() => Record<string, string>), body: string = INIT) => () => ({ method: 'POST', headers: { 'content-type': 'application/json', accept: MCP_ACCEPT, ...(typeof headers === 'function' ? headers() : headers) }, body });
const ada = (extra: Record<string, string> = {}) => ({ ...bearer('ada /demo/mcp'), ...extra });
const bob = (extra: Record<string, string> = {}) => ({ ...bearer('bob /demo/mcp'), ...extra });

const cases = (): Case[] => [
  // Tokens
  ['no Authorization', '/demo/mcp', post({}), 401],
  ['empty Bearer', '/demo/mcp', post({ authorization: 'Bearer ' }), 401],
  ['Bearer with a space in the token', '/demo/mcp', post({ authorization: 'Bearer a b' }), 401],
  ['two Bearer tokens', '/demo/mcp', post({ authorization: `Bearer ${'x'.repeat(10)}, Bearer ${'y'.repeat(10)}` }), 401],
  ['token with garbage appended', '/demo/mcp', () => post({ authorization: `Bearer ${token['ada /demo/mcp']}x` })(), 401],
  ['token in the query string instead of the header', `/demo/mcp?access_token=TOKEN`, post({}), 401],
  ['token in a cookie instead of the header', '/demo/mcp', () => post({ cookie: `access_token=${token['ada /demo/mcp']}` })(), 401],
  ['Digest scheme', '/demo/mcp', post({ authorization: 'Digest username="a"' }), 401],
  ['8 KB of Bearer garbage', '/demo/mcp', post({ authorization: `Bearer ${'A'.repeat(8000)}` }), 401],
  ['a /other token on /demo', '/demo/mcp', () => post(bearer('ada /other/mcp'))(), 401],
  ['a /demo/mcp token on /other', '/other/mcp', () => post(bearer('ada /demo/mcp'))(), 401],
  ['a /demo/sse token on /other/sse', '/other/sse', () => ({ headers: { ...bearer('ada /demo/sse'), accept: 'text/event-stream' } }), 401],
  ['a /demo token on /other/message', '/other/message?session=x', () => post(bearer('ada /demo/mcp'), LIST)(), 401],
  ...['another issuer', 'an audience array', 'expired an hour ago', 'not yet valid', 'typ JWT (an ID token, not an access token)', 'no jti', 'the audience of the route without /mcp of another route', 'an audience on another host', 'no exp', 'no sub'].map(
    (name): Case => [`real key, ${name}`, '/demo/mcp', () => post(bearer(name))(), 401],
  ),
  ...['alg none', 'an unknown kid', "the gateway's kid on another key"].map((name): Case => [`forged: ${name}`, '/demo/mcp', () => post(bearer(name))(), 401]),
  ['lower-case scheme with garbage', '/demo/mcp', post({ authorization: 'bearer !!<garbage>!!' }), 401],
  ['Bearer twice before the token', '/demo/mcp', () => post({ authorization: `Bearer Bearer ${token['ada /demo/mcp']}` })(), 401],
  ['the scheme with no token', '/demo/mcp', post({ authorization: 'Bearer' }), 401],
  ['a 9 KB JWT-shaped token', '/demo/mcp', post({ authorization: `Bearer ${'a'.repeat(3000)}.${'b'.repeat(3000)}.${'c'.repeat(3000)}` }), 401],
  ['no token on /demo/sse', '/demo/sse', () => ({ headers: { accept: 'text/event-stream' } }), 401],
  ['token in the query string on /demo/sse', '/demo/sse?access_token=TOKEN', () => ({ headers: { accept: 'text/event-stream' } }), 401],
  ['a /other token on /demo/sse', '/demo/sse', () => ({ headers: { ...bearer('ada /other/mcp'), accept: 'text/event-stream' } }), 401],
  ['no token on /demo/message', '/demo/message?session=ADA_LEGACY', post({}, LIST), 401],
  ['token in the query string on /demo/message', '/demo/message?session=ADA_LEGACY&access_token=TOKEN', post({}, LIST), 401],
  // Other users' sessions: refused exactly like missing ones, nothing ended or changed.
  ["bob posts to ada's session", '/demo/mcp', () => post(() => bob({ 'mcp-session-id': adaSession }), LIST)(), 404],
  ["bob opens ada's session stream", '/demo/mcp', () => ({ headers: bob({ 'mcp-session-id': adaSession, accept: 'text/event-stream' }) }), 404],
  ["bob deletes ada's session", '/demo/mcp', () => ({ method: 'DELETE', headers: bob({ 'mcp-session-id': adaSession }) }), 404],
  ["bob posts to ada's legacy session", '/demo/message?session=ADA_LEGACY', () => post(bearer('bob /demo/sse'), LIST)(), 404],
  ["ada's session on another route", '/other/mcp', () => post({ ...bearer('ada /other/mcp'), 'mcp-session-id': adaSession }, LIST)(), 404],
  ['a 65-character session id', '/demo/mcp', post(() => ada({ 'mcp-session-id': 'a'.repeat(65) }), LIST), 404],
  ['a session id with a slash', '/demo/mcp', post(() => ada({ 'mcp-session-id': 'abcdefghijklmnop/qrstuvwx' }), LIST), 404],
  ['a session id with percent-encoding', '/demo/mcp', post(() => ada({ 'mcp-session-id': '%2e%2e%2fabcdefghijklmnop' }), LIST), 404],
  ['a 4 KB session id', '/demo/mcp', post(() => ada({ 'mcp-session-id': 'a'.repeat(4096) }), LIST), 404],
  ['GET stream of an unknown session', '/demo/mcp', () => ({ headers: ada({ 'mcp-session-id': 'z'.repeat(32), accept: 'text/event-stream' }) }), 404],
  ['DELETE without a session id', '/demo/mcp', () => ({ method: 'DELETE', headers: ada() }), 404],
  ['legacy message without a session', '/demo/message', () => post(bearer('ada /demo/sse'), LIST)(), 404],
  ['legacy message with a GET', '/demo/message?session=ADA_LEGACY', () => ({ headers: bearer('ada /demo/sse') }), 405],
  ['legacy message: GET without a session', '/demo/message', () => ({ headers: bearer('ada /demo/sse') }), 405],
  ['legacy message to an unknown session', '/demo/message?session=nope-nope-nope-nope', () => post(bearer('ada /demo/sse'), LIST)(), 404],
  ['legacy message to a 4 KB session id', `/demo/message?session=${'s'.repeat(4096)}`, () => post(bearer('ada /demo/sse'), LIST)(), 404],
  ["bob opens ada's legacy session as a Streamable HTTP stream", '/demo/mcp', () => ({ headers: bob({ 'mcp-session-id': adaLegacy, accept: 'text/event-stream' }) }), 404],
  ["bob posts to ada's legacy session through /demo/mcp", '/demo/mcp', () => post(() => bob({ 'mcp-session-id': adaLegacy }), LIST)(), 404],
  ['a session id in Latin-1', '/demo/mcp', post(() => ada({ 'mcp-session-id': '\u00e9'.repeat(24) }), LIST), 404],
  ['DELETE a 15-character session id', '/demo/mcp', () => ({ method: 'DELETE', headers: ada({ 'mcp-session-id': 'a'.repeat(15) }) }), 404],
  // A session record belongs to the route that made it: another route must neither resume nor forget it.
  ["ada deletes her /demo session through /other", '/other/mcp', () => ({ method: 'DELETE', headers: { ...bearer('ada /other/mcp'), 'mcp-session-id': adaSession } }), 404],
  ['legacy stream with a PUT', '/demo/sse', () => ({ method: 'PUT', headers: { ...bearer('ada /demo/sse'), 'content-type': 'application/json' }, body: LIST }), 405],
  ['legacy stream with a DELETE', '/demo/sse', () => ({ method: 'DELETE', headers: bearer('ada /demo/sse') }), 405],
  ['legacy message with a PATCH', '/demo/message?session=ADA_LEGACY', () => ({ method: 'PATCH', headers: { ...bearer('ada /demo/sse'), 'content-type': 'application/json' }, body: LIST }), 405],
  ['legacy message with a DELETE', '/demo/message?session=ADA_LEGACY', () => ({ method: 'DELETE', headers: bearer('ada /demo/sse') }), 405],
  ['legacy stream with a POST', '/demo/sse', () => post(bearer('ada /demo/sse'))(), 405],
  // Protocol headers and methods
  ['unknown MCP-Protocol-Version', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': '2099-01-01' })), 400],
  ['MCP-Protocol-Version with injection', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': "2025-06-18'; DROP" })), 400],
  ['empty MCP-Protocol-Version', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': ' ' })), 400],
  ['a foreign Origin', '/demo/mcp', post(() => ada({ origin: 'https://evil.example' })), 403],
  ['Origin null', '/demo/mcp', post(() => ada({ origin: 'null' })), 403],
  ['Origin with the issuer as userinfo', '/demo/mcp', () => post(() => ada({ origin: `http://127.0.0.1@evil.example` }))(), 403],
  ['Origin that starts with the issuer', '/demo/mcp', () => post(() => ada({ origin: `${base}.evil.example` }))(), 403],
  ['Origin on a loopback look-alike host', '/demo/mcp', post(() => ada({ origin: 'http://127.0.0.1.nip.io' })), 403],
  ['Origin localhost.evil.example', '/demo/mcp', post(() => ada({ origin: 'http://localhost.evil.example' })), 403],
  ['Origin file://', '/demo/mcp', post(() => ada({ origin: 'file://' })), 403],
  ['a foreign Origin on /demo/sse', '/demo/sse', () => ({ headers: { ...bearer('ada /demo/sse'), accept: 'text/event-stream', origin: 'https://evil.example' } }), 403],
  ['a foreign Origin on /demo/message', '/demo/message?session=ADA_LEGACY', () => post({ ...bearer('ada /demo/sse'), origin: 'https://evil.example' }, LIST)(), 403],
  ['a CORS preflight from a foreign Origin', '/demo/mcp', () => ({ method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } }), 403],
  ['a foreign Origin on an unknown sub-path', '/demo/admin', post(() => ada({ origin: 'https://evil.example' })), 403],
  ['two protocol versions in one header', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': '2025-06-18, 2025-03-26' })), 400],
  ['a 4 KB MCP-Protocol-Version', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': '2'.repeat(4096) })), 400],
  ['MCP-Protocol-Version in another date format', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': '2025-6-18' })), 400],
  ['unknown MCP-Protocol-Version on GET', '/demo/mcp', () => ({ headers: ada({ 'mcp-session-id': adaSession, accept: 'text/event-stream', 'mcp-protocol-version': '2099-01-01' }) }), 400],
  // Refused before the session is looked at: ada's session is not ended.
  ['unknown MCP-Protocol-Version on DELETE', '/demo/mcp', () => ({ method: 'DELETE', headers: ada({ 'mcp-session-id': adaSession, 'mcp-protocol-version': '2099-01-01' }) }), 400],
  ['HEAD', '/demo/mcp', () => ({ method: 'HEAD', headers: ada() }), 405],
  ['PUT', '/demo/mcp', () => ({ method: 'PUT', headers: ada({ 'content-type': 'application/json' }), body: INIT }), 405],
  ['PATCH', '/demo/mcp', () => ({ method: 'PATCH', headers: ada({ 'content-type': 'application/json' }), body: INIT }), 405],
  ['GET stream without Accept: text/event-stream', '/demo/mcp', () => ({ headers: ada({ 'mcp-session-id': adaSession, accept: 'application/json' }) }), 406],
  ['GET stream with Accept: */*', '/demo/mcp', () => ({ headers: ada({ 'mcp-session-id': adaSession, accept: '*/*' }) }), 406],
  ['GET stream with Accept: text/html', '/demo/mcp', () => ({ headers: ada({ 'mcp-session-id': adaSession, accept: 'text/html' }) }), 406],
  ['application/xml body', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'application/xml', accept: MCP_ACCEPT }), body: INIT }), 415],
  ['text/json body', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'text/json', accept: MCP_ACCEPT }), body: INIT }), 415],
  ['multipart body', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'multipart/form-data; boundary=x', accept: MCP_ACCEPT }), body: `--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n${INIT}\r\n--x--\r\n` }), 415],
  // The legacy transport takes the same bodies as /mcp: a text/plain POST (what a page can send without a preflight) is refused.
  ['legacy message: text/plain body', '/demo/message?session=ADA_LEGACY', () => ({ method: 'POST', headers: { ...bearer('ada /demo/sse'), 'content-type': 'text/plain' }, body: LIST }), 415],
  // Bodies
  ['text/plain body', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'text/plain', accept: MCP_ACCEPT }), body: INIT }), 415],
  ['form body', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'application/x-www-form-urlencoded', accept: MCP_ACCEPT }), body: 'a=b' }), 415],
  ['no Content-Type', '/demo/mcp', () => ({ method: 'POST', headers: ada({ accept: MCP_ACCEPT }), body: new Blob([INIT]) }), 415],
  ['empty body', '/demo/mcp', post(() => ada(), ''), 400],
  ['not JSON', '/demo/mcp', post(() => ada(), '{"jsonrpc":'), 400],
  ['a JSON number', '/demo/mcp', post(() => ada(), '42'), 400],
  ['a JSON string', '/demo/mcp', post(() => ada(), '"initialize"'), 400],
  ['null', '/demo/mcp', post(() => ada(), 'null'), 400],
  ['jsonrpc 1.0', '/demo/mcp', post(() => ada(), '{"jsonrpc":"1.0","id":1,"method":"initialize"}'), 400],
  ['no method, no result', '/demo/mcp', post(() => ada(), '{"jsonrpc":"2.0","id":1}'), 400],
  ['method not a string', '/demo/mcp', post(() => ada(), '{"jsonrpc":"2.0","id":1,"method":7}'), 400],
  ['array of garbage', '/demo/mcp', post(() => ada({ 'mcp-session-id': 'q'.repeat(24) }), '[1,2,3]'), 400],
  ['empty batch', '/demo/mcp', post(() => ada(), '[]'), 400],
  ['a batch on 2025-06-18', '/demo/mcp', post(() => ada({ 'mcp-session-id': 'q'.repeat(24), 'mcp-protocol-version': '2025-06-18' }), `[${LIST},${LIST}]`), 400],
  ['initialize twice in a batch', '/demo/mcp', post(() => ada({ 'mcp-protocol-version': '2025-03-26' }), `[${INIT},${INIT}]`), 400],
  ['initialize as a notification', '/demo/mcp', post(() => ada(), '{"jsonrpc":"2.0","method":"initialize","params":{}}'), 400],
  ['invalid UTF-8', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'application/json', accept: MCP_ACCEPT }), body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }), 400],
  ['a 9 MiB body', '/demo/mcp', post(() => ada(), JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { pad: 'x'.repeat(9 * 1024 * 1024) } })), 413],
  ['legacy message: not JSON', '/demo/message?session=ADA_LEGACY', () => post(bearer('ada /demo/sse'), '{')(), 400],
  ['legacy message: empty batch', '/demo/message?session=ADA_LEGACY', () => post(bearer('ada /demo/sse'), '[]')(), 400],
  ['legacy message: jsonrpc 1.0', '/demo/message?session=ADA_LEGACY', () => post(bearer('ada /demo/sse'), '{"jsonrpc":"1.0","id":1,"method":"ping"}')(), 400],
  ['legacy message: invalid UTF-8', '/demo/message?session=ADA_LEGACY', () => ({ method: 'POST', headers: { ...bearer('ada /demo/sse'), 'content-type': 'application/json' }, body: new Uint8Array([0x5b, 0xc3, 0x28, 0x5d]) }), 400],
  ['an id that is an object', '/demo/mcp', post(() => ada(), '{"jsonrpc":"2.0","id":{},"method":"initialize","params":{}}'), 400],
  ['a batch of null', '/demo/mcp', post(() => ada(), '[null]'), 400],
  ['a batch of one good message and garbage', '/demo/mcp', post(() => ada(), `[${LIST},1]`), 400],
  ['JSON nested 100 000 deep', '/demo/mcp', post(() => ada(), `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`), 400],
  ['a UTF-16 body', '/demo/mcp', () => ({ method: 'POST', headers: ada({ 'content-type': 'application/json', accept: MCP_ACCEPT }), body: new Uint8Array(Buffer.from(`\ufeff${INIT}`, 'utf16le')) }), 400],
  // Past the route's 4 MiB limit, the one limit a route's body is read against.
  ['a 5 MiB body', '/demo/mcp', post(() => ada(), JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { pad: 'x'.repeat(5 * 1024 * 1024) } })), 413],
  ['legacy message: 9 MiB', '/demo/message?session=ADA_LEGACY', () => post(bearer('ada /demo/sse'), 'x'.repeat(9 * 1024 * 1024))(), 413],
  // Paths
  // The URL resolves to /other/mcp, where a /demo token is refused.
  ['traversal to another route', '/demo/../other/mcp', post(() => ada()), 401],
  ['encoded traversal', '/demo/..%2fother/mcp', post(() => ada()), 404],
  ['double-encoded route name', '/%2564emo/mcp', post(() => ada()), 404],
  ['encoded route name', '/%64emo/mcp', post(() => ada()), 404],
  ['double slash', '//demo/mcp', post(() => ada()), 404],
  ['trailing slash', '/demo/mcp/', post(() => ada()), 404],
  ['upper case', '/DEMO/mcp', post(() => ada()), 404],
  // Resolves to /token, which wants a form, not JSON-RPC.
  ['a sub-path of the endpoint', '/demo/mcp/../../token', post(() => ada()), 400],
  ['a NUL in the path', '/demo/mcp%00', post(() => ada()), 404],
  ['a path of 6000 characters', `/demo/${'a'.repeat(6000)}`, post(() => ada()), 404],
  ['an unknown route', '/nope/mcp', post(() => ada()), 404],
  ['the route without an endpoint', '/demo', post(() => ada()), 404],
  ['a trailing slash on /demo/sse', '/demo/sse/', () => ({ headers: { ...bearer('ada /demo/sse'), accept: 'text/event-stream' } }), 404],
  ['/demo/messages', '/demo/messages?session=ADA_LEGACY', () => post(bearer('ada /demo/sse'), LIST)(), 404],
  ['a path parameter', '/demo/mcp;jsessionid=x', post(() => ada()), 404],
  ['an encoded endpoint name', '/demo/%6dcp', post(() => ada()), 404],
  ['an encoded slash between route and endpoint', '/demo%2fmcp', post(() => ada()), 404],
  ['encoded dots and slash', '/demo/%2e%2e%2fother/mcp', post(() => ada()), 404],
  ['double-encoded dots', '/demo/%252e%252e/other/mcp', post(() => ada()), 404],
  ['an encoded traversal to /token', '/demo/mcp/..%2f..%2ftoken', post(() => ada()), 404],
];

/** Raw HTTP the fetch API won't send: what the first line of the answer says. */
async function raw(bytes: string, options: { holdMs?: number } = {}): Promise<string> {
  const socket = connect(Number(new URL(base).port), '127.0.0.1');
  socket.setEncoding('latin1');
  let answer = '';
  socket.on('data', (chunk: string) => (answer += chunk));
  // The server may close while a big request is still being written: what it answered is what counts.
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(bytes, 'latin1');
  const deadline = Date.now() + (options.holdMs ?? 3_000);
  while (!answer.includes('\r\n') && !socket.destroyed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  socket.destroy();
  return answer.split('\r\n')[0] ?? '';
}

const rawCases = (): Array<[string, () => string, string, number?]> => [
  // The parser ends the request line at the CR LF; the rest is a header. Nothing gets past the token check.
  ['CR LF inside the request line', () => `POST /demo/mcp\r\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n`, '401'],
  ['two Content-Length headers that disagree', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}`, '400'],
  ['Content-Length and Transfer-Encoding together (smuggling)', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, '400'],
  ['a malformed chunk size', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`, '400'],
  ['a NUL in a header value', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\u0000b\r\n\r\n`, '400'],
  ['a header name with a space', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n`, '400'],
  ['20 KB of headers', () => `GET /demo/mcp HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`, '431'],
  // The token is checked before a byte of the body is read: a client without one is answered
  // at once, whatever body it announces, and holds no buffer while it dawdles.
  ['a body that stops halfway, no token', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`, '401'],
  ['3 MiB announced, none sent, no token', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${3 * 1024 * 1024}\r\n\r\n`, '401'],
  ['9 MiB announced, none sent, no token', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${9 * 1024 * 1024}\r\n\r\n`, '401'],
  ['a body that stops halfway (slow body)', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token['ada /demo/mcp']}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`, '408', 8_000],
  ['headers that never end (slowloris)', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n`, '408', 8_000],
  // Read as one field, as a web Headers would ("Bearer a, Bearer b"): neither token alone is taken, whichever comes first.
  ['two Authorization headers, a good token first', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token['ada /demo/mcp']}\r\nAuthorization: Bearer forged\r\nContent-Type: application/json\r\nContent-Length: ${LIST.length}\r\n\r\n${LIST}`, '401'],
  ['two Authorization headers, the same good token twice', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token['ada /demo/mcp']}\r\nAuthorization: Bearer ${token['ada /demo/mcp']}\r\nContent-Type: application/json\r\nContent-Length: ${LIST.length}\r\n\r\n${LIST}`, '401'],
  // RFC 9112 §3.2: more than one Host field is a 400.
  ['two Host headers', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\nAuthorization: Bearer ${token['ada /demo/mcp']}\r\nContent-Type: application/json\r\nContent-Length: ${LIST.length}\r\n\r\n${LIST}`, '400'],
  ['a 100 KB Authorization header', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'A'.repeat(100_000)}\r\nContent-Length: 2\r\n\r\n{}`, '431'],
  ['a Content-Length of 1 GB on a tiny body', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token['ada /demo/mcp']}\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{}`, '413'],
  ['Transfer-Encoding that does not end in chunked', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n`, '400'],
  ['a header folded onto the next line', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n ${token['ada /demo/mcp']}\r\nContent-Length: 2\r\n\r\n{}`, '400'],
  ['a space before the colon', () => `POST /demo/mcp HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer ${token['ada /demo/mcp']}\r\nContent-Length: 2\r\n\r\n{}`, '400'],
  ['HTTP/1.1 without Host', () => `POST /demo/mcp HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}`, '400'],
  // RFC 9112 §3.2.2: a server takes the absolute form, its path is /demo/mcp, and no token there is a 401.
  ['an absolute-form target on another host, no token', () => `POST http://evil.example/demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}`, '401'],
  // RFC 9112 §3.2: a Host that is not a host is a 400, never a path for the router.
  ['a Host header that carries a path', () => `POST /nothing-here HTTP/1.1\r\nHost: x/demo/mcp?\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`, '400'],
  ['another Host, no token', () => `POST /demo/mcp HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`, '401'],
];

describe('hostile input on the MCP routes', () => {
  it.each(cases())('%s', async (name, path, init, status) => {
    const before = storeSnapshot(dataDir);
    const request = init();
    const target = `${base}${path.replace('ADA_LEGACY', adaLegacy).replace('TOKEN', token['ada /demo/mcp']!)}`;
    const res = await fetch(target, { ...request, redirect: 'manual', signal: AbortSignal.timeout(10_000) });
    expect(res.status, `${name}: HTTP ${res.status}`).toBe(status);
    if (status === 401) {
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer .*resource_metadata="/);
      await res.arrayBuffer();
    } else if (status !== 405 && status !== 413) {
      // An error body that says what was wrong: JSON-RPC from a route, RFC 6749 from the AS
      // (a path that is no route at all is the authorization server's 404).
      const body = (await res.json()) as { error?: { message: string } | string; error_description?: string };
      expect(typeof body.error === 'string' ? body.error_description : body.error?.message, name).toBeTruthy();
    } else await res.arrayBuffer();
    expect(storeSnapshot(dataDir), `${name} changed the store`).toBe(before);
  });

  it.each(rawCases())('raw HTTP: %s', async (name, bytes, status, holdMs) => {
    const before = storeSnapshot(dataDir);
    const started = Date.now();
    const line = await raw(bytes(), { holdMs });
    expect(line, name).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(Date.now() - started).toBeLessThan((holdMs ?? 3_000) + 1_000);
    expect(storeSnapshot(dataDir), `${name} changed the store`).toBe(before);
  });

  it("after all of it, ada's sessions still work", async () => {
    const res = await fetch(`${base}/demo/mcp`, { method: 'POST', headers: { ...ada(), 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': adaSession, 'mcp-protocol-version': '2025-06-18' }, body: LIST });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"echo"');
  });
});
