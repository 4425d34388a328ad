import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { chromium, type Browser } from 'playwright-core';

// Debian's Chromium driven by playwright-core, kept entirely on loopback: Chromium phones
// home (accounts, updates, autofill) even with background networking off, so every
// non-loopback name resolves to nothing and every proxied request hits a port that refuses.

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function browserSkipReason(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const reason = `no Chromium at ${CHROMIUM}: browser tests skipped (apt-get install chromium)`;
  // CI installs Chromium (.ci/run): there a missing browser is a failure, not a skip.
  if (process.env.CI) throw new Error(`${reason} — but CI must run them`);
  return reason;
}

async function refusingProxy(): Promise<{ port: number; close(): void }> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { port: typeof address === 'object' && address ? address.port : 0, close: () => server.close() };
}

export async function launchBrowser(): Promise<Browser & { closeAll(): Promise<void> }> {
  const proxy = await refusingProxy();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
      `--proxy-server=http://127.0.0.1:${proxy.port}`,
      '--proxy-bypass-list=127.0.0.1;localhost',
    ],
  });
  return Object.assign(browser, {
    async closeAll() {
      await browser.close();
      proxy.close();
    },
  });
}

/** The dev sign-in and consent in Chromium, from an authorization URL to the client's callback page. */
export async function devSignInInBrowser(authorizationUrl: string, email: string, onConsentPage: (html: string) => void = () => undefined): Promise<string> {
  const browser = await launchBrowser();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(authorizationUrl);
    await page.fill('input[name="email"]', email);
    await Promise.all([page.waitForURL((u) => u.pathname === '/consent'), page.click('button[type="submit"]')]);
    onConsentPage(await page.content());
    await Promise.all([page.waitForURL((u) => u.pathname === '/callback'), page.click('button[name="decision"][value="allow"]')]);
    return await page.content();
  } finally {
    await browser.closeAll();
  }
}
