import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { startStack, type RunningStack } from '../../cli/stack.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { silentLogger } from '../../lib/log.ts';
import { redeemForRefreshToken, refreshOutcome } from '../support/oauth-client.ts';

// GitHub sign-in against a loopback stand-in for github.com and api.github.com: the OAuth app
// flow with PKCE, the user and email API, and organisation membership (allowed_orgs, and a
// route's access.github_orgs).

const USERS: Record<string, { id: number; emails: Array<{ email: string; primary: boolean; verified: boolean }>; orgs: string[] }> = {
  member: { id: 1, emails: [{ email: 'member@acme.dev', primary: true, verified: true }], orgs: ['acme'] },
  // Changed by the re-check tests: leaves the org; deletes the account.
  leaver: { id: 4, emails: [{ email: 'leaver@acme.dev', primary: true, verified: true }], orgs: ['acme'] },
  gone: { id: 5, emails: [{ email: 'gone@acme.dev', primary: true, verified: true }], orgs: ['acme'] },
  outsider: { id: 2, emails: [{ email: 'outsider@example.com', primary: true, verified: true }], orgs: ['other'] },
  pending: { id: 3, emails: [{ email: 'pending@acme.dev', primary: true, verified: true }], orgs: [] },
  // The /ops route admits members of the ops org (who must pass allowed_orgs: [acme] first).
  oncall: { id: 6, emails: [{ email: 'oncall@acme.dev', primary: true, verified: true }], orgs: ['acme', 'ops'] },
  rotated: { id: 7, emails: [{ email: 'rotated@acme.dev', primary: true, verified: true }], orgs: ['acme', 'ops'] },
  opsonly: { id: 8, emails: [{ email: 'opsonly@example.com', primary: true, verified: true }], orgs: ['ops'] },
};
const challenges = new Map<string, string>();

let github: Server;
let stack: RunningStack;
let base = '';

beforeAll(async () => {
  github = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (url.pathname === '/login/oauth/authorize') {
      // The user is already signed in at "GitHub" and approves: straight back with a code.
      const login = url.searchParams.get('login_hint') ?? process.env.GITHUB_TEST_LOGIN ?? 'member';
      challenges.set(login, url.searchParams.get('code_challenge')!);
      const back = new URL(url.searchParams.get('redirect_uri')!);
      back.search = new URLSearchParams({ code: login, state: url.searchParams.get('state')! }).toString();
      return void res.writeHead(302, { location: back.toString() }).end();
    }
    if (url.pathname === '/login/oauth/access_token') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const login = form.get('code')!;
        const verified = createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url') === challenges.get(login);
        if (form.get('client_secret') !== 'gh-secret' || !verified) return send(200, { error: 'bad_verification_code', error_description: 'bad code or verifier' });
        send(200, { access_token: `token-${login}`, token_type: 'bearer' });
      });
      return;
    }
    const login = (req.headers.authorization ?? '').replace('Bearer token-', '');
    const user = USERS[login];
    if (!user) return send(401, { message: 'Bad credentials' });
    if (url.pathname === '/user') return send(200, { id: user.id, login });
    if (url.pathname === '/user/emails') return send(200, user.emails);
    const org = /^\/user\/memberships\/orgs\/([^/]+)$/.exec(url.pathname)?.[1];
    if (org) return user.orgs.includes(org) ? send(200, { state: 'active', organization: { login: org } }) : send(404, { message: 'Not Found' });
    send(404, { message: 'Not Found' });
  });
  await new Promise<void>((resolve) => github.listen(0, '127.0.0.1', resolve));
  const gh = `http://127.0.0.1:${(github.address() as { port: number }).port}`;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = parseConfig(
    `oauth:\n  issuer: ${base}\n  provider: github\n  client_id: gh-client\n  client_secret: gh-secret\n  github_url: ${gh}\n  github_api_url: ${gh}\n  allowed_orgs: [acme]\n  upstream_recheck: 0s\n  data_dir: ${mkdtempSync(join(tmpdir(), 'mcp-front-github-'))}\nroutes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n  - { path: /ops, type: stdio, command: [node, examples/demo-server/server.ts], access: { github_orgs: [ops] } }\nserver:\n  port: ${port}\n`,
    {},
  );
  stack = await startStack(config, { log: silentLogger });
});

afterAll(async () => {
  await stack?.close();
  github?.close();
});

async function signIn(login: string, route = '/demo'): Promise<{ status: number; location?: string; body: string; clientId?: string; verifier?: string }> {
  process.env.GITHUB_TEST_LOGIN = login;
  let cookie = '';
  const go = async (url: string, init: RequestInit = {}) => {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), cookie, origin: base } });
    for (const c of res.headers.getSetCookie()) cookie = [cookie, c.split(';')[0]].filter(Boolean).join('; ');
    return res;
  };
  const client = (await (await fetch(`${base}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:1/cb'] }) })).json()) as { client_id: string };
  const verifier = randomBytes(32).toString('base64url');
  let res = await go(`${base}/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.client_id, redirect_uri: 'http://127.0.0.1:1/cb', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', state: 'st', resource: `${base}${route}/mcp` })}`);
  for (let hop = 0; hop < 8; hop++) {
    const location = res.headers.get('location');
    if (location?.startsWith('http://127.0.0.1:1/')) return { status: res.status, location, body: '', clientId: client.client_id, verifier };
    if (location) {
      res = await go(location);
      continue;
    }
    const html = await res.text();
    if (!html.includes('name="decision"')) return { status: res.status, body: html };
    const fields = Object.fromEntries([...html.matchAll(/name="(request|csrf)" value="([^"]+)"/g)].map((m) => [m[1]!, m[2]!]));
    res = await go(`${base}/consent`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ ...fields, decision: 'allow' }).toString() });
  }
  throw new Error('sign-in did not finish');
}

describe('GitHub sign-in (loopback stand-in)', () => {
  it('lets in an active member of an allowed organisation', async () => {
    const result = await signIn('member');
    expect(new URL(result.location!).searchParams.get('code')).toBeTruthy();
  });

  it.each([
    ['a member of another organisation only', 'outsider'],
    ['a user whose membership is not active', 'pending'],
  ])('refuses %s with a page that says why, and issues no code', async (_name, login) => {
    const result = await signIn(login);
    expect(result.location).toBeUndefined();
    expect(result.status).toBe(403);
    expect(result.body).toContain('is not a member of acme');
  });
});

describe('each refresh asks GitHub again (upstream_recheck: 0s)', () => {
  async function tokensFor(login: string) {
    const result = await signIn(login);
    return redeemForRefreshToken(base, { code: new URL(result.location!).searchParams.get('code')!, verifier: result.verifier!, clientId: result.clientId!, redirectUri: 'http://127.0.0.1:1/cb' });
  }

  it('refreshes an active member, and refuses one who left the organisation', async () => {
    const member = await tokensFor('member');
    expect((await refreshOutcome(base, member.clientId, member.refreshToken)).status).toBe(200);
    const leaver = await tokensFor('leaver');
    USERS.leaver!.orgs = [];
    const refused = await refreshOutcome(base, leaver.clientId, leaver.refreshToken);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toContain('is not a member of acme');
  });

  it('refuses a user whose GitHub token no longer works (account removed, app access withdrawn)', async () => {
    const gone = await tokensFor('gone');
    delete USERS.gone;
    const refused = await refreshOutcome(base, gone.clientId, gone.refreshToken);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toContain('GitHub no longer accepts');
    const [grant] = await stack.store.find<{ revokedAt?: number }>('grants', 'clientId', gone.clientId);
    expect(grant?.doc.revokedAt).toBeDefined();
  });
});

describe('a route open to one GitHub organisation (access.github_orgs)', () => {
  async function tokensFor(login: string, route: string) {
    const result = await signIn(login, route);
    return redeemForRefreshToken(base, { code: new URL(result.location!).searchParams.get('code')!, verifier: result.verifier!, clientId: result.clientId!, redirectUri: 'http://127.0.0.1:1/cb' });
  }

  it('admits a member of that organisation, and refuses a member of acme only with a 403 page', async () => {
    expect((await signIn('oncall', '/ops')).location).toContain('code=');
    const refused = await signIn('member', '/ops');
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('member@acme.dev is not on the access list of /ops');
    expect((await signIn('member', '/demo')).location).toContain('code=');
  });

  it('does not let a route\'s org stand in for the global allowed_orgs', async () => {
    const refused = await signIn('opsonly', '/ops');
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('is not a member of acme');
  });

  it('ends access at the next refresh once GitHub says the user left the organisation', async () => {
    const rotated = await tokensFor('rotated', '/ops');
    expect((await refreshOutcome(base, rotated.clientId, rotated.refreshToken)).status).toBe(200);
    const again = await tokensFor('rotated', '/ops');
    USERS.rotated!.orgs = ['acme'];
    const refused = await refreshOutcome(base, again.clientId, again.refreshToken);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toContain('rotated@acme.dev is not on the access list of /ops');
  });
});
