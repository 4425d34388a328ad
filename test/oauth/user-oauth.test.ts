import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { ManualClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { memoryLogger } from '../../lib/log.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import type { UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { startServiceIdp, type ServiceIdp } from '../support/service-idp.ts';
import { DatabaseSync } from 'node:sqlite';

// routes[].user_oauth end to end: each user's own account at a route's service, connected
// through the service's OAuth server (oidc-provider over https on loopback, standing in for the
// service's IdP). Our sign-in (dev), our consent, the service's login and consent, back to
// /connect/callback, our code; the stdio child gets the service's access token in its
// environment; a service token past expiry is renewed at our next refresh (and the child of a
// new session gets the new one); a service that refuses or talks nonsense is a page that says
// so, with nothing stored and no code of ours.

const ACCOUNTS: Record<string, Record<string, unknown>> = { ada: { email: 'ada@svc.example' }, bob: { email: 'bob@svc.example' }, cy: { email: 'cy@svc.example' }, dee: { email: 'dee@svc.example' } };
const CLIENT_REDIRECT = 'http://127.0.0.1:1/callback';

const log = memoryLogger();
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-user-oauth-'));
const clock = new ManualClock(Date.now());
let idp: ServiceIdp;
let stack: RunningStack;
let base = '';
/** The service's /token answers from now on, when set (a service gone wrong). */
let tokenOverride: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
/** Every service token seen by a child: none may be in the store in the clear, or in a log. */
const serviceTokens = new Set<string>();

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  idp = await startServiceIdp({ gatewayCallback: `${base}/connect/callback`, accounts: ACCOUNTS, intercept: (req, res) => (tokenOverride && req.url === '/token' ? (tokenOverride(req, res), true) : false) });
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\n  token_ttl: 10m\nroutes:\n` +
      `  - path: /svc\n    type: stdio\n    command: [node, test/fixtures/tool-server.ts]\n    environment: { TOOL_ECHO_ENV: SVC_TOKEN }\n` +
      `    user_oauth: { label: Service account, issuer: "${idp.origin}", client_id: gateway, client_secret: "\${SVC_SECRET}", scopes: [openid, email], env: SVC_TOKEN }\n` +
      `  - path: /svc-broken\n    type: stdio\n    command: [node, test/fixtures/tool-server.ts]\n` +
      `    user_oauth: { issuer: "${idp.origin}", token_endpoint: "${idp.origin}/garbage", client_id: gateway, client_secret: svc-secret, scopes: [openid], env: SVC_TOKEN }\n` +
      `server:\n  port: ${port}\n`,
    { SVC_SECRET: 'svc-secret' },
  );
  stack = await startStack(config, { log, clock, oauthOptions: { serviceFetch: { allowAddress: (a) => a === '127.0.0.1', ca: idp.cert } } });
}, 60_000);

afterAll(async () => {
  await stack?.close();
  await idp?.close();
  const logged = JSON.stringify(log.lines);
  for (const token of serviceTokens) expect(logged).not.toContain(token);
});

interface Answer {
  readonly status: number;
  readonly location?: string;
  readonly body: string;
}

/** A browser: one cookie jar for our AS and the service's IdP; plain HTTP(S), no redirects followed. */
function browser() {
  const jar = new Map<string, string>();
  return async (url: string, form?: Record<string, string>): Promise<Answer> => {
    const target = new URL(url);
    const body = form ? new URLSearchParams(form).toString() : undefined;
    const headers: Record<string, string> = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '), ...(form ? { 'content-type': 'application/x-www-form-urlencoded', origin: target.origin } : {}) };
    const res = await new Promise<IncomingMessage & { text: string }>((resolve, reject) => {
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(target, { method: form ? 'POST' : 'GET', headers, ...(target.protocol === 'https:' ? { ca: idp.cert } : {}) }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve(Object.assign(r, { text: Buffer.concat(chunks).toString('utf8') })));
      });
      req.on('error', reject);
      req.end(body);
    });
    for (const c of res.headers['set-cookie'] ?? []) {
      const [name, ...value] = c.split(';')[0]!.split('=');
      jar.set(name!.trim(), value.join('='));
    }
    return { status: res.statusCode!, ...(res.headers.location ? { location: new URL(res.headers.location, url).toString() } : {}), body: res.text };
  };
}

type Browser = ReturnType<typeof browser>;

const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] ?? '';

/**
 * From /authorize to where the flow stops: the client's redirect (our code), or a page that is
 * not a sign-in or consent step. `stopAtService` stops at the redirect to the service's
 * authorization endpoint instead.
 */
async function authorize(go: Browser, email: string, login: string, route = '/svc', options: { stopAtService?: boolean; clientId?: string } = {}) {
  const clientId = options.clientId ?? ((await (await fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [CLIENT_REDIRECT] }) })).json()) as { client_id: string }).client_id;
  const verifier = randomBytes(32).toString('base64url');
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: CLIENT_REDIRECT, code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', state: 'st', resource: `${base}${route}/mcp` });
  let res = await go(`${base}/authorize?${query}`);
  const pages: string[] = [];
  for (let hop = 0; hop < 20; hop++) {
    if (res.location) {
      if (res.location.startsWith(CLIENT_REDIRECT)) return { code: new URL(res.location).searchParams.get('code'), clientId, verifier, pages, last: res };
      if (options.stopAtService && res.location.startsWith(idp.origin) && res.location.includes('/auth?')) return { code: null, clientId, verifier, pages, last: res };
      res = await go(res.location);
      continue;
    }
    pages.push(res.body);
    const action = /<form[^>]*action="([^"]+)"/.exec(res.body)?.[1];
    if (res.body.includes('name="email"') && action === '/signin') res = await go(`${base}/signin`, { request: field(res.body, 'request'), csrf: field(res.body, 'csrf'), email });
    else if (res.body.includes('name="decision"')) res = await go(`${base}/consent`, { request: field(res.body, 'request'), csrf: field(res.body, 'csrf'), decision: 'allow' });
    else if (res.body.includes('name="login"')) res = await go(new URL(action!, idp.origin).toString(), { prompt: 'login', login, password: 'x' });
    else if (action?.includes('/interaction/') && res.body.includes('name="prompt" value="consent"')) res = await go(new URL(action, idp.origin).toString(), { prompt: 'consent' });
    else {
      if (process.env.DEBUG_FLOW) console.log('STOP', res.status, res.body.slice(res.body.indexOf('<form')));
      return { code: null, clientId, verifier, pages, last: res };
    }
  }
  throw new Error('the authorization did not finish');
}

async function token(params: Record<string, string>): Promise<{ status: number; body: Record<string, string> }> {
  const res = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params) });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

const redeem = (flow: { code: string | null; clientId: string; verifier: string }) => token({ grant_type: 'authorization_code', code: flow.code!, redirect_uri: CLIENT_REDIRECT, client_id: flow.clientId, code_verifier: flow.verifier });
const refresh = (clientId: string, refreshToken: string) => token({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId });

/** The service token a new session's child sees in SVC_TOKEN. */
async function childToken(accessToken: string): Promise<string> {
  const client = new Client({ name: 'user-oauth-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/svc/mcp`), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
  await client.connect(transport);
  try {
    const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
    const value = (JSON.parse(result.content[0]!.text) as { env: { SVC_TOKEN: string | null } }).env.SVC_TOKEN!;
    serviceTokens.add(value);
    return value;
  } finally {
    await transport.terminateSession().catch(() => undefined);
    await client.close();
  }
}


/** Every document in the stack's SQLite file, as text. */
function everythingStored(): string {
  const db = new DatabaseSync(join(dataDir, 'mcp-front.sqlite'), { readOnly: true });
  try {
    return JSON.stringify(db.prepare('SELECT collection, id, doc FROM docs').all());
  } finally {
    db.close();
  }
}

const records = async () => (await stack.store.list<UserCredentialRecord>('userCredentials')).map((r) => r.doc);
const recordOf = async (email: string, route = '/svc') => (await records()).find((r) => r.email === email && r.route === route);

describe('connecting the user\'s own service account', () => {
  it('sends the user from our consent to the service and back, issues our code, and the child gets the service token', async () => {
    const go = browser();
    const flow = await authorize(go, 'ada@example.com', 'ada');
    // Our consent page said where the user would be sent.
    expect(flow.pages.some((p) => p.includes('Service account') && p.includes('After Allow, you sign in to it'))).toBe(true);
    expect(flow.code).toBeTruthy();
    const tokens = await redeem(flow);
    expect(tokens.status).toBe(200);
    const stored = await recordOf('ada@example.com');
    expect(stored?.kind).toBe('service-account');
    const seen = await childToken(tokens.body.access_token!);
    expect(await idp.userOf(seen)).toBe('ada');
    // Kept only sealed: the token is nowhere in the store, and the client's access token carries only ciphertext.
    expect(JSON.stringify(await stack.store.list('userCredentials'))).not.toContain(seen);
    expect(everythingStored()).not.toContain(seen);
    expect(Buffer.from(tokens.body.access_token!.split('.')[1]!, 'base64url').toString()).not.toContain(seen);
  });

  it('a second client of the same user is not sent to the service again, and gets the same account', async () => {
    const go = browser();
    const first = await authorize(go, 'bob@example.com', 'bob');
    const firstToken = await childToken((await redeem(first)).body.access_token!);
    const before = await recordOf('bob@example.com');
    const second = await authorize(go, 'bob@example.com', 'bob');
    expect(second.code).toBeTruthy();
    expect((await recordOf('bob@example.com'))?.version).toBe(before?.version);
    expect(await childToken((await redeem(second)).body.access_token!)).toBe(firstToken);
  });
});

describe('renewal at our /token', () => {
  it('renews a service token past expiry at the next refresh; a new session\'s child gets the new one', async () => {
    const go = browser();
    const flow = await authorize(go, 'cy@example.com', 'cy');
    const tokens = await redeem(flow);
    const old = await childToken(tokens.body.access_token!);
    const before = await recordOf('cy@example.com');
    clock.advance(2 * 3_600_000);
    const refreshed = await refresh(flow.clientId, tokens.body.refresh_token!);
    expect(refreshed.status).toBe(200);
    const after = await recordOf('cy@example.com');
    expect(after?.version).not.toBe(before?.version);
    expect(after!.expiresAt!).toBeGreaterThan(clock.now());
    const renewed = await childToken(refreshed.body.access_token!);
    expect(renewed).not.toBe(old);
    expect(await idp.userOf(renewed)).toBe('cy');
    // Not yet due: the next refresh keeps it.
    const again = await refresh(flow.clientId, refreshed.body.refresh_token!);
    expect(again.status).toBe(200);
    expect((await recordOf('cy@example.com'))?.version).toBe(after?.version);
  });

  it('a renewal the service refuses (invalid_grant) fails our refresh with invalid_grant, ends the connection, and the next /authorize connects again', async () => {
    const go = browser();
    const flow = await authorize(go, 'dee@example.com', 'dee');
    const tokens = await redeem(flow);
    expect(tokens.status).toBe(200);
    const account = ACCOUNTS.dee;
    delete ACCOUNTS.dee;
    clock.advance(2 * 3_600_000);
    const refused = await refresh(flow.clientId, tokens.body.refresh_token!);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toContain('Service account refused to renew');
    expect(refused.body.error_description).toContain('connect it again');
    expect(await recordOf('dee@example.com')).toBeUndefined();
    ACCOUNTS.dee = account!;
    // Consent is remembered, but the account is not connected: the page again, then the service.
    const again = await authorize(go, 'dee@example.com', 'dee', '/svc', { clientId: flow.clientId });
    expect(again.pages.some((p) => p.includes('Not connected yet'))).toBe(true);
    expect(again.code).toBeTruthy();
    expect((await redeem(again)).status).toBe(200);
  });
});

describe('a service that refuses or answers nonsense', () => {
  const nothingWritten = async (email: string, route: string) => {
    expect(await recordOf(email, route)).toBeUndefined();
    expect((await stack.store.list('codes')).length).toBe(codesBefore);
  };
  let codesBefore = 0;

  it('a code the service refuses: a page that says so, nothing stored, no code of ours, and the callback can not be replayed', async () => {
    const go = browser();
    codesBefore = (await stack.store.list('codes')).length;
    const started = await authorize(go, 'erin@example.com', 'ada', '/svc', { stopAtService: true });
    // Log in and consent at the service, but hand back a code it never issued.
    let res = await go(started.last.location!);
    for (let hop = 0; hop < 10 && !res.location?.startsWith(`${base}/connect/callback`); hop++) {
      if (res.location) res = await go(res.location);
      else if (res.body.includes('name="login"')) res = await go(new URL(/action="([^"]+)"/.exec(res.body)![1]!, idp.origin).toString(), { prompt: 'login', login: 'ada', password: 'x' });
      else res = await go(new URL(/action="([^"]+)"/.exec(res.body)![1]!, idp.origin).toString(), { prompt: 'consent' });
    }
    const callback = new URL(res.location!);
    callback.searchParams.set('code', 'not-a-code-it-issued');
    const page = await go(callback.toString());
    expect(page.status).toBe(502);
    expect(page.body).toContain('was not connected');
    expect(page.body).toContain('invalid_grant');
    await nothingWritten('erin@example.com', '/svc');
    const replay = await go(callback.toString());
    expect(replay.body).toContain('Connection expired');
  });

  it('the user refusing at the service: a page with what the service said, nothing stored', async () => {
    const go = browser();
    codesBefore = (await stack.store.list('codes')).length;
    const started = await authorize(go, 'fay@example.com', 'ada', '/svc', { stopAtService: true });
    const state = new URL(started.last.location!).searchParams.get('state')!;
    const page = await go(`${base}/connect/callback?${new URLSearchParams({ state, error: 'access_denied', error_description: 'End-User aborted interaction' })}`);
    expect(page.status).toBe(403);
    expect(page.body).toContain('the service said End-User aborted interaction');
    await nothingWritten('fay@example.com', '/svc');
  });

  it('a token endpoint that answers garbage: a page that says so, nothing stored', async () => {
    const go = browser();
    codesBefore = (await stack.store.list('codes')).length;
    const flow = await authorize(go, 'gus@example.com', 'ada', '/svc-broken');
    expect(flow.code).toBeNull();
    expect(flow.last.status).toBe(502);
    expect(flow.last.body).toContain('was not connected');
    await nothingWritten('gus@example.com', '/svc-broken');
  });

  it('a token endpoint that answers 200 with no access token: a page that says so, nothing stored', async () => {
    const go = browser();
    codesBefore = (await stack.store.list('codes')).length;
    tokenOverride = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"token_type":"Bearer"}');
    try {
      const flow = await authorize(go, 'hal@example.com', 'ada');
      expect(flow.code).toBeNull();
      expect(flow.last.body).toContain('no usable access_token');
    } finally {
      tokenOverride = undefined;
    }
    await nothingWritten('hal@example.com', '/svc');
  });
});

describe('the account page', () => {
  it('lists the connected service account and disconnects it: no new token until connected again', async () => {
    const go = browser();
    const flow = await authorize(go, 'ivy@example.com', 'ada');
    const tokens = await redeem(flow);
    const page = await go(`${base}/account`);
    expect(page.body).toContain('Your Service account for <code>/svc</code>');
    expect(page.body).toContain('Connected; its token last renewed');
    const csrf = field(page.body, 'csrf');
    const done = await go(`${base}/account`, { action: 'delete-credential', route: '/svc', csrf });
    expect(done.location).toContain('done=disconnected');
    expect(await recordOf('ivy@example.com')).toBeUndefined();
    const refused = await refresh(flow.clientId, tokens.body.refresh_token!);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toContain('Service account is not connected for /svc');
    expect((await go(`${base}/account`)).body).toContain('Not connected');
  });
});
