import { isLoopbackHost, type Config } from '../lib/config/config.ts';
import { ConfigError, loadConfig } from '../lib/config/load.ts';

// `mcp-front doctor <url>`: checks a deployment from outside, the way Claude.ai and ChatGPT
// see it, and says how to fix each failure. Every check is one request a client really makes.

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail?: string;
  /** What to change when the check fails. */
  readonly fix?: string;
}

const TIMEOUT_MS = 10_000;

/**
 * The route paths of a config. Doctor reads nothing else from it, so a ${VAR} not set here (a
 * secret that only Secret Manager holds) stays a placeholder, and the note names it.
 */
export function configRoutes(file: string, env: Readonly<Record<string, string | undefined>>): { routes: string[]; note?: string } {
  const unset = new Set<string>();
  let config: Config;
  try {
    config = loadConfig(file, env, unset);
  } catch (err) {
    // A placeholder where the schema wants a URL or a number: say which variable it was.
    if (err instanceof ConfigError && unset.size) throw new ConfigError(`${err.message}\n(not set here: ${[...unset].join(', ')}; set them, or name the routes with --route)`);
    throw err;
  }
  const secrets: Readonly<Record<string, string>> = config.deploy.secrets;
  const names = [...unset].map((name) => (secrets[name] ? `${name} (secret ${secrets[name]})` : name));
  const note = `not set here, left as placeholders (doctor needs only the route paths): ${names.join(', ')}`;
  return { routes: config.routes.map((r) => r.path), ...(names.length ? { note } : {}) };
}

interface Fetched {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
}

async function get(url: string, init: RequestInit = {}): Promise<Fetched> {
  const res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the checks below say what they expected instead.
  }
  return { status: res.status, headers: res.headers, body };
}

const field = (body: unknown, name: string): unknown => (body && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined);

export async function runDoctor(base: string, routes: readonly string[]): Promise<Check[]> {
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, fix: string, detail?: string) => checks.push({ name, ok, fix: ok ? undefined : fix, detail });
  const origin = new URL(base).origin;
  const url = new URL(base);

  check('served over https', url.protocol === 'https:' || isLoopbackHost(url.hostname), 'put the load balancer\'s managed certificate in front (deploy does); clients refuse plain http off loopback');

  let metadata: Fetched | undefined;
  try {
    metadata = await get(`${origin}/.well-known/oauth-authorization-server`);
    check('TLS and reachability', true, '');
  } catch (err) {
    check('TLS and reachability', false, 'check DNS points at the load balancer IP and the managed certificate is ACTIVE (`gcloud compute ssl-certificates describe mcp-front-cert --global`)', String((err as Error).cause ?? err));
    return checks;
  }
  const issuer = field(metadata.body, 'issuer');
  check('authorization server metadata (RFC 8414)', metadata.status === 200 && typeof issuer === 'string', 'the URL map must send /.well-known/* to the oauth function', `HTTP ${metadata.status}`);
  check('metadata issuer equals the URL clients use', issuer === origin, `set oauth.issuer to exactly ${origin} (no trailing slash) and redeploy`, `issuer is ${JSON.stringify(issuer)}`);
  const methods = field(metadata.body, 'code_challenge_methods_supported');
  check('PKCE S256 advertised', Array.isArray(methods) && methods.includes('S256'), 'MCP clients refuse servers that do not advertise S256; upgrade the oauth function');
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'jwks_uri']) {
    const value = field(metadata.body, endpoint);
    check(`${endpoint} on the issuer's origin`, typeof value === 'string' && value.startsWith(`${origin}/`), `${endpoint} must be under ${origin}: the issuer or the load balancer's host rule is wrong`, String(value));
  }
  const alias = await get(`${origin}/.well-known/openid-configuration`).catch(() => undefined);
  check('OpenID configuration alias', alias?.status === 200 && field(alias.body, 'issuer') === origin, 'the URL map must send /.well-known/* to the oauth function');

  // What a browser-based client (MCP Inspector Direct mode, claude.ai's web app) meets first:
  // its discovery request carries MCP-Protocol-Version, so the browser asks with a preflight.
  const preflight = await get(`${origin}/.well-known/oauth-authorization-server`, {
    method: 'OPTIONS',
    headers: { origin: 'https://claude.ai', 'access-control-request-method': 'GET', 'access-control-request-headers': 'mcp-protocol-version' },
  }).catch(() => undefined);
  const allowOrigin = preflight?.headers.get('access-control-allow-origin');
  const allowHeaders = preflight?.headers.get('access-control-allow-headers')?.toLowerCase() ?? '';
  check(
    'browser clients: CORS preflight on the metadata',
    preflight?.status === 204 && (allowOrigin === '*' || allowOrigin === 'https://claude.ai') && /mcp-protocol-version|\*/.test(allowHeaders),
    'OPTIONS on /.well-known/* must answer 204 with Access-Control-Allow-Origin and allow MCP-Protocol-Version: upgrade the oauth function, and check nothing in front of it answers OPTIONS itself',
    preflight ? `HTTP ${preflight.status}, Access-Control-Allow-Origin ${JSON.stringify(allowOrigin)}` : 'no answer',
  );

  const jwksUri = field(metadata.body, 'jwks_uri');
  if (typeof jwksUri === 'string') {
    const jwks = await get(jwksUri).catch(() => undefined);
    const keys = field(jwks?.body, 'keys');
    check('signing keys published (JWKS)', Array.isArray(keys) && keys.length > 0, 'the oauth function could not load its signing key: check the mcp-front-signing-key secret and its accessor binding');
  }

  const registration = field(metadata.body, 'registration_endpoint');
  if (typeof registration === 'string') {
    const dcr = await get(registration, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'mcp-front doctor', redirect_uris: ['https://claude.ai/api/mcp/auth_callback'], token_endpoint_auth_method: 'none' }),
    }).catch(() => undefined);
    check('dynamic client registration (RFC 7591)', dcr?.status === 201 && typeof field(dcr.body, 'client_id') === 'string', 'Claude.ai and ChatGPT register themselves; /register must answer 201 (check the function logs)', dcr ? `HTTP ${dcr.status}` : 'no answer');
  }

  for (const route of routes) {
    const endpoint = `${origin}${route}/mcp`;
    const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'mcp-front-doctor', version: '1' } } });
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    // As a browser-based client on the issuer's own origin would send it, so CORS applies.
    const unauthenticated = await get(endpoint, { method: 'POST', headers: { ...headers, origin }, body: initialize }).catch(() => undefined);
    const challenge = unauthenticated?.headers.get('www-authenticate') ?? '';
    const prmUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1];
    check(`${route}: 401 with WWW-Authenticate resource_metadata`, unauthenticated?.status === 401 && prmUrl !== undefined, `the URL map must send ${route}/* to mcp-route-${route.slice(1)}, and the route must be deployed`, unauthenticated ? `HTTP ${unauthenticated.status} ${challenge}` : 'no answer');
    const exposed = unauthenticated?.headers.get('access-control-expose-headers')?.toLowerCase() ?? '';
    check(`${route}: CORS exposes WWW-Authenticate`, exposed.includes('www-authenticate'), 'browser clients cannot read the challenge; the route service must expose WWW-Authenticate and Mcp-Session-Id');
    if (prmUrl) {
      const prm = await get(prmUrl).catch(() => undefined);
      check(`${route}: protected resource metadata (RFC 9728)`, prm?.status === 200 && field(prm.body, 'resource') === endpoint, `${prmUrl} must answer with resource ${endpoint}: the URL map must send /.well-known/* to the oauth function, and ${route} must be in its config`, prm ? `HTTP ${prm.status}, resource ${JSON.stringify(field(prm.body, 'resource'))}` : 'no answer');
      const servers = field(prm?.body, 'authorization_servers');
      check(`${route}: names this issuer as its authorization server`, Array.isArray(servers) && servers.includes(origin), `authorization_servers must include ${origin}`);
    }
    const hostile = await get(endpoint, { method: 'POST', headers: { ...headers, origin: 'https://attacker.example' }, body: initialize }).catch(() => undefined);
    check(`${route}: refuses a foreign Origin (DNS rebinding)`, hostile?.status === 403, 'the route must answer 403 to browser origins that are not allowed (server.allowed_origins)', hostile ? `HTTP ${hostile.status}` : 'no answer');
  }
  return checks;
}

export function renderChecks(checks: readonly Check[]): string {
  const lines = checks.map((c) => `${c.ok ? '✓' : '✗'} ${c.name}${c.ok || !c.detail ? '' : ` (${c.detail})`}${c.fix ? `\n    fix: ${c.fix}` : ''}`);
  const failed = checks.filter((c) => !c.ok).length;
  lines.push(failed ? `${failed} of ${checks.length} checks failed` : `all ${checks.length} checks passed`);
  return lines.join('\n');
}
