import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { resealAllUserCredentials, resealUserCredential } from '../../lib/oauth/credential-reseal.ts';
import { credentialId, saveUserCredential, sealUserCredential, unsealUserCredential, type UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { generateCredentialKey, parseCredentialKeys, type CredentialKeys } from '../../lib/tokens/credential-keys.ts';
import { routeCredentialOpener } from '../../lib/tokens/route-credential.ts';
import { obtainCode, redeemCode, refreshGrant, type TokenResponse } from '../support/oauth-client.ts';

// Rotating the credential keys on a running gateway (SQLite store): credentials given while the
// secrets held one key each, then the gateway started again with "new,old" in both. The stored
// credential moves to the new sealing key the first time /token reads it, never over a value
// the user replaced meanwhile; `credentials reseal`'s sweep moves the rest and counts what no key
// opens; and a token issued before the rotation still works at the route.

const SEAL_OLD = generateCredentialKey();
const SEAL_NEW = generateCredentialKey();
const ROUTE_OLD = generateCredentialKey();
const ROUTE_NEW = generateCredentialKey();
const keysOf = (value: string) => parseCredentialKeys(value, 'test');
const sealing = (value: string): CredentialKeys => ({ sealing: keysOf(value), routes: new Map() });

const dataDir = mkdtempSync(join(tmpdir(), 'mcp-front-rotation-'));
let port = 0;
let base = '';
let stack: RunningStack | undefined;

/** The gateway with these secret values, as a restarted revision would read them. */
async function start(env: { seal: string; route: string }): Promise<RunningStack> {
  const yaml =
    `oauth:\n  issuer: ${base}\n  provider: dev\n  data_dir: ${dataDir}\nroutes:\n` +
    `  - { path: /svc, type: stdio, command: [node, test/fixtures/tool-server.ts], environment: { TOOL_ECHO_ENV: SVC_TOKEN }, user_credential: { label: Token, instructions: Paste it, env: SVC_TOKEN } }\n` +
    `server:\n  port: ${port}\n`;
  const saved = { seal: process.env.MCP_FRONT_SEALING_KEY, route: process.env.MCP_FRONT_CREDENTIAL_KEY_SVC };
  process.env.MCP_FRONT_SEALING_KEY = env.seal;
  process.env.MCP_FRONT_CREDENTIAL_KEY_SVC = env.route;
  try {
    return await startStack(parseConfig(yaml, {}), { log: silentLogger });
  } finally {
    for (const [name, value] of [['MCP_FRONT_SEALING_KEY', saved.seal], ['MCP_FRONT_CREDENTIAL_KEY_SVC', saved.route]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

async function authorize(email: string, value: string): Promise<TokenResponse & { clientId: string }> {
  const code = await obtainCode(base, { email, resource: `${base}/svc/mcp`, consentFields: { 'credential-svc': value } });
  const res = await redeemCode(base, code, { resource: `${base}/svc/mcp` });
  expect(res.status).toBe(200);
  return { ...((await res.json()) as TokenResponse), clientId: code.clientId };
}

async function childSees(accessToken: string): Promise<unknown> {
  const client = new Client({ name: 'rotation-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/svc/mcp`), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
  await client.connect(transport);
  try {
    const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
    return (JSON.parse(result.content[0]!.text) as { env: unknown }).env;
  } finally {
    await transport.terminateSession().catch(() => undefined);
    await client.close();
  }
}

const stored = async (email: string) => (await stack!.store.get<UserCredentialRecord>('userCredentials', credentialId(`dev:${email}`, '/svc')))!;
const own = (record: UserCredentialRecord) => ({ userSub: record.userSub, route: record.route });
const credOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { cred: string }).cred;

let ada: TokenResponse & { clientId: string };

beforeAll(async () => {
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  stack = await start({ seal: SEAL_OLD, route: ROUTE_OLD });
  ada = await authorize('ada@example.com', 'tok-ada');
  await authorize('bob@example.com', 'tok-bob');
  await stack.close();
  // This process's fetch would reuse a keep-alive connection to the stopped gateway: fresh ones, as a client's after a restart.
  const stale = getGlobalDispatcher();
  setGlobalDispatcher(new Agent());
  await stale.close();
  stack = await start({ seal: `${SEAL_NEW},${SEAL_OLD}`, route: `${ROUTE_NEW},${ROUTE_OLD}` });
}, 120_000);
afterAll(async () => void (await stack?.close()));

describe('after the gateway gets "new,old" for the sealing key and the route key', () => {
  it('a token issued before, its credential sealed under the old route key, still works at the route', async () => {
    expect(routeCredentialOpener(keysOf(ROUTE_NEW), '/svc')(credOf(ada.access_token), 'dev:ada@example.com')).toBeUndefined();
    expect(await childSees(ada.access_token)).toEqual({ SVC_TOKEN: 'tok-ada' });
  });

  it('a credential stored under the old sealing key is sealed again under the new one when /token reads it: same value, same version', async () => {
    const before = await stored('ada@example.com');
    expect(unsealUserCredential(sealing(SEAL_NEW), before, own(before))).toBeUndefined();
    const res = await refreshGrant(base, ada.clientId, ada.refresh_token);
    expect(res.status).toBe(200);
    const after = await stored('ada@example.com');
    expect(unsealUserCredential(sealing(SEAL_NEW), after, own(after))).toEqual({ plain: 'tok-ada', stale: false });
    expect(after).toEqual({ ...before, sealed: after.sealed });
    // The new token's credential is sealed under the new route key: a route holding only the old one can't open it.
    const cred = credOf(((await res.json()) as TokenResponse).access_token);
    expect(routeCredentialOpener(keysOf(ROUTE_NEW), '/svc')(cred, 'dev:ada@example.com')).toMatchObject({ value: 'tok-ada', version: before.version });
    expect(routeCredentialOpener(keysOf(ROUTE_OLD), '/svc')(cred, 'dev:ada@example.com')).toBeUndefined();
    // Bob's was not read: still under the old key until the sweep.
    const bob = await stored('bob@example.com');
    expect(unsealUserCredential(sealing(`${SEAL_NEW},${SEAL_OLD}`), bob, own(bob))).toEqual({ plain: 'tok-bob', stale: true });
  });

  it('a re-seal never overwrites a credential the user replaced since it was read', async () => {
    const keys = sealing(`${SEAL_NEW},${SEAL_OLD}`);
    const user = { sub: 'dev:carol@example.com', email: 'carol@example.com' };
    const id = credentialId(user.sub, '/svc');
    const read = { userSub: user.sub, email: user.email, route: '/svc', sealed: sealUserCredential(sealing(SEAL_OLD), user.sub, '/svc', 'tok-carol-1'), version: 'v-old', createdAt: 1, updatedAt: 1 };
    await stack!.store.put('userCredentials', id, read);
    // Between the read and the re-seal, the user gives a new one.
    await saveUserCredential(stack!.store, systemClock, keys, user, '/svc', 'tok-carol-2');
    expect(await resealUserCredential(stack!.store, keys, id, read)).toBe('replaced');
    const now = (await stack!.store.get<UserCredentialRecord>('userCredentials', id))!;
    expect(unsealUserCredential(keys, now, own(now))?.plain).toBe('tok-carol-2');
    expect(now.version).not.toBe('v-old');
    await stack!.store.delete('userCredentials', id);
  });

  it('the sweep (credentials reseal) seals the rest again and counts those no key opens, leaving them in place', async () => {
    const stray = { sub: 'dev:dan@example.com', route: '/svc' };
    await stack!.store.put('userCredentials', credentialId(stray.sub, stray.route), {
      userSub: stray.sub, email: 'dan@example.com', route: stray.route, sealed: sealUserCredential(sealing(generateCredentialKey()), stray.sub, stray.route, 'tok-dan'), version: 'v', createdAt: 1, updatedAt: 1,
    });
    const keys = sealing(`${SEAL_NEW},${SEAL_OLD}`);
    expect(await resealAllUserCredentials(stack!.store, keys)).toEqual({ resealed: 1, current: 1, unreadable: 1 });
    const bob = await stored('bob@example.com');
    expect(unsealUserCredential(sealing(SEAL_NEW), bob, own(bob))).toEqual({ plain: 'tok-bob', stale: false });
    expect(await stack!.store.get('userCredentials', credentialId(stray.sub, stray.route))).toBeDefined();
    // Again: nothing left under the old key, so it can be dropped.
    expect(await resealAllUserCredentials(stack!.store, keys)).toEqual({ resealed: 0, current: 2, unreadable: 1 });
  });
});
