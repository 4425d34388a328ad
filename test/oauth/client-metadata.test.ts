import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressProblem, safeFetch, type SafeFetchOptions } from '../../lib/http/safe-fetch.ts';
import { defaultMetadataFetcher, metadataUrlProblem } from '../../lib/oauth/client-metadata.ts';
import { obtainCode, redeemCode, send, formPost } from '../support/oauth-client.ts';
import { startHttpsStandIn, type HttpsStandIn } from '../support/https-stand-in.ts';
import { authorizationServer, ISSUER } from './support.ts';

// Client ID Metadata Documents: an https client_id names the client's own metadata, fetched by
// the SSRF-safe fetch (real TLS on loopback, its certificate trusted explicitly; loopback
// allowed only by the test's own policy) and cached in the store.

const DEMO = `${ISSUER}/demo/mcp`;
const REDIRECT = 'http://127.0.0.1:1/callback';

let host: HttpsStandIn;
let fetches = 0;
/** path → [status, headers, body] the stand-in answers with. */
const documents = new Map<string, [number, Record<string, string>, string | (() => void)]>();

const doc = (path: string, extra: Record<string, unknown> = {}) => JSON.stringify({ client_id: `${host.origin}${path}`, client_name: 'Example Agent', redirect_uris: [REDIRECT], ...extra });

beforeAll(async () => {
  host = await startHttpsStandIn((req, res) => {
    fetches++;
    const answer = documents.get(req.url ?? '');
    if (!answer) return void res.writeHead(404).end();
    const [status, headers, body] = answer;
    if (typeof body === 'function') return body();
    res.writeHead(status, headers).end(body);
  });
});
afterAll(async () => host?.close());

const loopbackPolicy = (): Partial<SafeFetchOptions> => ({ allowAddress: (a) => a === '127.0.0.1', ca: host.cert });
const fetchOptions = (): SafeFetchOptions => ({ maxBytes: 5 * 1024, timeoutMs: 1_000, ...loopbackPolicy() });

describe('the SSRF-safe fetch', () => {
  it.each([
    '127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255',
    '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '64:ff9b::7f00:1', '2002:7f00:1::1', 'ff02::1',
  ])('refuses the non-public address %s', (address) => {
    expect(addressProblem(address)).toBeDefined();
  });

  it.each(['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888'])('allows the public address %s', (address) => {
    expect(addressProblem(address)).toBeUndefined();
  });

  it.each([
    ['an address literal on loopback', () => `${host.origin}/ok.json`],
    ['a name that resolves to loopback (checked at connect time)', () => `https://localhost:${new URL(host.origin).port}/ok.json`],
    ['the metadata server', () => 'https://169.254.169.254/computeMetadata/v1/'],
    ['an IPv6 loopback literal', () => 'https://[::1]/x.json'],
    ['an IPv4-mapped IPv6 loopback', () => 'https://[::ffff:127.0.0.1]/x.json'],
    ['a hex-encoded loopback (the URL parser makes it 127.0.0.1)', () => 'https://0x7f000001/x.json'],
    ['plain http', () => 'http://example.com/x.json'],
    ['credentials in the URL', () => 'https://user:pw@example.com/x.json'],
  ])('refuses %s under the production policy, before sending anything', async (_name, url) => {
    documents.set('/ok.json', [200, { 'content-type': 'application/json' }, doc('/ok.json')]);
    const before = fetches;
    await expect(safeFetch(url(), { maxBytes: 5120, timeoutMs: 1_000, ca: host.cert })).rejects.toThrow(/non-public|address|https|credentials/);
    expect(fetches).toBe(before);
  });

  it('fetches a document, and reports Cache-Control max-age', async () => {
    documents.set('/ok.json', [200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=600' }, doc('/ok.json')]);
    const res = await safeFetch(`${host.origin}/ok.json`, fetchOptions());
    expect(JSON.parse(res.body).client_name).toBe('Example Agent');
    expect(res.maxAge).toBe(600);
  });

  it.each<[string, [number, Record<string, string>, string | (() => void)], RegExp]>([
    ['a redirect (even to a public address)', [302, { location: 'https://example.com/x.json' }, ''], /redirects are not followed/],
    ['an error status', [500, {}, 'no'], /HTTP 500/],
    ['a declared oversized body', [200, { 'content-type': 'application/json', 'content-length': '9000' }, 'x'.repeat(9000)], /larger than/],
    ['an undeclared oversized body', [200, { 'content-type': 'application/json' }, 'x'.repeat(64 * 1024)], /larger than/],
  ])('refuses %s', async (_name, answer, message) => {
    documents.set('/bad.json', answer);
    await expect(safeFetch(`${host.origin}/bad.json`, fetchOptions())).rejects.toThrow(message);
  });

  it('gives up on a server that never answers, at the time cap', async () => {
    documents.set('/slow.json', [200, {}, () => undefined]);
    const started = Date.now();
    await expect(safeFetch(`${host.origin}/slow.json`, { ...fetchOptions(), timeoutMs: 300 })).rejects.toThrow(/longer than 300 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('client_id URLs', () => {
  it.each([
    ['https://app.example.com/oauth/client.json', undefined],
    ['https://app.example.com/', 'must have a path'],
    ['https://app.example.com', 'must have a path'],
    ['https://app.example.com/a/../client.json', 'dot segments'],
    ['https://app.example.com/a/%2e%2e/client.json', 'dot segments'],
    ['https://app.example.com/client.json#x', 'fragment'],
    ['https://u:p@app.example.com/client.json', 'credentials'],
    ['https://APP.example.com/client.json', 'normal form'],
  ])('%s: %s', (url, problem) => {
    if (problem) expect(metadataUrlProblem(url)).toContain(problem);
    else expect(metadataUrlProblem(url)).toBeUndefined();
  });
});

describe('a client that is its metadata document', () => {
  const server = () => authorizationServer('', { fetchClientMetadata: defaultMetadataFetcher(loopbackPolicy()) });

  it('is advertised in the authorization server metadata', async () => {
    const res = await send(await server(), '/.well-known/oauth-authorization-server');
    expect(((await res.json()) as Record<string, unknown>).client_id_metadata_document_supported).toBe(true);
  });

  it('signs in, consents (the page names the document host), redeems and refreshes with the URL as client_id; the document is fetched once', async () => {
    const as = await server();
    const path = `/agent-${Math.random().toString(36).slice(2)}.json`;
    documents.set(path, [200, { 'content-type': 'application/json; charset=utf-8' }, doc(path)]);
    const clientId = `${host.origin}${path}`;
    const before = fetches;
    const code = await obtainCode(as, { email: 'ada@example.com', resource: DEMO, clientId, redirectUri: REDIRECT });
    const token = await redeemCode(as, code);
    expect(token.status).toBe(200);
    const { refresh_token } = (await token.json()) as { refresh_token: string };
    const refreshed = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token, client_id: clientId }));
    expect(refreshed.status).toBe(200);
    expect(fetches - before).toBe(1);
    // Not a registration: nothing in `clients`, the cache in `clientMetadata`.
    expect(await as.store.get('clients', clientId)).toBeUndefined();
    const [grant] = await as.store.find<{ clientId: string }>('grants', 'clientId', clientId);
    expect(grant?.doc.clientId).toBe(clientId);
  });

  it('shows the client name with the document host on the consent page', async () => {
    const as = await server();
    const path = '/named.json';
    documents.set(path, [200, { 'content-type': 'application/json' }, doc(path, { client_name: 'Named <Agent>' })]);
    const q = new URLSearchParams({ response_type: 'code', client_id: `${host.origin}${path}`, redirect_uri: REDIRECT, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: DEMO });
    const start = await send(as, `/authorize?${q}`);
    const page = await (await send(as, start.headers.get('location')!)).text();
    expect(page).toContain(`Named &lt;Agent&gt; (${new URL(host.origin).host})`);
  });

  it.each<[string, Record<string, unknown> | string, string]>([
    ['names another client_id', { client_id: 'https://elsewhere.example/client.json' }, 'names another client_id'],
    ['holds a client secret', { client_secret: 's3cret' }, 'public client'],
    ['asks for client_secret_basic', { token_endpoint_auth_method: 'client_secret_basic' }, 'public client'],
    ['has a javascript: redirect', { redirect_uris: ['javascript:alert(1)'] }, 'not acceptable'],
    ['is not JSON', 'not json', 'not valid JSON'],
  ])('refuses a document that %s, with a page that says why and nothing stored', async (_name, change, reason) => {
    const as = await server();
    const path = `/refused-${Math.random().toString(36).slice(2)}.json`;
    documents.set(path, [200, { 'content-type': 'application/json' }, typeof change === 'string' ? change : doc(path, change)]);
    const q = new URLSearchParams({ response_type: 'code', client_id: `${host.origin}${path}`, redirect_uri: REDIRECT, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: DEMO });
    const res = await send(as, `/authorize?${q}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
    expect(await res.text()).toContain(reason);
    expect(await as.store.find('authRequests', 'clientId', `${host.origin}${path}`)).toEqual([]);
  });

  it('refuses a redirect_uri the document does not list, on a page, never a redirect', async () => {
    const as = await server();
    documents.set('/strict.json', [200, { 'content-type': 'application/json' }, doc('/strict.json')]);
    const q = new URLSearchParams({ response_type: 'code', client_id: `${host.origin}/strict.json`, redirect_uri: 'https://attacker.example/cb', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: DEMO });
    const res = await send(as, `/authorize?${q}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
  });

  it('refuses, at /token, a metadata client_id whose document is gone (invalid_client 401)', async () => {
    const as = await server();
    const res = await send(as, '/token', formPost({ grant_type: 'refresh_token', refresh_token: 'x', client_id: `${host.origin}/missing.json` }));
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_client');
  });

  it('refuses a loopback metadata URL under the production policy', async () => {
    const as = await authorizationServer();
    const q = new URLSearchParams({ response_type: 'code', client_id: `${host.origin}/ok.json`, redirect_uri: REDIRECT, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: DEMO });
    const res = await send(as, `/authorize?${q}`);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('127.0.0.1 is a loopback address');
  });
});
