import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { expect } from 'vitest';
import type { RouteConfig } from '../../lib/config/config.ts';
import type { Client } from '../../lib/mcp/sdk.ts';
import { TOOL_NAMES } from '../fixtures/tool-server.ts';
import { refusedInBrowser, type AuthorizationStart } from './browser-authorization.ts';

// The deploy rehearsal's part for the company controls (README, "Company controls"): what a user
// of a deployed route with `user_credential`, `tools`, `identity: assertion` or `access` sees and
// what the route's server or backend gets. The rehearsal (test/deploy/rehearsal.test.ts) calls
// these from its one flow, so every example goes through them and an example without controls
// through none of their checks.

const ROOT = process.cwd();
const DEMO = join(ROOT, 'examples/demo-server/server.ts');
const TOOL_SERVER = join(ROOT, 'test/fixtures/tool-server.ts');
const ASSERTION_TYP = 'mcp-front-assertion+jwt';

/** The user who signs in and may use every route, and one the global lists admit but no route's `access` list does. */
export const USER = { login: 'ada', email: 'ada@example.com' } as const;
export const OUTSIDER = { login: 'grace', email: 'grace@example.com' } as const;

type Ran = InstanceType<typeof Client>;

/** What the rehearsal runs for a route's server, and what it checks a session of it did. */
export interface ServerStandIns {
  /** What the build's `docker inspect` of the route's server image would say: its entrypoint and cmd. */
  imageCommand(route: RouteConfig): { entrypoint: string[]; cmd: string[] };
  /** One session as the user: the demo server echoes; a route with controls shows exactly what they let through. */
  expectSession(client: Ran, route: RouteConfig, text: string): Promise<void>;
}

/**
 * The image of a route that hands its server the user's credential (an environment variable)
 * runs the tool-server fixture, whose whoami reports that variable and every MCP_FRONT_* it
 * inherited, and which logs every call it gets; any other image runs the demo server (and so
 * does a bundled command: it is the demo server). Stand-in programs go in `bin`.
 */
export function serverStandIns(node: string, bin: string): ServerStandIns {
  const callLog = (route: RouteConfig) => join(bin, `${route.name}.calls`);
  const credentialEnv = (route: RouteConfig) => (route.type === 'stdio' && route.userCredential?.inject.kind === 'env' ? route.userCredential.inject.name : undefined);
  const toolServed = new Set<string>();
  return {
    imageCommand(route) {
      const variable = credentialEnv(route);
      if (!variable) return { entrypoint: [node], cmd: [DEMO] };
      const program = join(bin, `${route.name}-server`);
      writeFileSync(callLog(route), '');
      writeFileSync(program, `#!/bin/sh\nTOOL_ECHO_ENV=${variable} TOOL_CALL_LOG=${callLog(route)} exec ${node} ${TOOL_SERVER}\n`, { mode: 0o755 });
      toolServed.add(route.path);
      return { entrypoint: [program], cmd: [] };
    },
    async expectSession(client, route, text) {
      const variable = credentialEnv(route);
      if (!variable || !toolServed.has(route.path)) {
        expect(await client.callTool({ name: 'echo', arguments: { text } })).toEqual({ content: [{ type: 'text', text }] });
        return;
      }
      // tools/list leaves out what the policy hides; a call of one is the gateway's refusal and never reaches the server.
      const hidden = TOOL_NAMES.filter((tool) => hiddenBy(route, tool));
      expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(TOOL_NAMES.filter((tool) => !hidden.includes(tool)).sort());
      for (const tool of hidden) {
        const refused = await client.callTool({ name: tool, arguments: {} }).then(() => undefined, (err: { code?: number; message?: string }) => err);
        expect(refused?.code).toBe(-32602);
        expect(refused?.message).toContain(`${tool} is not available on ${route.path} (the route's tool policy hides it)`);
      }
      // The user's own credential reached their session's server, and nothing of the route's own environment did.
      const answer = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
      expect(JSON.parse(answer.content[0]!.text)).toEqual({
        email: USER.email,
        sub: expect.any(String),
        inherited: ['MCP_FRONT_USER_EMAIL', 'MCP_FRONT_USER_SUB'],
        env: { [variable]: credentialFor(route) },
        pid: expect.any(Number),
      });
      const calls = readFileSync(callLog(route), 'utf8').split('\n').filter(Boolean);
      expect(calls).toContain('whoami');
      for (const tool of hidden) expect(calls).not.toContain(tool);
    },
  };
}

/** The route's tool policy, read from the YAML's words (`*` any run, `?` one character; deny wins), not from the gateway's code. */
function hiddenBy(route: RouteConfig, tool: string): boolean {
  const matches = (pattern: string) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\/-]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.')}$`).test(tool);
  const policy = route.tools;
  if (!policy) return false;
  return policy.deny.some(matches) || (policy.allow !== undefined && !policy.allow.some(matches));
}

/** The value the user pastes for a route's credential: one its `pattern` accepts. */
export function credentialFor(route: RouteConfig): string {
  const candidates = [`rehearsal_${route.name}_0123456789abcdefghijklmnopqrstuvwxyz`, `github_pat_rehearsal_${route.name}_0123456789abcdefghijklmnopqrstuvwxyz`];
  const pattern = route.userCredential?.pattern;
  const fits = candidates.find((c) => !pattern || new RegExp(`^(?:${pattern})$`, 'u').test(c));
  if (!fits) throw new Error(`${route.path}: no rehearsal credential matches its pattern ${pattern}: add one here`);
  return fits;
}

/**
 * On the consent page, as the user: the route asks for their credential; a value its pattern
 * refuses brings the page back saying so, with nothing stored; then their own.
 */
export function giveCredential(route: RouteConfig): ((page: Page) => Promise<void>) | undefined {
  const credential = route.userCredential;
  if (!credential || credential.oauth) return undefined;
  const field = `input[name="credential-${route.name}"]`;
  return async (page) => {
    expect(await page.textContent('legend')).toBe(`Your ${credential.label} for ${route.path}`);
    if (credential.pattern) {
      await page.fill(field, 'not-a-token');
      await page.click('button[name="decision"][value="allow"]');
      expect(await page.locator('[role="alert"]').textContent()).toBe(`That does not look like a ${credential.label}.`);
    }
    await page.fill(field, credentialFor(route));
  };
}

/**
 * A colleague the global lists admit, outside the route's access list, in a browser of their own:
 * the authorization server refuses them after sign-in, on its own page saying why; nothing goes
 * back to the client.
 */
export async function expectOutsiderRefused(browser: Browser, route: RouteConfig, o: Omit<AuthorizationStart, 'resource' | 'signIn'> & { signIn: (page: Page, login: string) => Promise<void> }): Promise<void> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const refused = await refusedInBrowser(await context.newPage(), { ...o, resource: `${o.issuer}${route.path}/mcp`, signIn: (page) => o.signIn(page, OUTSIDER.login) });
    expect(refused).toMatchObject({ status: 403, url: expect.stringMatching(new RegExp(`^${o.issuer}/`)) });
    expect(refused.text).toContain(`${OUTSIDER.email} is not on the access list of ${route.path}`);
    expect(o.redirect.received.has(refused.state)).toBe(false);
  } finally {
    await context.close();
  }
}

/** A request a backend stand-in received. */
export interface BackendRequest {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

/**
 * What an http route's backend learnt of the user: with `identity: assertion`, every request
 * carries an assertion the backend verifies as the README says (the issuer's JWKS, issuer,
 * audience, typ pinned); without it, none. Never the user's own access token.
 */
export async function expectBackendIdentity(route: RouteConfig, requests: readonly BackendRequest[], o: { issuer: string; jwks: JSONWebKeySet; accessTokens: readonly string[] }): Promise<void> {
  expect(requests.length).toBeGreaterThan(0);
  for (const { headers } of requests) expect(o.accessTokens.some((token) => JSON.stringify(headers).includes(token))).toBe(false);
  const assertions = requests.map((r) => r.headers['x-mcp-front-assertion']);
  if (route.type !== 'http' || route.identity !== 'assertion') return void expect(assertions.filter(Boolean)).toEqual([]);
  const keys = createLocalJWKSet(o.jwks);
  for (const assertion of assertions) {
    expect(typeof assertion).toBe('string');
    const { payload, protectedHeader } = await jwtVerify(assertion as string, keys, { issuer: o.issuer, audience: route.backend!, typ: ASSERTION_TYP, algorithms: ['ES256'] });
    expect(protectedHeader.kid).toMatch(/^assertion-/);
    expect(payload).toMatchObject({ email: USER.email, route: route.path, sub: expect.any(String), jti: expect.any(String) });
    expect(payload.exp! - payload.iat!).toBe(60);
  }
}
