import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { Page, Request, Response as PageResponse } from 'playwright-core';
import { pkcePair } from './oauth-client.ts';

// An MCP client's authorization with its user in Chromium: a loopback redirect target (RFC
// 8252), /authorize with PKCE S256 and the MCP server as resource (RFC 8707), whatever
// sign-in the pages ask for (the caller's part), the gateway's consent page approved, and
// what came back at the redirect target for the client to check and redeem.

export interface RedirectTarget {
  readonly uri: string;
  /** The query of each redirect that arrived, by its state. */
  readonly received: ReadonlyMap<string, URLSearchParams>;
  close(): Promise<void>;
}

export async function startRedirectTarget(): Promise<RedirectTarget> {
  const received = new Map<string, URLSearchParams>();
  const server = createServer((req, res) => {
    // Only the redirect counts: Chromium also asks this origin for /favicon.ico.
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/callback') received.set(url.searchParams.get('state') ?? '', url.searchParams);
    res.end('signed in');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    uri: `http://127.0.0.1:${(server.address() as { port: number }).port}/callback`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface BrowserAuthorization {
  readonly state: string;
  readonly verifier: string;
  /** The redirect's query, as the browser arrived with it. */
  readonly redirect: URLSearchParams;
  /** The text of the consent page the user approved. */
  readonly consent: string;
  /** Every URL the browser navigated to on the way, redirects included. */
  readonly navigations: readonly string[];
}

export interface AuthorizationStart {
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly clientId: string;
  readonly redirect: RedirectTarget;
  readonly resource: string;
  /** The sign-in the pages ask for, if any (an AS session may carry the user past it). */
  readonly signIn?: (page: Page) => Promise<void>;
}

/** /authorize with PKCE S256 in the browser, and the caller's sign-in. */
async function startAuthorization(page: Page, o: AuthorizationStart): Promise<{ state: string; verifier: string }> {
  const { verifier, challenge } = pkcePair();
  const state = randomBytes(12).toString('base64url');
  const query = new URLSearchParams({ response_type: 'code', client_id: o.clientId, redirect_uri: o.redirect.uri, code_challenge: challenge, code_challenge_method: 'S256', state, resource: o.resource });
  await page.goto(`${o.authorizationEndpoint}?${query}`);
  if (o.signIn) await o.signIn(page);
  return { state, verifier };
}

export async function authorizeInBrowser(
  page: Page,
  o: AuthorizationStart & { /** What the user does on the consent page before Allow (e.g. give their own credential). */ consent?: (page: Page) => Promise<void> },
): Promise<BrowserAuthorization> {
  const navigations: string[] = [];
  const record = (request: Request) => void (request.isNavigationRequest() && navigations.push(request.url()));
  page.on('request', record);
  try {
    const { state, verifier } = await startAuthorization(page, o);
    // Every step before it redirects on the server side, so the page shown now is the consent page, or what went wrong.
    if (!page.url().startsWith(`${o.issuer}/consent?`)) throw new Error(`expected the consent page, the browser is at ${page.url()}: ${(await page.textContent('body'))?.trim().slice(0, 400)}`);
    const consent = (await page.textContent('body')) ?? '';
    if (o.consent) await o.consent(page);
    await Promise.all([page.waitForURL((u) => u.href.startsWith(`${o.redirect.uri}?`)), page.click('button[name="decision"][value="allow"]')]);
    return { state, verifier, redirect: new URL(page.url()).searchParams, consent, navigations };
  } finally {
    page.off('request', record);
  }
}

export interface BrowserRefusal {
  /** The HTTP status of the page the browser ended on. */
  readonly status: number;
  readonly url: string;
  readonly text: string;
  readonly state: string;
}

/** An authorization the gateway refuses after sign-in: the page the user is left on (a refusal never redirects to the client). */
export async function refusedInBrowser(page: Page, o: AuthorizationStart): Promise<BrowserRefusal> {
  let status = 0;
  const record = (response: PageResponse) => void (response.request().isNavigationRequest() && response.frame() === page.mainFrame() && (status = response.status()));
  page.on('response', record);
  try {
    const { state } = await startAuthorization(page, o);
    return { status, url: page.url(), text: (await page.textContent('body')) ?? '', state };
  } finally {
    page.off('response', record);
  }
}
