import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { credentialId, sealUserCredential, unsealUserCredential, type UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { generateCredentialKey, parseCredentialKeys, SEALING_KEY_DOC } from '../../lib/tokens/credential-keys.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { obtainCode, redeemCode, refreshGrant, registerPublicClient, type TokenResponse } from '../support/oauth-client.ts';
import { CLI } from '../support/stack-process.ts';

// The operators' commands, `mcp-front grants list [--user]`, `mcp-front credentials delete
// --user --route` and `mcp-front credentials reseal`, as a process against a running gateway's store: the embedded SQLite file and
// Firestore (the emulator), whichever the config names.

const run = promisify(execFile);

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, cwd: join(import.meta.dirname, '../..') });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `mcp-front …` with `input` on its stdin. */
function cliWithInput(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: join(import.meta.dirname, '../..'), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(input);
  return new Promise((resolve) => child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

describe('keygen --credential-key, from the current value on stdin', () => {
  it('--rotate prints "new,old"; --drop-old the first key alone; --stage "old,new" and --promote "new,old"', async () => {
    const old = generateCredentialKey();
    const rotated = await cliWithInput(['keygen', '--credential-key', '--rotate'], `${old}\n`);
    expect(rotated.code, rotated.stderr).toBe(0);
    const [fresh, kept] = rotated.stdout.trim().split(',');
    expect(kept).toBe(old);
    expect(parseCredentialKeys(rotated.stdout, 'out')).toHaveLength(2);
    expect((await cliWithInput(['keygen', '--credential-key', '--drop-old'], rotated.stdout)).stdout).toBe(`${fresh}\n`);
    const staged = (await cliWithInput(['keygen', '--credential-key', '--stage'], old)).stdout.trim();
    expect(staged.startsWith(`${old},`)).toBe(true);
    expect((await cliWithInput(['keygen', '--credential-key', '--promote'], staged)).stdout).toBe(`${staged.split(',')[1]},${old}\n`);
  });

  it('a malformed value, or one with no room for another key, is refused without printing a value', async () => {
    const bad = await cliWithInput(['keygen', '--credential-key', '--rotate'], 'not-a-key');
    expect(bad).toMatchObject({ code: 1, stdout: '' });
    expect(bad.stderr).toContain('the value on stdin must be 32 bytes, base64url');
    const full = await cliWithInput(['keygen', '--credential-key', '--rotate'], [generateCredentialKey(), generateCredentialKey(), generateCredentialKey()].join(','));
    expect(full).toMatchObject({ code: 1, stdout: '' });
    expect(full.stderr).toContain('drop the old ones first');
  });
});

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

function operatorsSuite(storage: 'sqlite' | 'firestore', env: () => Record<string, string>) {
  let stack: RunningStack;
  let base = '';
  let configFile = '';
  let ada: TokenResponse & { clientId: string };
  const grant = async (email: string, resource: string, fields: Record<string, string> = {}) => {
    const clientId = await registerPublicClient(base, undefined, `client of ${email.split('@')[0]}`);
    const code = await obtainCode(base, { email, resource, clientId, consentFields: fields });
    return { ...((await (await redeemCode(base, code, { resource })).json()) as TokenResponse), clientId };
  };

  beforeAll(async () => {
    Object.assign(process.env, env());
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), `mcp-front-operators-${storage}-`));
    const yaml =
      `oauth:\n  issuer: ${base}\n  provider: dev\n  storage: ${storage}\n  data_dir: ${dir}\nroutes:\n` +
      `  - { path: /svc, type: stdio, command: [node, test/fixtures/tool-server.ts], user_credential: { label: Token, instructions: Paste it, env: SVC_TOKEN } }\n` +
      `  - { path: /plain, type: stdio, command: [node, test/fixtures/tool-server.ts] }\n` +
      `server:\n  port: ${port}\n`;
    configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, yaml);
    stack = await startStack(parseConfig(yaml, {}, configFile), { log: silentLogger });
    ada = await grant('ada@example.com', `${base}/svc/mcp`, { 'credential-svc': 'tok-ada-1' });
    await grant('bob@example.com', `${base}/plain/mcp`);
  }, 120_000);
  afterAll(async () => void (await stack?.close()));

  it('grants list: every live grant, one line each, with user, client, routes and times; --user narrows to one user', async () => {
    const all = await cli(['grants', 'list', '--config', configFile], env());
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.trim().split('\n');
    expect(lines[0]).toBe('user\tclient\tclient_id\troutes\tgranted (UTC)\tlast used (UTC)\tgrant');
    expect(lines.slice(1).map((l) => l.split('\t').filter((_, i) => [0, 1, 3].includes(i)))).toEqual([
      ['ada@example.com', 'client of ada', '/svc'],
      ['bob@example.com', 'client of bob', '/plain'],
    ]);
    expect(all.stdout).not.toContain('tok-ada-1');
    const one = await cli(['grants', 'list', '--config', configFile, '--user', 'Bob@Example.com'], env());
    expect(one.stdout.trim().split('\n').slice(1).map((l) => l.split('\t')[0])).toEqual(['bob@example.com']);
  });

  it('credentials delete: the user\'s credential for the route is gone, and their next refresh for it is refused', async () => {
    const deleted = await cli(['credentials', 'delete', '--config', configFile, '--user', 'ada@example.com', '--route', '/svc'], env());
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain("deleted ada@example.com's credential for /svc");
    expect(await stack.store.find<UserCredentialRecord>('userCredentials', 'email', 'ada@example.com')).toEqual([]);
    const refused = await refreshGrant(base, ada.clientId, ada.refresh_token);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error_description: string }).error_description).toContain('no Token is stored for /svc');

    const again = await cli(['credentials', 'delete', '--config', configFile, '--user', 'ada@example.com', '--route', '/svc'], env());
    expect(again.stdout).toContain('ada@example.com has no credential stored for /svc');
    const unknown = await cli(['credentials', 'delete', '--config', configFile, '--user', 'ada@example.com', '--route', '/nope'], env());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('has no route /nope');
  });

  it('credentials reseal: with "new,old" every credential sealed under the old key is sealed under the new one; those no key opens are counted and left', async () => {
    await grant('cyd@example.com', `${base}/svc/mcp`, { 'credential-svc': 'tok-cyd-1' });
    // One sealed under a key nobody holds (a sealing key lost): it can't be helped, only counted.
    const lost = { userSub: 'dev:eve@example.com', route: '/svc' };
    await stack.store.put('userCredentials', credentialId(lost.userSub, lost.route), {
      ...lost, email: 'eve@example.com', sealed: sealUserCredential({ sealing: parseCredentialKeys(generateCredentialKey(), 'k'), routes: new Map() }, lost.userSub, lost.route, 'tok-eve'), version: 'v', createdAt: 1, updatedAt: 1,
    });
    // The key the gateway generated on first start (local mode), then the same with a new key first.
    const old = (await stack.store.get<{ key: string }>('keys', SEALING_KEY_DOC))!.key;
    const unchanged = await cli(['credentials', 'reseal', '--config', configFile], env());
    expect(unchanged.code, unchanged.stderr).toBe(0);
    expect(unchanged.stdout).toBe('re-sealed 0, already under the newest key 1, opened by no key 1\n');
    expect(unchanged.stderr).toContain('1 stored credential opened by no key held');

    const fresh = generateCredentialKey();
    const resealed = await cli(['credentials', 'reseal', '--config', configFile], { ...env(), MCP_FRONT_SEALING_KEY: `${fresh},${old}` });
    expect(resealed.code, resealed.stderr).toBe(0);
    expect(resealed.stdout).toBe('re-sealed 1, already under the newest key 0, opened by no key 1\n');
    const cyd = (await stack.store.get<UserCredentialRecord>('userCredentials', credentialId('dev:cyd@example.com', '/svc')))!;
    expect(unsealUserCredential({ sealing: parseCredentialKeys(fresh, 'k'), routes: new Map() }, cyd, { userSub: cyd.userSub, route: '/svc' })).toEqual({ plain: 'tok-cyd-1', stale: false });
    expect(await stack.store.get('userCredentials', credentialId(lost.userSub, lost.route))).toBeDefined();

    const malformed = await cli(['credentials', 'reseal', '--config', configFile], { ...env(), MCP_FRONT_SEALING_KEY: `${fresh},oops` });
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toContain('MCP_FRONT_SEALING_KEY must be 32 bytes, base64url');
  });
}

describe('on the embedded SQLite store', () => operatorsSuite('sqlite', () => ({})));

describe.skipIf('skip' in emulator)('on Firestore (emulator)', () => {
  if ('skip' in emulator) return;
  operatorsSuite('firestore', () => ({ FIRESTORE_EMULATOR_HOST: emulator.host }));
});
