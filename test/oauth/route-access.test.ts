import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { systemClock } from '../../lib/clock.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { startStackProcess, type StackProcess } from '../support/stack-process.ts';
import { authorizeWithDevLogin, formPost, hiddenField, obtainCode, pkcePair, redeemCode, refreshGrant, refreshOutcome, registerPublicClient, send, type DevLoginResult } from '../support/oauth-client.ts';

// routes[].access: the gateway as a user runs it (`mcp-front serve`, real HTTP on loopback, SQLite on disk). A
// user outside a route's list is not offered it and gets no token for it; taking someone off
// the list (the stack restarted with the new config, same store) fails their next refresh.

const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-access-'));
let port = 0;
let base = '';
let stack: StackProcess | undefined;

const OPS_V1 = '{ emails: [ada@example.com], domains: [ops.example] }';
const OPS_V2 = '{ domains: [ops.example] }';

/** `mcp-front serve` as a process; again with another config: the same port (issuer) and data_dir (grants, keys). */
async function start(opsAccess: string): Promise<void> {
  await stack?.stop();
  const yaml =
    `oauth:\n  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}\n  provider: dev\n  data_dir: \${MCP_FRONT_DATA_DIR}\nroutes:\n` +
    `  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n` +
    `  - { path: /ops, type: stdio, command: [node, examples/demo-server/server.ts], access: ${opsAccess} }\n` +
    `server:\n  port: \${MCP_FRONT_PORT}\n`;
  stack = await startStackProcess({ yaml, port, dataDir });
}

/** The grants of a user, read from the stack's SQLite file. */
async function grantsOf(email: string) {
  const store = await openSqliteStore({ file: join(dataDir, 'mcp-front.sqlite'), clock: systemClock });
  try {
    return (await store.find<{ revokedReason?: string; extraResources?: string[] }>('grants', 'email', email)).map((g) => g.doc);
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  await start(OPS_V1);
}, 30_000);
afterAll(async () => void (await stack?.stop()));

const DEMO = () => `${base}/demo/mcp`;
const OPS = () => `${base}/ops/mcp`;

/** /authorize for these resources, signing in as `email` on the dev page; the answer that ends the flow (a page, or the redirect with a code). */
async function authorizeAs(email: string, resources: string[]): Promise<Response> {
  const clientId = await registerPublicClient(base);
  const { challenge } = pkcePair();
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: challenge, code_challenge_method: 'S256', state: 's' });
  for (const r of resources) query.append('resource', r);
  let res = await send(base, `/authorize?${query}`);
  let cookie = '';
  for (let step = 0; step < 6; step++) {
    const location = res.headers.get('location');
    if (location?.startsWith('http://127.0.0.1:1/')) return res;
    const set = res.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0]!;
    if (location) {
      res = await send(base, location, { headers: { cookie } });
      continue;
    }
    if (res.status !== 200) return res;
    const html = await res.text();
    const signIn = html.includes('name="email"');
    const field: Record<string, string> = signIn ? { email } : { decision: 'allow' };
    res = await send(base, signIn ? '/signin' : '/consent', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), ...field }, { origin: base, cookie }));
  }
  throw new Error('the authorization flow did not end');
}

describe('per-route access at /authorize', () => {
  it('a user outside the route\'s list gets a 403 page saying so, not a redirect', async () => {
    const res = await authorizeAs('bob@example.com', [OPS()]);
    expect(res.status).toBe(403);
    expect(res.headers.get('location')).toBeNull();
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(await res.text()).toContain('bob@example.com is not on the access list of /ops');
  });

  it('asking for a route they may use and one they may not: only the first is offered, and no token is issued for the other', async () => {
    const code = await obtainCode(base, { email: 'bob@example.com', resource: OPS(), moreResources: [DEMO()] });
    const forOps = await redeemCode(base, code, { resource: OPS() });
    expect(forOps.status).toBe(400);
    expect(await forOps.json()).toEqual({ error: 'invalid_target', error_description: `resource must be one of those in the authorization request (${DEMO()})` });
    const again = await obtainCode(base, { email: 'bob@example.com', resource: OPS(), moreResources: [DEMO()] });
    const forDemo = await redeemCode(base, again, { resource: DEMO() });
    expect(forDemo.status).toBe(200);
    const refused = await refreshGrant(base, again.clientId, ((await forDemo.json()) as { refresh_token: string }).refresh_token, { resource: OPS() });
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_target');
  });

  it('admits by email and by domain', async () => {
    for (const email of ['ada@example.com', 'carol@ops.example']) {
      const tokens = await authorizeWithDevLogin(base, { email, resource: OPS() });
      expect(tokens.accessToken).toBeTruthy();
    }
  });
});

describe('taking someone off a route\'s list ends their access at the next refresh', () => {
  let ada: { clientId: string; refreshToken: string };
  let adaBoth: DevLoginResult;
  let carol: DevLoginResult;
  beforeAll(async () => {
    await start(OPS_V1);
    const first = await authorizeWithDevLogin(base, { email: 'ada@example.com', resource: OPS() });
    const refreshed = await refreshOutcome(base, first.clientId, first.refreshToken);
    expect(refreshed.status).toBe(200);
    ada = { clientId: first.clientId, refreshToken: refreshed.body.refresh_token! };
    adaBoth = await authorizeWithDevLogin(base, { email: 'ada@example.com', resource: OPS(), moreResources: [DEMO()] });
    carol = await authorizeWithDevLogin(base, { email: 'carol@ops.example', resource: OPS() });
    await start(OPS_V2); // the same data_dir: same grants, same keys
  }, 60_000);

  const grantsOfAda = () => grantsOf('ada@example.com');

  it('refuses the refresh with invalid_grant and a description that says why, and ends the grant', async () => {
    const refused = await refreshOutcome(base, ada.clientId, ada.refreshToken);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toContain('ada@example.com is not on the access list of /ops');
    const ended = (await grantsOfAda()).filter((g) => g.revokedReason);
    expect(ended).toHaveLength(1);
    expect(ended[0]!.extraResources).toBeUndefined();
    expect(ended[0]!.revokedReason).toContain('not on the access list of /ops');
  });

  it('a grant that also covers a route they may still use keeps it', async () => {
    const forOps = await refreshGrant(base, adaBoth.clientId, adaBoth.refreshToken, { resource: OPS() });
    expect(forOps.status).toBe(400);
    expect(((await forOps.json()) as { error: string }).error).toBe('invalid_grant');
    const forDemo = await refreshGrant(base, adaBoth.clientId, adaBoth.refreshToken, { resource: DEMO() });
    expect(forDemo.status).toBe(200);
    expect((await grantsOfAda()).filter((g) => g.extraResources && g.revokedReason)).toEqual([]);
  });

  it('someone still on the list refreshes as before', async () => {
    expect((await refreshOutcome(base, carol.clientId, carol.refreshToken)).status).toBe(200);
  });

  it('a new authorization for the route is refused too', async () => {
    expect((await authorizeAs('ada@example.com', [OPS()])).status).toBe(403);
  });
});
