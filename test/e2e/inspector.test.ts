import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext } from 'playwright-core';
import { browserSkipReason, launchBrowser } from '../support/browser.ts';
import { startInspector } from '../support/inspector-process.ts';
import { startStackProcess, type StackProcess } from '../support/stack-process.ts';

// The README's "Try it with the MCP Inspector", done by the real Inspector (the pinned
// devDependency) in headless Chromium against `serve` with examples/local.yaml: the
// Inspector finds our metadata from the 401, registers itself, sends the browser to the dev
// sign-in and consent pages, and then lists and calls tools over Streamable HTTP on each
// route. Every wait is on a state the page shows, never on time.

const skip = browserSkipReason();
if (skip) console.warn(skip);

describe.skipIf(skip)('the MCP Inspector against the local stack', () => {
  let stack: StackProcess;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  // One browser profile for both routes, as one person's browser: the sign-in on the first
  // route is remembered by the gateway's session cookie on the second.
  let context: BrowserContext;

  beforeAll(async () => {
    stack = await startStackProcess();
    browser = await launchBrowser();
    context = await browser.newContext();
  });

  afterAll(async () => {
    await browser?.closeAll();
    if (stack) await stack.stop();
  });

  async function connectAndCallEcho(route: string, expectSignIn: boolean, text: string): Promise<void> {
    const serverUrl = `${stack.baseUrl}${route}/mcp`;
    const inspector = await startInspector(serverUrl);
    const page = await context.newPage();
    try {
      const inspectorOrigin = new URL(inspector.url).origin;
      await page.goto(inspector.url);
      // The ad-hoc server's card, named after the URL's host; its switch connects it.
      const connect = page.locator('label', { has: page.getByRole('switch', { name: `Connect or disconnect "${new URL(serverUrl).host}"` }) });
      const signInOrConsent = (u: URL) => u.origin === stack.baseUrl && (u.pathname === '/signin' || u.pathname === '/consent');
      await Promise.all([page.waitForURL(signInOrConsent), connect.click()]);
      if (expectSignIn) {
        expect(new URL(page.url()).pathname).toBe('/signin');
        await page.fill('input[name="email"]', 'ada@example.com');
        await Promise.all([page.waitForURL((u) => u.pathname === '/consent'), page.click('button[type="submit"]')]);
      } else {
        expect(new URL(page.url()).pathname).toBe('/consent');
      }
      const consent = await page.content();
      expect(consent).toContain('MCP Inspector');
      expect(consent).toContain(route);
      await Promise.all([page.waitForURL((u) => u.origin === inspectorOrigin), page.click('button[name="decision"][value="allow"]')]);

      await page.locator('[data-testid="connection-status"][data-status="connected"]').waitFor();
      await page.locator('label', { hasText: /^Tools$/ }).click();
      const tools = page.locator('[data-testid="tools-screen"][data-tool-count="4"]');
      await tools.waitFor();
      for (const name of ['echo', 'add', 'slow', 'big']) expect(await tools.getByRole('button', { name, exact: true }).count()).toBe(1);
      await tools.getByRole('button', { name: 'echo', exact: true }).click();
      await tools.getByRole('textbox', { name: 'text', exact: true }).fill(text);
      await tools.getByRole('button', { name: 'Execute Tool' }).click();
      await page.locator('[data-testid="tools-screen"][data-call-status="ok"]').waitFor();
      await tools.getByText(text, { exact: true }).waitFor({ state: 'visible' });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- Inspector output:\n${inspector.output()}\n--- mcp-front output:\n${stack.output().slice(-4000)}`, { cause: err });
    } finally {
      await page.close();
      await inspector.stop();
    }
  }

  it('connects to /demo (stdio route) over Streamable HTTP through dev sign-in and consent, lists tools and calls echo', async () => {
    await connectAndCallEcho('/demo', true, 'hello from the Inspector over /demo');
  }, 60_000);

  it('connects to /demo-http (http route) with consent only: the sign-in is remembered', async () => {
    await connectAndCallEcho('/demo-http', false, 'hello from the Inspector over /demo-http');
  }, 60_000);
});
