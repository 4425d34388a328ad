import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import type { UserCredentialRecord } from '../../lib/oauth/user-credentials.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { obtainCode, redeemCode, refreshGrant, registerPublicClient, type TokenResponse } from '../support/oauth-client.ts';
import { CLI } from '../support/stack-process.ts';

// The operators' commands, `mcp-front grants list [--user]` and `mcp-front credentials delete
// --user --route`, as a process against a running gateway's store: the embedded SQLite file and
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
    const grant = async (email: string, resource: string, fields: Record<string, string> = {}) => {
      const clientId = await registerPublicClient(base, undefined, `client of ${email.split('@')[0]}`);
      const code = await obtainCode(base, { email, resource, clientId, consentFields: fields });
      return { ...((await (await redeemCode(base, code, { resource })).json()) as TokenResponse), clientId };
    };
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
}

describe('on the embedded SQLite store', () => operatorsSuite('sqlite', () => ({})));

describe.skipIf('skip' in emulator)('on Firestore (emulator)', () => {
  if ('skip' in emulator) return;
  operatorsSuite('firestore', () => ({ FIRESTORE_EMULATOR_HOST: emulator.host }));
});
