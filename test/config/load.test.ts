import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError, parseConfig } from '../../lib/config/load.ts';
import { parseDuration } from '../../lib/config/duration.ts';

const base = `
oauth:
  issuer: http://127.0.0.1:8080
routes:
  - path: /db
    type: stdio
    command: [node, server.js]
    environment: { DATABASE_URL: "\${DATABASE_URL}" }
    timeout: 5m
  - path: /notion
    type: http
    backend: https://notion.example.com/mcp
`;

function errorOf(text: string, env: Record<string, string> = { DATABASE_URL: 'postgres://x' }): string {
  try {
    parseConfig(text, env, 'test.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['3600', 3_600_000],
    [3600, 3_600_000],
    ['250ms', 250],
    ['30d', 2_592_000_000],
  ])('reads %s as %d ms', (input, ms) => expect(parseDuration(input)).toBe(ms));

  it.each(['', '5x', 'm5', '1h 30m', '-5s', 'five'])('refuses %j', (input) => expect(parseDuration(input)).toBeUndefined());
});

describe('parseConfig', () => {
  it('reads the seed schema into typed milliseconds and defaults', () => {
    const config = parseConfig(base, { DATABASE_URL: 'postgres://db' });
    expect(config.oauth.provider).toBe('dev');
    expect(config.oauth.tokenTtl).toBe(3_600_000);
    expect(config.oauth.refreshGrace).toBe(60_000);
    expect(config.routes[0]).toMatchObject({ name: 'db', type: 'stdio', timeout: 300_000, environment: { DATABASE_URL: 'postgres://db' } });
    expect(config.routes[1]).toMatchObject({ name: 'notion', type: 'http', backend: 'https://notion.example.com/mcp' });
    expect(config.server).toEqual({ host: '127.0.0.1', port: 8080, requestTimeout: 30_000, streamTimeout: 55 * 60_000, sessionLease: 30_000, trustedProxies: 0, healthPath: '/health', allowedOrigins: [], insecureNoAuth: false });
    expect(Object.isFrozen(config.oauth.allowedDomains)).toBe(true);
  });

  it('names the missing environment variable and where it is used', () => {
    expect(errorOf(base, {})).toBe('test.yaml: routes[0].environment.DATABASE_URL: environment variable DATABASE_URL is not set');
  });

  it('uses ${VAR:-default} when the variable is unset', () => {
    const config = parseConfig(base.replace('${DATABASE_URL}', '${DATABASE_URL:-sqlite://local}'), {});
    expect((config.routes[0] as { environment: Record<string, string> }).environment.DATABASE_URL).toBe('sqlite://local');
  });

  it.each([
    ['an unknown key', base.replace('timeout: 5m', 'timout: 5m'), 'routes[0].timout: unknown key'],
    ['a bad duration', base.replace('timeout: 5m', 'timeout: 5 minutes'), 'routes[0].timeout: "5 minutes" is not a duration'],
    ['an unknown route type', base.replace('type: http', 'type: grpc'), 'routes[1].type: must be "stdio" or "http"'],
    ['an http route without backend', base.replace('    backend: https://notion.example.com/mcp\n', ''), 'routes[1].backend: an http route needs a backend URL'],
    ['a non-http backend', base.replace('https://notion.example.com/mcp', 'ftp://notion.example.com'), 'routes[1].backend:'],
    ['a duplicate path', base.replace('path: /notion', 'path: /db'), 'routes[1].path: "/db" is used by another route'],
    ['a reserved path', base.replace('path: /notion', 'path: /token'), 'routes[1].path: is reserved'],
    ['an uppercase path', base.replace('path: /notion', 'path: /Notion'), 'routes[1].path: must be "/" followed by lowercase'],
    ['a stdio route without command', base.replace('    command: [node, server.js]\n', ''), 'routes[0].command:'],
    ['an issuer with a trailing slash', base.replace('8080', '8080/'), 'oauth.issuer: must not end with "/"'],
    ['a bad port', base + 'server:\n  port: http\n', 'server.port:'],
    ['a negative number of trusted proxies', base + 'server:\n  trusted_proxies: -1\n', 'server.trusted_proxies:'],
    ['a fractional number of trusted proxies', base + 'server:\n  trusted_proxies: 1.5\n', 'server.trusted_proxies:'],
    ['an unknown provider', base.replace('oauth:\n', 'oauth:\n  provider: okta\n'), 'oauth.provider:'],
    ['invalid YAML', 'oauth: [', 'not valid YAML'],
    ['a YAML list instead of a mapping', '- a\n- b\n', 'must be a YAML mapping'],
  ])('refuses %s, naming the key path', (_name, text, expected) => {
    expect(errorOf(text)).toContain(expected);
  });

  it('reads server.trusted_proxies: the proxy hops whose X-Forwarded-For entries are believed', () => {
    expect(parseConfig(base + 'server:\n  trusted_proxies: 2\n', { DATABASE_URL: 'x' }).server.trustedProxies).toBe(2);
  });

  it('refuses the dev sign-in on a public issuer', () => {
    expect(errorOf(base.replace('http://127.0.0.1:8080', 'https://mcp.example.com'))).toContain('oauth.provider: "dev" signs anyone in and is only allowed when the issuer is on loopback');
  });

  it('refuses allowed_groups rather than ignore a restriction it cannot check', () => {
    expect(errorOf(base.replace('  issuer: http://127.0.0.1:8080', '  issuer: http://127.0.0.1:8080\n  allowed_groups: [eng@example.com]'))).toContain('oauth.allowed_groups is not supported yet');
  });

  it('requires upstream client credentials for google', () => {
    expect(errorOf(base.replace('http://127.0.0.1:8080', 'https://mcp.example.com\n  provider: google'))).toContain('oauth.client_id and oauth.client_secret are required');
  });

  it('loads the bundled local example with no environment', () => {
    const config = parseConfig(readFileSync('examples/local.yaml', 'utf8'), {});
    expect(config.oauth.issuer).toBe('http://127.0.0.1:8080');
    expect(config.routes.map((r) => `${r.path}:${r.type}`)).toEqual(['/demo:stdio', '/demo-http:http']);
  });
});

describe('insecure_no_auth', () => {
  it('is refused for a non-loopback issuer', () => {
    expect(() => parseConfig('oauth:\n  issuer: https://mcp.example.com\n  provider: google\n  client_id: a\n  client_secret: b\nserver:\n  insecure_no_auth: true\n', {})).toThrow('server.insecure_no_auth: only allowed when the issuer is on loopback');
  });
});

describe('company controls (routes[].access, tools, identity)', () => {
  const withRoutes = (routes: string, oauth = '') => `oauth:\n  issuer: http://127.0.0.1:8080\n${oauth}routes:\n${routes}`;

  it('reads access lists (lowercased), a tool policy and identity: assertion', () => {
    const config = parseConfig(
      withRoutes(
        '  - { path: /db, type: stdio, command: [x], access: { emails: [Ada@Example.com], domains: [Example.COM] }, tools: { allow: ["read_*"], deny: [read_secrets] } }\n' +
          '  - { path: /crm, type: http, backend: "https://crm.example.com/mcp", identity: assertion, tools: { deny: ["delete_*"] } }\n' +
          '  - { path: /open, type: http, backend: "https://open.example.com/mcp" }\n',
      ),
      {},
    );
    const [db, crm, open] = config.routes;
    expect(db).toMatchObject({ access: { emails: ['ada@example.com'], domains: ['example.com'], githubOrgs: [] }, tools: { allow: ['read_*'], deny: ['read_secrets'] } });
    expect(crm).toMatchObject({ identity: 'assertion', tools: { deny: ['delete_*'] } });
    expect(crm!.tools!.allow).toBeUndefined();
    expect(crm!.access).toBeUndefined();
    expect(open).toMatchObject({ identity: 'none' });
    expect(open!.tools).toBeUndefined();
  });

  it.each([
    ['an empty access list', '  - { path: /db, type: stdio, command: [x], access: {} }\n', '', 'routes[0].access: needs at least one of emails, domains or github_orgs'],
    ['github_orgs without the GitHub provider', '  - { path: /db, type: stdio, command: [x], access: { github_orgs: [acme] } }\n', '', 'routes[0].access.github_orgs: only provider "github" can prove'],
    ['an empty allow list', '  - { path: /db, type: stdio, command: [x], tools: { allow: [] } }\n', '', 'routes[0].tools.allow: must name at least one pattern'],
    ['a tool pattern with a space', '  - { path: /db, type: stdio, command: [x], tools: { deny: ["rm -rf"] } }\n', '', 'routes[0].tools.deny[0]: is not a tool name pattern'],
    ['identity on a stdio route', '  - { path: /db, type: stdio, command: [x], identity: assertion }\n', '', 'routes[0].identity: unknown key'],
    ['an unknown identity mode', '  - { path: /crm, type: http, backend: "https://c.example.com/mcp", identity: token }\n', '', 'routes[0].identity:'],
    ['an environment that sets the user variables', '  - { path: /db, type: stdio, command: [x], environment: { MCP_FRONT_USER_EMAIL: boss@example.com } }\n', '', 'routes[0].environment: MCP_FRONT_USER_* are set by the gateway'],
    ['an unknown key under access', '  - { path: /db, type: stdio, command: [x], access: { groups: [eng] } }\n', '', 'routes[0].access.groups: unknown key'],
  ])('refuses %s', (_name, routes, oauth, message) => {
    expect(errorOf(withRoutes(routes, oauth))).toContain(message);
  });

  it('accepts github_orgs with the GitHub provider', () => {
    const config = parseConfig(withRoutes('  - { path: /db, type: stdio, command: [x], access: { github_orgs: [Acme-Ops] } }\n', '  provider: github\n  client_id: a\n  client_secret: b\n'), {});
    expect(config.routes[0]!.access).toEqual({ emails: [], domains: [], githubOrgs: ['acme-ops'] });
  });
});

describe('routes[].user_credential', () => {
  const withRoutes = (routes: string, server = '') => `oauth:\n  issuer: http://127.0.0.1:8080\nroutes:\n${routes}${server}`;
  const common = 'label: Notion key, instructions: "Settings → Integrations"';

  it('reads an env credential for stdio and a header credential for http, the pattern kept as written', () => {
    const config = parseConfig(
      withRoutes(
        `  - { path: /db, type: stdio, command: [x], user_credential: { ${common}, help_url: "https://notion.example/keys", pattern: "secret_[A-Za-z0-9]+", env: NOTION_KEY } }\n` +
          `  - { path: /crm, type: http, backend: "https://crm.example.com/mcp", user_credential: { ${common}, header: "Authorization: Bearer {credential}" } }\n` +
          `  - { path: /raw, type: http, backend: "https://raw.example.com/mcp", user_credential: { ${common}, header: "X-Api-Key:{credential}" } }\n`,
      ),
      {},
    );
    const [db, crm, raw] = config.routes;
    expect(db!.userCredential).toEqual({ label: 'Notion key', instructions: 'Settings → Integrations', helpUrl: 'https://notion.example/keys', pattern: 'secret_[A-Za-z0-9]+', inject: { kind: 'env', name: 'NOTION_KEY' } });
    expect(crm!.userCredential!.inject).toEqual({ kind: 'header', name: 'Authorization', template: 'Bearer {credential}' });
    expect(raw!.userCredential!.inject).toEqual({ kind: 'header', name: 'X-Api-Key', template: '{credential}' });
  });

  it.each([
    ['a header on a stdio route', `  - { path: /db, type: stdio, command: [x], user_credential: { ${common}, header: "A: {credential}" } }\n`, 'routes[0].user_credential.header: unknown key'],
    ['an env on an http route', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", user_credential: { ${common}, env: KEY } }\n`, 'routes[0].user_credential.env: unknown key'],
    ['no env on a stdio route', `  - { path: /db, type: stdio, command: [x], user_credential: { ${common} } }\n`, 'routes[0].user_credential.env'],
    ['a header template without {credential}', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", user_credential: { ${common}, header: "Authorization: Bearer x" } }\n`, 'routes[0].user_credential.header: must be "Header-Name: value"'],
    ['a header name with a space', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", user_credential: { ${common}, header: "Api Key: {credential}" } }\n`, 'routes[0].user_credential.header: must be'],
    ['a header the gateway sets', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", user_credential: { ${common}, header: "X-MCP-Front-Assertion: {credential}" } }\n`, 'routes[0].user_credential.header: x-mcp-front-assertion is set by the gateway'],
    ['a header also in headers', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", headers: { x-api-key: k }, user_credential: { ${common}, header: "X-Api-Key: {credential}" } }\n`, 'is also in headers'],
    ['Authorization with a Google ID token', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", google_id_token_audience: a, user_credential: { ${common}, header: "Authorization: Bearer {credential}" } }\n`, 'carries the Google ID token'],
    ['an env also in environment', `  - { path: /db, type: stdio, command: [x], environment: { KEY: fixed }, user_credential: { ${common}, env: KEY } }\n`, 'routes[0].user_credential.env: KEY is also in environment'],
    ['an env of the gateway', `  - { path: /db, type: stdio, command: [x], user_credential: { ${common}, env: MCP_FRONT_USER_EMAIL } }\n`, "MCP_FRONT_* names are the gateway's own"],
    ['a pattern that is not a regular expression', `  - { path: /db, type: stdio, command: [x], user_credential: { ${common}, pattern: "([a-z]", env: KEY } }\n`, 'routes[0].user_credential.pattern: is not a valid regular expression'],
    ['a help_url that is not https', `  - { path: /db, type: stdio, command: [x], user_credential: { ${common}, help_url: "javascript:alert(1)", env: KEY } }\n`, 'routes[0].user_credential.help_url'],
    ['no label', `  - { path: /db, type: stdio, command: [x], user_credential: { instructions: x, env: KEY } }\n`, 'routes[0].user_credential.label'],
  ])('refuses %s', (_name, routes, message) => {
    expect(errorOf(withRoutes(routes))).toContain(message);
  });

  it('refuses user_credential with sign-in turned off', () => {
    expect(errorOf(withRoutes(`  - { path: /db, type: stdio, command: [x], user_credential: { ${common}, env: KEY } }\n`, 'server:\n  insecure_no_auth: true\n'))).toContain('routes[0].user_credential: needs sign-in');
  });

  it('reserves /account for the authorization server', () => {
    expect(errorOf(withRoutes('  - { path: /account, type: stdio, command: [x] }\n'))).toContain('routes[0].path: is reserved for the authorization server');
  });
});

describe('routes[].user_oauth', () => {
  const withRoutes = (routes: string) => `oauth:\n  issuer: http://127.0.0.1:8080\nroutes:\n${routes}`;
  const common = 'client_id: gw, client_secret: "${SVC_SECRET}", scopes: [repo, read]';

  it('reads an issuer to discover and the route\'s own credential delivery: {token} in the header, the secret from the environment', () => {
    const config = parseConfig(
      withRoutes(
        `  - { path: /gh, type: http, backend: "https://gh.example.com/mcp", user_oauth: { issuer: "https://auth.example.com/", ${common}, header: "Authorization: Bearer {token}" } }\n` +
          `  - { path: /db, type: stdio, command: [x], user_oauth: { label: Warehouse account, authorization_endpoint: "https://wh.example.com/oauth/authorize", token_endpoint: "https://wh.example.com/oauth/token", revocation_endpoint: "https://wh.example.com/oauth/revoke", ${common}, env: WH_TOKEN } }\n`,
      ),
      { SVC_SECRET: 's3cret' },
    );
    const [gh, db] = config.routes;
    expect(gh!.userCredential).toMatchObject({ label: 'auth.example.com account', inject: { kind: 'header', name: 'Authorization', template: 'Bearer {credential}' }, oauth: { issuer: 'https://auth.example.com', clientId: 'gw', clientSecret: 's3cret', scopes: ['repo', 'read'] } });
    expect(db!.userCredential).toMatchObject({ label: 'Warehouse account', inject: { kind: 'env', name: 'WH_TOKEN' }, oauth: { authorizationEndpoint: 'https://wh.example.com/oauth/authorize', tokenEndpoint: 'https://wh.example.com/oauth/token', revocationEndpoint: 'https://wh.example.com/oauth/revoke' } });
  });

  it.each([
    ['neither an issuer nor both endpoints', `  - { path: /db, type: stdio, command: [x], user_oauth: { token_endpoint: "https://a.example/t", ${common}, env: T } }\n`, 'routes[0].user_oauth: needs issuer'],
    ['an http revocation_endpoint', `  - { path: /db, type: stdio, command: [x], user_oauth: { issuer: "https://a.example", revocation_endpoint: "http://a.example/revoke", ${common}, env: T } }\n`, 'routes[0].user_oauth.revocation_endpoint'],
    ['an http issuer', `  - { path: /db, type: stdio, command: [x], user_oauth: { issuer: "http://a.example", ${common}, env: T } }\n`, 'routes[0].user_oauth.issuer'],
    ['both user_credential and user_oauth', `  - { path: /db, type: stdio, command: [x], user_credential: { label: k, instructions: i, env: K }, user_oauth: { issuer: "https://a.example", ${common}, env: T } }\n`, 'user_credential and user_oauth exclude each other'],
    ['a header without {token}', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", user_oauth: { issuer: "https://a.example", ${common}, header: "Authorization: Bearer {credential}" } }\n`, 'routes[0].user_oauth.header: must be'],
    ['a header the gateway sets', `  - { path: /c, type: http, backend: "https://c.example.com/mcp", user_oauth: { issuer: "https://a.example", ${common}, header: "Mcp-Session-Id: {token}" } }\n`, 'routes[0].user_oauth.header: mcp-session-id is set by the gateway'],
    ['an env also in environment', `  - { path: /db, type: stdio, command: [x], environment: { T: x }, user_oauth: { issuer: "https://a.example", ${common}, env: T } }\n`, 'routes[0].user_oauth.env: T is also in environment'],
    ['no client_secret', `  - { path: /db, type: stdio, command: [x], user_oauth: { issuer: "https://a.example", client_id: gw, env: T } }\n`, 'routes[0].user_oauth.client_secret'],
  ])('refuses %s', (_name, routes, message) => {
    expect(errorOf(withRoutes(routes), { SVC_SECRET: 's' })).toContain(message);
  });

  it('reserves /connect (the service accounts\' callback) for the authorization server', () => {
    expect(errorOf(withRoutes('  - { path: /connect, type: stdio, command: [x] }\n'))).toContain('routes[0].path: is reserved for the authorization server');
  });
});
