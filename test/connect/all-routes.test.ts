import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client, StdioClientTransport } from '../../lib/mcp/sdk.ts';
import { generateSigningJwk } from '../../lib/tokens/keys.ts';
import { CLI, exitOf, startStackProcess, type StackProcess } from '../support/stack-process.ts';
import { browserSkipReason, devSignInInBrowser, launchBrowser } from '../support/browser.ts';

// `mcp-front connect <gateway> --all`: every route as one stdio server after one sign-in and one
// consent naming all of them; tokens stay audience-bound, one per route. Routes the user may not
// use (routes[].access) are skipped, whichever they are, and the others served.

const skip = browserSkipReason();

/** Two demo routes; `access` (YAML flow maps) per route, none: open to every signed-in user. */
const gatewayYaml = (access: { alpha?: string; beta?: string } = {}) => `oauth:
  issuer: http://127.0.0.1:\${MCP_FRONT_PORT}
  provider: dev
  data_dir: \${MCP_FRONT_DATA_DIR}
routes:
  - { path: /alpha, type: stdio, command: [node, examples/demo-server/server.ts]${access.alpha ? `, access: ${access.alpha}` : ''} }
  - { path: /beta, type: stdio, command: [node, examples/demo-server/server.ts]${access.beta ? `, access: ${access.beta}` : ''} }
server:
  port: \${MCP_FRONT_PORT}
`;
const ADA_ONLY = '{ emails: [ada@example.com] }';
const CAROL_ONLY = '{ emails: [carol@example.com] }';
const BETA_TOOLS = ['beta__add', 'beta__big', 'beta__echo', 'beta__slow'];

/** The same stack again (port, data_dir: grants survive) with another config and a new signing key: every cached token gets a 401. */
async function restartWith(stack: StackProcess, yaml: string): Promise<StackProcess> {
  await stack.stop();
  return startStackProcess({ yaml, port: Number(new URL(stack.baseUrl).port), dataDir: stack.dataDir, env: { MCP_FRONT_SIGNING_KEY: JSON.stringify(await generateSigningJwk()) } });
}

/** `connect --all` as Claude Desktop starts it; `connected` settles once it serves (after any sign-in). */
function connectAll(gateway: string, dir: string) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'connect', gateway, '--all'],
    env: { ...process.env, MCP_FRONT_CONNECT_DIR: dir, MCP_FRONT_BROWSER: 'none' } as Record<string, string>,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const client = new Client({ name: 'all-routes-test', version: '1' });
  return { client, connected: client.connect(transport), stderr: () => stderr };
}

/** The sign-in URL the bridge printed on stderr. */
async function printedSignInUrl(stderr: () => string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const printed = /in your browser: (\S+)/.exec(stderr())?.[1];
    if (printed) return printed;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no sign-in URL printed:\n${stderr()}`);
}

/** `connect --all` expected to end by itself: its exit code and stderr. */
function connectAllUntilExit(gateway: string, dir: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, 'connect', gateway, '--all'], { env: { ...process.env, MCP_FRONT_CONNECT_DIR: dir, MCP_FRONT_BROWSER: 'none', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return { stderr: () => stderr, exit: exitOf(child).then((code) => ({ code, stderr })) };
}

const text = (result: unknown) => (result as { content: Array<{ text: string }> }).content[0]!.text;

describe.skipIf(skip)('connect --all', () => {
  let stack: StackProcess;
  beforeAll(async () => {
    stack = await startStackProcess({ yaml: gatewayYaml() });
  });
  afterAll(async () => stack?.stop());

  it('serves every route\'s tools, prefixed, after one sign-in and one consent', async () => {
    const { client, connected, stderr } = connectAll(stack.baseUrl, mkdtempSync(join(tmpdir(), 'mcp-front-all-')));
    const printed = await printedSignInUrl(stderr);
    expect(new URL(printed).searchParams.getAll('resource')).toEqual([`${stack.baseUrl}/alpha/mcp`, `${stack.baseUrl}/beta/mcp`]);
    await devSignInInBrowser(printed, 'ada@example.com', (consent) => {
      expect(consent).toContain('/alpha');
      expect(consent).toContain('/beta');
    });
    await connected;
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(['alpha__add', 'alpha__big', 'alpha__echo', 'alpha__slow', ...BETA_TOOLS]);
    expect(await client.callTool({ name: 'beta__echo', arguments: { text: 'via beta' } })).toEqual({ content: [{ type: 'text', text: 'via beta' }] });
    expect(await client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 2 } })).toEqual({ content: [{ type: 'text', text: '3' }] });
    expect(stderr().match(/sign in to/g)).toHaveLength(1);
    expect(stderr()).not.toContain('skipping');

    // The gateway restarts with a new signing key: every cached token now gets a 401. Each
    // route's token is renewed with the refresh token (no second sign-in), and the sessions
    // carry on from their stored records.
    stack = await restartWith(stack, gatewayYaml());
    expect(await client.callTool({ name: 'beta__echo', arguments: { text: 'after rotation' } })).toEqual({ content: [{ type: 'text', text: 'after rotation' }] });
    expect(await client.callTool({ name: 'alpha__add', arguments: { a: 2, b: 3 } })).toEqual({ content: [{ type: 'text', text: '5' }] });
    expect(stderr().match(/sign in to/g)).toHaveLength(1);
    await client.close();
  }, 60_000);
});

describe.skipIf(skip)('connect --all with routes the user may not use', () => {
  let stack: StackProcess | undefined;
  afterEach(async () => void (await stack?.stop()));

  it('skips the first route when the user may not use it, naming it on stderr, and serves the second', async () => {
    stack = await startStackProcess({ yaml: gatewayYaml({ alpha: CAROL_ONLY }) });
    const { client, connected, stderr } = connectAll(stack.baseUrl, mkdtempSync(join(tmpdir(), 'mcp-front-all-')));
    await devSignInInBrowser(await printedSignInUrl(stderr), 'ada@example.com', (consent) => {
      expect(consent).toContain('/beta');
      expect(consent).not.toContain('/alpha');
    });
    await connected;
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(BETA_TOOLS);
    expect(await client.callTool({ name: 'beta__echo', arguments: { text: 'via beta' } })).toEqual({ content: [{ type: 'text', text: 'via beta' }] });
    expect(stderr().match(/^mcp-front connect: skipping .*$/gm)).toEqual(["mcp-front connect: skipping /alpha: you don't have access to this route"]);
    expect(stderr().match(/sign in to/g)).toHaveLength(1);
    await client.close();
  }, 60_000);

  it('a route taken away while running answers its calls with why; the other carries on, and a restart skips it', async () => {
    stack = await startStackProcess({ yaml: gatewayYaml({ alpha: ADA_ONLY }) });
    const dir = mkdtempSync(join(tmpdir(), 'mcp-front-all-'));
    const first = connectAll(stack.baseUrl, dir);
    await devSignInInBrowser(await printedSignInUrl(first.stderr), 'ada@example.com');
    await first.connected;
    expect(await first.client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 2 } })).toEqual({ content: [{ type: 'text', text: '3' }] });

    stack = await restartWith(stack, gatewayYaml({ alpha: CAROL_ONLY }));
    const refused = await first.client.callTool({ name: 'alpha__add', arguments: { a: 2, b: 3 } });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/^mcp-front connect: \/alpha: you no longer have access to this route \(.*ada@example\.com is not on the access list of \/alpha/);
    expect(await first.client.callTool({ name: 'beta__echo', arguments: { text: 'still here' } })).toEqual({ content: [{ type: 'text', text: 'still here' }] });
    expect((await first.client.listTools()).tools.map((t) => t.name).sort()).toEqual(BETA_TOOLS);
    await first.client.close();

    const again = connectAll(stack.baseUrl, dir);
    await again.connected;
    expect((await again.client.listTools()).tools.map((t) => t.name).sort()).toEqual(BETA_TOOLS);
    expect(again.stderr()).toMatch(/^mcp-front connect: skipping \/alpha: you no longer have access to this route/m);
    expect(again.stderr()).not.toContain('sign in to');
    await again.client.close();
  }, 90_000);

  it('when the user may use none of the routes, the browser says so and the bridge exits non-zero with one line', async () => {
    stack = await startStackProcess({ yaml: gatewayYaml({ alpha: CAROL_ONLY, beta: CAROL_ONLY }) });
    const run = connectAllUntilExit(stack.baseUrl, mkdtempSync(join(tmpdir(), 'mcp-front-all-')), { MCP_FRONT_SIGNIN_TIMEOUT: '5' });
    const browser = await launchBrowser();
    try {
      const page = await (await browser.newContext()).newPage();
      await page.goto(await printedSignInUrl(run.stderr));
      await Promise.all([page.waitForLoadState(), page.fill('input[name="email"]', 'ada@example.com').then(() => page.click('button[type="submit"]'))]);
      await page.waitForFunction(() => document.title.includes('No access'));
      expect(await page.content()).toContain('ada@example.com is not on the access list of /alpha');
    } finally {
      await browser.closeAll();
    }
    const { code, stderr } = await run.exit;
    expect(code).toBe(1);
    expect(stderr.trimEnd().split('\n').at(-1)).toBe('mcp-front: no sign-in within 5 s; if your browser shows "No access to this MCP server", you may use none of these routes');
    expect(stderr).not.toMatch(/^\s+at /m);
  }, 60_000);

  it('when the grant no longer opens any route, the bridge exits non-zero with one line and no new sign-in', async () => {
    stack = await startStackProcess({ yaml: gatewayYaml({ alpha: CAROL_ONLY }) });
    const dir = mkdtempSync(join(tmpdir(), 'mcp-front-all-'));
    const first = connectAll(stack.baseUrl, dir);
    await devSignInInBrowser(await printedSignInUrl(first.stderr), 'ada@example.com');
    await first.connected;
    await first.client.close();

    stack = await restartWith(stack, gatewayYaml({ alpha: CAROL_ONLY, beta: CAROL_ONLY }));
    const { code, stderr } = await connectAllUntilExit(stack.baseUrl, dir).exit;
    expect(code).toBe(1);
    const reasons = "/alpha: you don't have access to this route; /beta: you no longer have access to this route \\(.*ada@example\\.com is not on the access list of /beta.*\\)";
    expect(stderr).toMatch(new RegExp(`^mcp-front: you don't have access to any route of ${stack.baseUrl} \\(${reasons}\\)\\n$`));
    expect(stderr).not.toContain('sign in to');
  }, 60_000);
});
