import { createHash, randomBytes } from 'node:crypto';

// The whole authorization code flow with the dev provider, by plain HTTP (no browser): what a
// test or benchmark needs to get real tokens from a running stack.

export interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  scope: string;
}

const REDIRECT = 'http://127.0.0.1:1/callback';

function field(html: string, name: string): string {
  const found = new RegExp(`name="${name}" value="([^"]+)"`).exec(html)?.[1];
  if (!found) throw new Error(`no ${name} in the page`);
  return found;
}

export async function registerClient(baseUrl: string, redirectUri = REDIRECT): Promise<string> {
  const res = await fetch(`${baseUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: 'flow', redirect_uris: [redirectUri] }) });
  if (res.status !== 201) throw new Error(`register: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { client_id: string }).client_id;
}

/** Signs in as `email` and returns tokens for `resource` (a route URL). Reuses `cookie` when given (one sign-in, many routes). */
export async function authorizeWithDevSignIn(baseUrl: string, options: { email: string; resource: string; clientId?: string; cookie?: { value?: string } }): Promise<Tokens & { clientId: string; code: string; verifier: string; redirectUri: string }> {
  const clientId = options.clientId ?? (await registerClient(baseUrl));
  const cookie = options.cookie ?? {};
  const verifier = randomBytes(32).toString('base64url');
  const go = async (url: string, init: RequestInit = {}) => {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), ...(cookie.value ? { cookie: cookie.value } : {}), origin: baseUrl } });
    const set = res.headers.get('set-cookie');
    if (set) cookie.value = set.split(';')[0];
    return res;
  };
  const form = (values: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(values).toString() });
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: 'flow',
    resource: options.resource,
  });
  let res = await go(`${baseUrl}/authorize?${query}`);
  for (let hops = 0; hops < 6; hops++) {
    const location = res.headers.get('location');
    if (res.status === 303 && location?.startsWith(REDIRECT)) {
      const code = new URL(location).searchParams.get('code');
      if (!code) throw new Error(`no code: ${location}`);
      const token = await fetch(`${baseUrl}/token`, { ...form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: clientId, code_verifier: verifier, resource: options.resource }) });
      if (token.status !== 200) throw new Error(`token: HTTP ${token.status} ${await token.text()}`);
      return { ...((await token.json()) as Tokens), clientId, code, verifier, redirectUri: REDIRECT };
    }
    if (res.status === 303 && location) {
      res = await go(location);
      continue;
    }
    const html = await res.text();
    const url = res.url || '';
    if (html.includes('name="email"')) res = await go(`${baseUrl}/signin`, form({ request: field(html, 'request'), csrf: field(html, 'csrf'), email: options.email }));
    else if (html.includes('name="decision"')) res = await go(`${baseUrl}/consent`, form({ request: field(html, 'request'), csrf: field(html, 'csrf'), decision: 'allow' }));
    else throw new Error(`unexpected page (HTTP ${res.status}) ${url}: ${html.slice(0, 300)}`);
  }
  throw new Error('too many steps in the authorization flow');
}

export async function refresh(baseUrl: string, clientId: string, refreshToken: string): Promise<Tokens> {
  const res = await fetch(`${baseUrl}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }).toString() });
  if (res.status !== 200) throw new Error(`refresh: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as Tokens;
}
