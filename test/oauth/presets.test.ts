import { describe, expect, it } from 'vitest';
import { knownClientName } from '../../lib/oauth/presets.ts';
import { authorizeWithDevLogin, hiddenField, pkcePair, registerPublicClient, send } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from './support.ts';

// The clients people use work with no admin step, also when registration is limited to them
// (`registration: presets`); the consent page names a known client by its redirect address.

const DEMO = `${ISSUER}/demo/mcp`;
const PRESETS = [
  ['Claude', 'https://claude.ai/api/mcp/auth_callback'],
  ['Claude', 'https://claude.com/api/mcp/auth_callback'],
  ['ChatGPT', 'https://chatgpt.com/connector_platform_oauth_redirect'],
  ['ChatGPT', 'https://chatgpt.com/connector/oauth/c_8d2f3a'],
  ['MCP Inspector', 'http://localhost:6274/oauth/callback'],
  ['MCP Inspector', 'http://localhost:6274/oauth/callback/debug'],
  ['Claude Code or another local app', 'http://localhost:53682/callback'],
  ['Claude Code or another local app', 'http://127.0.0.1:40111/callback'],
] as const;

describe('known clients', () => {
  it.each(PRESETS)('%s: %s', (name, uri) => {
    expect(knownClientName(uri)).toBe(name);
  });

  it.each([
    'https://claude.ai.evil.example/api/mcp/auth_callback',
    'https://claude.ai/api/mcp/auth_callback/extra',
    'https://evil.example/?r=https://claude.ai/api/mcp/auth_callback',
    'https://chatgpt.com/connector/oauth/../../evil',
    'https://chatgpt.com/connector/oauth/x?next=https://evil.example',
    'http://chatgpt.com/connector_platform_oauth_redirect',
    'http://evil.example:6274/oauth/callback',
    'not a url',
  ])('does not vouch for %s', (uri) => {
    expect(knownClientName(uri)).toBeUndefined();
  });
});

describe('registration: presets', () => {
  const register = async (as: Awaited<ReturnType<typeof authorizationServer>>, uri: string) =>
    send(as, '/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: 'x', redirect_uris: [uri] }) });

  it.each(PRESETS)('a %s client (%s) registers and completes the whole flow with no admin step', async (_name, uri) => {
    const as = await authorizationServer('  registration: presets\n');
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO, redirectUri: uri });
    expect(tokens.accessToken).toBeTruthy();
  });

  it.each(['com.example.agent:/oauth', 'http://[::1]:9000/cb'])('native apps still register (RFC 8252): %s', async (uri) => {
    expect((await register(await authorizationServer('  registration: presets\n'), uri)).status).toBe(201);
  });

  it('refuses any other web redirect with invalid_redirect_uri that says how to allow it', async () => {
    const res = await register(await authorizationServer('  registration: presets\n'), 'https://agent.example/cb');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; error_description: string };
    expect(body.error).toBe('invalid_redirect_uri');
    expect(body.error_description).toContain('extra_redirect_uris');
  });

  it('allows what an administrator listed in extra_redirect_uris', async () => {
    const as = await authorizationServer('  registration: presets\n  extra_redirect_uris: [https://agent.example/cb]\n');
    expect((await register(as, 'https://agent.example/cb')).status).toBe(201);
    expect((await register(as, 'https://agent.example/cb2')).status).toBe(400);
  });

  it('is open by default: any valid https redirect registers', async () => {
    expect((await register(await authorizationServer(), 'https://agent.example/cb')).status).toBe(201);
  });
});

describe('the consent page', () => {
  async function consentHtml(redirectUri: string, clientName: string) {
    const as = await authorizationServer();
    const clientId = await registerPublicClient(as, redirectUri, clientName);
    const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: DEMO });
    const signin = await (await send(as, (await send(as, `/authorize?${q}`)).headers.get('location')!)).text();
    const form = new URLSearchParams({ request: hiddenField(signin, 'request'), csrf: hiddenField(signin, 'csrf'), email: 'ada@example.com' });
    const afterSignIn = await send(as, '/signin', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ISSUER }, body: form.toString() });
    const cookie = afterSignIn.headers.get('set-cookie')!.split(';')[0]!;
    return (await send(as, afterSignIn.headers.get('location')!, { headers: { cookie } })).text();
  }

  it('names a known client by its redirect address', async () => {
    expect(await consentHtml('https://claude.ai/api/mcp/auth_callback', 'Claude')).toContain('a known address of <strong>Claude</strong>');
  });

  it('does not vouch for a client that merely calls itself Claude', async () => {
    const html = await consentHtml('https://claude-helper.example/cb', 'Claude');
    expect(html).not.toContain('a known address');
    expect(html).toContain('claude-helper.example');
  });
});
