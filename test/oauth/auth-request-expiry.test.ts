import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOAuthApp } from '../../functions/oauth/app.ts';
import { ManualClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { AUTH_REQUEST_TTL_MS } from '../../lib/oauth/authorization.ts';
import { silentLogger } from '../../lib/log.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { loadKeySet } from '../../lib/tokens/keys.ts';
import { formPost, hiddenField, pkcePair, registerPublicClient, send, type OAuthTarget } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from './support.ts';

// An authorization request lives AUTH_REQUEST_TTL_MS from /authorize, whatever happens to it
// meanwhile: signing in, opening the consent page or coming back from the identity provider
// rewrites it, and none of those may make it live for ever.

const DEMO = `${ISSUER}/demo/mcp`;

function authorizeQuery(clientId: string): string {
  return `/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', state: 'st', resource: DEMO })}`;
}

/** The consent page of `requestId`, as the signed-in browser asks for it. */
const consentPage = (target: OAuthTarget, requestId: string, cookie: string) => send(target, `/consent?request=${encodeURIComponent(requestId)}`, { headers: { cookie } });

async function expectExpired(target: OAuthTarget & { store: { get(c: 'authRequests', id: string): Promise<unknown> } }, requestId: string, cookie: string): Promise<void> {
  const page = await consentPage(target, requestId, cookie);
  expect(page.status).toBe(400);
  expect(await page.text()).toContain('Sign-in expired');
  expect(await target.store.get('authRequests', requestId)).toBeUndefined();
}

describe('an authorization request expires on time', () => {
  it('after the dev sign-in wrote the user into it', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    const start = await send(as, authorizeQuery(clientId));
    const html = await (await send(as, start.headers.get('location')!)).text();
    const requestId = hiddenField(html, 'request');
    as.clock.advance(AUTH_REQUEST_TTL_MS / 2);
    const signedIn = await send(as, '/signin', formPost({ request: requestId, csrf: hiddenField(html, 'csrf'), email: 'ada@example.com' }, { origin: ISSUER }));
    expect(signedIn.headers.get('location')).toBe(`${ISSUER}/consent?request=${requestId}`);
    const cookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
    expect((await consentPage(as, requestId, cookie)).status).toBe(200);
    as.clock.advance(AUTH_REQUEST_TTL_MS / 2 + 1000);
    await expectExpired(as, requestId, cookie);
  });

  it('after the consent page bound it to the user of the browser session', async () => {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as);
    // A first authorization, only for its session cookie.
    const first = await send(as, authorizeQuery(clientId));
    const html = await (await send(as, first.headers.get('location')!)).text();
    const signedIn = await send(as, '/signin', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), email: 'ada@example.com' }, { origin: ISSUER }));
    const cookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
    // The second goes straight to consent; opening the page binds the request to the user.
    const second = await send(as, authorizeQuery(clientId), { headers: { cookie } });
    const requestId = new URL(second.headers.get('location')!).searchParams.get('request')!;
    as.clock.advance(AUTH_REQUEST_TTL_MS / 2);
    expect((await consentPage(as, requestId, cookie)).status).toBe(200);
    expect(await as.store.get('authRequests', requestId)).toMatchObject({ userSub: 'dev:ada@example.com' });
    as.clock.advance(AUTH_REQUEST_TTL_MS / 2 + 1000);
    await expectExpired(as, requestId, cookie);
  });
});

describe('an authorization request through an upstream provider expires on time', () => {
  // A stand-in for github.com and its API that signs in one verified user.
  let github: Server;
  let gh = '';
  beforeAll(async () => {
    github = createServer((req, res) => {
      const path = new URL(req.url!, 'http://x').pathname;
      const send = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (path === '/login/oauth/access_token') return void req.resume().on('end', () => send({ access_token: 'token-ada', token_type: 'bearer' }));
      if (path === '/user') return send({ id: 7, login: 'ada' });
      if (path === '/user/emails') return send([{ email: 'ada@example.com', primary: true, verified: true }]);
      res.writeHead(404).end('{}');
    });
    await new Promise<void>((resolve) => github.listen(0, '127.0.0.1', resolve));
    gh = `http://127.0.0.1:${(github.address() as { port: number }).port}`;
  });
  afterAll(() => github?.close());

  it('after /callback wrote the signed-in user into it', async () => {
    const clock = new ManualClock();
    const store = await openSqliteStore({ file: ':memory:', clock });
    const config = parseConfig(`oauth:\n  issuer: ${ISSUER}\n  provider: github\n  client_id: gh-client\n  client_secret: gh-secret\n  github_url: ${gh}\n  github_api_url: ${gh}\nroutes:\n  - { path: /demo, type: stdio, command: [node, x.js] }\n`, {});
    const as = { handler: createOAuthApp({ config, store, keys: await loadKeySet(store, clock), clock, log: silentLogger }), issuer: ISSUER, store };
    const clientId = await registerPublicClient(as);
    const begun = await send(as, authorizeQuery(clientId));
    const upstream = new URL(begun.headers.get('location')!);
    expect(upstream.origin).toBe(gh);
    const requestId = upstream.searchParams.get('state')!;
    const loginCookie = begun.headers.get('set-cookie')!.split(';')[0]!;
    clock.advance(AUTH_REQUEST_TTL_MS / 2);
    const back = await send(as, `/callback?code=c&state=${encodeURIComponent(requestId)}`, { headers: { cookie: loginCookie } });
    expect(back.headers.get('location')).toBe(`${ISSUER}/consent?request=${requestId}`);
    const cookie = back.headers.get('set-cookie')!.split(';')[0]!;
    expect((await consentPage(as, requestId, cookie)).status).toBe(200);
    clock.advance(AUTH_REQUEST_TTL_MS / 2 + 1000);
    await expectExpired(as, requestId, cookie);
    await store.close();
  });
});
