import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { formPost, hiddenField, registerPublicClient, send } from '../support/oauth-client.ts';
import { startStackProcess, type StackProcess } from '../support/stack-process.ts';

// `@modelcontextprotocol/conformance authorization` against the gateway's authorization server
// (a real `serve` process): the metadata endpoint and the authorization code grant. The suite
// prints the authorization URL and waits on its own loopback callback; the user's part (dev
// sign-in, consent) is played by plain HTTP here, and the redirect is delivered to the suite.

const SUITE = join(import.meta.dirname, '../../node_modules/@modelcontextprotocol/conformance/dist/index.js');

let stack: StackProcess;
beforeAll(async () => {
  stack = await startStackProcess();
}, 30_000);
afterAll(async () => stack?.stop());

/** Plays the user: follows the authorization URL through sign-in and consent, then hands the redirect to the suite's callback. */
async function actAsUser(authorizeUrl: string, callbackPrefix: string): Promise<void> {
  let cookie = '';
  const go = async (path: string, init: RequestInit = {}) => {
    const res = await send(stack.baseUrl, path, { ...init, headers: { ...(init.headers as Record<string, string>), origin: stack.baseUrl, ...(cookie ? { cookie } : {}) } });
    const set = res.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0]!;
    return res;
  };
  let res = await go(authorizeUrl);
  for (let step = 0; step < 6; step++) {
    const location = res.headers.get('location');
    if (location?.startsWith(callbackPrefix)) return void (await fetch(location)).arrayBuffer();
    if (location) {
      res = await go(location);
      continue;
    }
    const html = await res.text();
    if (html.includes('name="email"')) res = await go('/signin', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), email: 'ada@example.com' }));
    else if (html.includes('name="decision"')) res = await go('/consent', formPost({ request: hiddenField(html, 'request'), csrf: hiddenField(html, 'csrf'), decision: 'allow' }));
    else throw new Error(`unexpected page (HTTP ${res.status}): ${html.slice(0, 200)}`);
  }
  throw new Error('the authorization did not come back to the suite');
}

describe('MCP conformance, authorization server scenarios', () => {
  it('passes the metadata endpoint and the authorization code grant', async () => {
    const port = await freePort();
    const callback = `http://127.0.0.1:${port}/callback`;
    const clientId = await registerPublicClient(stack.baseUrl, callback);
    const suite = spawn(process.execPath, [SUITE, 'authorization', '--url', stack.baseUrl, '--client-id', clientId, '--resource', `${stack.baseUrl}/demo/mcp`, '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    suite.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    suite.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
    const exited = new Promise<number | null>((resolve) => suite.once('exit', resolve));
    try {
      for (let i = 0; i < 300 && !(/\/authorize\?\S+/.test(output) && output.includes('Callback server started')); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      await actAsUser(/(http\S+\/authorize\?\S+)/.exec(output)![1]!, callback);
      await exited;
    } finally {
      suite.kill();
    }
    const summary = output.slice(output.indexOf('=== SUMMARY ==='));
    console.log(summary);
    expect(summary).toMatch(/✓ authorization-server-metadata-endpoint: \d+ passed, 0 failed/);
    expect(summary).toMatch(/✓ authorization-code-grant: 1 passed, 0 failed/);
    expect(summary).toMatch(/Total: \d+ passed, 0 failed/);
  }, 60_000);
});
