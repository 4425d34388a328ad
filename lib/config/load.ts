import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { namesItsContainer } from '../mcp/session-container.ts';
import { configSchema } from './schema.ts';
import { isLoopbackHost, type CloudRunSettings, type Config, type RouteConfig, type UserCredentialConfig, type UserOAuthConfig } from './config.ts';

/** A user error in the configuration: printed as is, never with a stack trace. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
}

type Env = Readonly<Record<string, string | undefined>>;

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces ${VAR} (and ${VAR:-default}) in every string of the parsed YAML. A variable set
 * nowhere is an error, unless `unset` is given: then it stays as written and its name is added.
 */
export function interpolate(value: unknown, env: Env, path = '', unset?: Set<string>): unknown {
  if (typeof value === 'string') {
    return value.replace(VARIABLE, (match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      if (unset) {
        unset.add(name);
        return match;
      }
      throw new ConfigError(`${path || 'config'}: environment variable ${name} is not set`);
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, `${path}[${i}]`, unset));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, path ? `${path}.${k}` : k, unset)]));
  }
  return value;
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)), '');
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issuePath(issue.path);
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => `${where ? `${where}.` : ''}${k}: unknown key`).join('\n');
      }
      if (issue.code === 'invalid_union' && 'discriminator' in issue) {
        return `${where.endsWith('type') ? where : `${where}.type`}: must be "stdio" or "http"`;
      }
      return `${where || 'config'}: ${issue.message}`;
    })
    .join('\n');
}

/**
 * Parses YAML text into a validated, frozen Config. With `unset`, a ${VAR} set nowhere stays a
 * literal placeholder (named in `unset`): for commands that read only the config's shape, such
 * as doctor's route list, where secrets live in Secret Manager and not here.
 */
export function parseConfig(text: string, env: Env = process.env, source = '<inline>', unset?: Set<string>): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true, logLevel: 'error' });
  } catch (err) {
    // The yaml library throws YAMLParseError for syntax, but plain errors for some documents
    // (an unresolved alias is a ReferenceError): every one of them is the user's file.
    const message = err instanceof YAMLParseError || err instanceof Error ? err.message : String(err);
    throw new ConfigError(`${source}: not valid YAML: ${message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: must be a YAML mapping with oauth, routes and server`);
  let interpolated: unknown;
  try {
    interpolated = interpolate(raw, env, '', unset);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${source}: ${err.message}`);
    throw err;
  }
  const result = configSchema.safeParse(interpolated);
  if (!result.success) throw new ConfigError(`${source}: invalid configuration\n${describeIssues(result.error)}`);
  const c = result.data;

  const issuerHost = new URL(c.oauth.issuer).hostname;
  if (c.oauth.provider === 'dev' && !isLoopbackHost(issuerHost)) {
    throw new ConfigError(`${source}: oauth.provider: "dev" signs anyone in and is only allowed when the issuer is on loopback (issuer host is ${issuerHost})`);
  }
  if (['google', 'github', 'oidc'].includes(c.oauth.provider) && (!c.oauth.client_id || !c.oauth.client_secret)) {
    throw new ConfigError(`${source}: oauth.client_id and oauth.client_secret are required for provider "${c.oauth.provider}"`);
  }
  // Checking Google Groups needs the Cloud Identity API with admin consent: not built yet. A
  // setting that restricts access must never be silently ignored.
  if (c.oauth.allowed_groups.length) throw new ConfigError(`${source}: oauth.allowed_groups is not supported yet; use allowed_domains and allowed_emails`);
  if (c.oauth.provider === 'oidc' && !c.oauth.oidc_issuer) throw new ConfigError(`${source}: oauth.oidc_issuer is required for provider "oidc"`);
  if (c.server.insecure_no_auth && !isLoopbackHost(issuerHost)) {
    throw new ConfigError(`${source}: server.insecure_no_auth: only allowed when the issuer is on loopback (it turns sign-in off)`);
  }
  const seen = new Set<string>();
  c.routes.forEach((r, i) => {
    if (seen.has(r.path)) throw new ConfigError(`${source}: routes[${i}].path: "${r.path}" is used by another route`);
    seen.add(r.path);
    // Only GitHub's API can prove an org membership: with another provider the list would lock everyone out.
    if (r.access?.github_orgs.length && c.oauth.provider !== 'github') throw new ConfigError(`${source}: routes[${i}].access.github_orgs: only provider "github" can prove an organisation membership`);
    if (r.type === 'stdio' && r.command && namesItsContainer(r.command)) {
      throw new ConfigError(`${source}: routes[${i}].command: drop --name: every session runs its own container, which mcp-front names (mcp-front-<session>) so it can remove it when the session ends`);
    }
    if (r.user_credential && r.user_oauth) throw new ConfigError(`${source}: routes[${i}]: user_credential and user_oauth exclude each other (the route gets one credential per user)`);
    if (r.user_credential) checkUserCredential(r, r.user_credential, `${source}: routes[${i}].user_credential`, c.server.insecure_no_auth);
    if (r.user_oauth) {
      checkUserCredential(r, r.user_oauth, `${source}: routes[${i}].user_oauth`, c.server.insecure_no_auth);
      const o = r.user_oauth;
      if (!o.issuer && !(o.authorization_endpoint && o.token_endpoint)) throw new ConfigError(`${source}: routes[${i}].user_oauth: needs issuer (its endpoints are discovered) or both authorization_endpoint and token_endpoint`);
    }
    if (r.type === 'http' && r.dev_backend && !isLoopbackHost(issuerHost)) {
      throw new ConfigError(`${source}: routes[${i}].dev_backend: only allowed when the issuer is on loopback`);
    }
  });

  const routes: RouteConfig[] = c.routes.map((r) => {
    const common = {
      path: r.path,
      name: r.path.slice(1),
      ...(r.access ? { access: { emails: lower(r.access.emails), domains: lower(r.access.domains), githubOrgs: lower(r.access.github_orgs) } } : {}),
      ...(r.tools ? { tools: { ...(r.tools.allow ? { allow: r.tools.allow } : {}), deny: r.tools.deny } } : {}),
      ...(r.user_credential ? { userCredential: userCredential(r.user_credential) } : {}),
      ...(r.user_oauth ? { userCredential: userOAuth(r.user_oauth) } : {}),
      timeout: r.timeout,
      idleTimeout: r.idle_timeout,
      maxSessionsPerUser: r.max_sessions_per_user,
      maxSessionsPerInstance: r.max_sessions_per_instance ?? DEFAULT_SESSIONS_PER_INSTANCE[r.type],
      cloudRun: cloudRunSettings(r.cloud_run),
    };
    if (r.type === 'stdio') {
      return { ...common, type: 'stdio', command: r.command ?? [], environment: r.environment, inheritEnv: r.inherit_env, image: r.image };
    }
    return {
      ...common,
      type: 'http',
      backend: r.backend,
      headers: r.headers,
      googleIdTokenAudience: r.google_id_token_audience,
      identity: r.identity,
      backendService: r.backend_service,
      devBackend: r.dev_backend,
    };
  });

  const o = c.oauth;
  return deepFreeze({
    source,
    oauth: {
      issuer: o.issuer,
      gcpProject: o.gcp_project,
      provider: o.provider,
      clientId: o.client_id,
      clientSecret: o.client_secret,
      oidcIssuer: o.oidc_issuer,
      githubUrl: o.github_url.replace(/\/$/, ''),
      githubApiUrl: o.github_api_url.replace(/\/$/, ''),
      allowedDomains: o.allowed_domains.map((d) => d.toLowerCase()),
      allowedEmails: o.allowed_emails.map((e) => e.toLowerCase()),
      allowedGroups: o.allowed_groups,
      allowedOrgs: o.allowed_orgs,
      allowedLogins: o.allowed_logins,
      tokenTtl: o.token_ttl,
      refreshTtl: o.refresh_ttl,
      refreshGrace: o.refresh_grace,
      codeTtl: o.code_ttl,
      sessionTtl: o.session_ttl,
      consentTtl: o.consent_ttl,
      upstreamRecheck: o.upstream_recheck,
      registration: o.registration,
      extraRedirectUris: o.extra_redirect_uris,
      storage: o.storage,
      dataDir: o.data_dir,
      firestoreDatabase: o.firestore_database,
      sessionsDatabase: o.sessions_database,
      scopes: o.scopes,
      rateLimits: o.rate_limits,
    },
    routes,
    server: { host: c.server.host, port: c.server.port, healthPath: c.server.health_path, requestTimeout: c.server.request_timeout, streamTimeout: c.server.stream_timeout, sessionLease: c.server.session_lease, trustedProxies: c.server.trusted_proxies, allowedOrigins: c.server.allowed_origins, insecureNoAuth: c.server.insecure_no_auth },
    deploy: { region: c.deploy.region, repository: c.deploy.repository, secrets: c.deploy.secrets, functionMinInstances: c.deploy.function_min_instances },
  });
}

type ParsedRoute = z.output<typeof configSchema>['routes'][number];
type ParsedUserCredential = NonNullable<ParsedRoute['user_credential']>;

/** Headers the gateway itself sets on a backend request (or the transport needs): a user's credential never stands in for one. */
const GATEWAY_HEADERS = ['x-mcp-front-assertion', 'mcp-session-id', 'mcp-protocol-version', 'accept', 'content-type', 'content-length', 'host', 'last-event-id', 'transfer-encoding', 'connection'];

function checkUserCredential(r: ParsedRoute, credential: { env: string } | { header: string }, where: string, noAuth: boolean): void {
  if (noAuth) throw new ConfigError(`${where}: needs sign-in, and server.insecure_no_auth turns it off`);
  if ('env' in credential && r.type === 'stdio' && Object.keys(r.environment).includes(credential.env)) {
    throw new ConfigError(`${where}.env: ${credential.env} is also in environment; the user's credential would replace it`);
  }
  if ('header' in credential && r.type === 'http') {
    const name = credential.header.split(':')[0]!.toLowerCase();
    if (GATEWAY_HEADERS.includes(name)) throw new ConfigError(`${where}.header: ${name} is set by the gateway`);
    if (name === 'authorization' && r.google_id_token_audience) throw new ConfigError(`${where}.header: Authorization carries the Google ID token of google_id_token_audience`);
    if (Object.keys(r.headers).some((h) => h.toLowerCase() === name)) throw new ConfigError(`${where}.header: ${name} is also in headers; the user's credential would replace it`);
  }
}

function userCredential(c: ParsedUserCredential): UserCredentialConfig {
  const common = { label: c.label, instructions: c.instructions, ...(c.help_url ? { helpUrl: c.help_url } : {}), ...(c.pattern ? { pattern: c.pattern } : {}) };
  if ('env' in c) return { ...common, inject: { kind: 'env', name: c.env } };
  const colon = c.header.indexOf(':');
  return { ...common, inject: { kind: 'header', name: c.header.slice(0, colon), template: c.header.slice(colon + 1).trimStart() } };
}

type ParsedUserOAuth = NonNullable<ParsedRoute['user_oauth']>;

function userOAuth(c: ParsedUserOAuth): UserCredentialConfig {
  const label = c.label ?? `${new URL(c.issuer ?? c.authorization_endpoint!).host} account`;
  const oauth: UserOAuthConfig = {
    ...(c.issuer ? { issuer: c.issuer.replace(/\/$/, '') } : {}),
    ...(c.authorization_endpoint ? { authorizationEndpoint: c.authorization_endpoint } : {}),
    ...(c.token_endpoint ? { tokenEndpoint: c.token_endpoint } : {}),
    ...(c.revocation_endpoint ? { revocationEndpoint: c.revocation_endpoint } : {}),
    clientId: c.client_id,
    clientSecret: c.client_secret,
    scopes: c.scopes,
  };
  const common = { label, instructions: `After Allow, you sign in to your ${label} and let this gateway use it; then you come back here.`, oauth };
  if ('env' in c) return { ...common, inject: { kind: 'env', name: c.env } };
  const colon = c.header.indexOf(':');
  return { ...common, inject: { kind: 'header', name: c.header.slice(0, colon), template: c.header.slice(colon + 1).trimStart().replaceAll('{token}', '{credential}') } };
}

const lower = (values: readonly string[]) => values.map((v) => v.toLowerCase());

/** A stdio session is a child process (tens of MiB); an http session is a little bookkeeping. */
const DEFAULT_SESSIONS_PER_INSTANCE = { stdio: 16, http: 1000 } as const;

function cloudRunSettings(c: { min_instances: number; max_instances: number; concurrency: number; cpu: string; memory?: string }): CloudRunSettings {
  return { minInstances: c.min_instances, maxInstances: c.max_instances, concurrency: c.concurrency, cpu: c.cpu, memory: c.memory };
}

/** Reads and parses a config file; every failure is a ConfigError naming the file. */
export function loadConfig(file: string, env: Env = process.env, unset?: Set<string>): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return parseConfig(text, env, file, unset);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
