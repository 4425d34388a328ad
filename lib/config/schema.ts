import { z } from 'zod';
import { parseDuration } from './duration.ts';
import { OAUTH_PATHS } from '../urlmap.ts';

// The YAML schema: the seed's, extended. Every object is strict so a typo is an error
// that names its path instead of a setting silently ignored.

const duration = z
  .union([z.string(), z.number()])
  .transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration (use e.g. 30s, 5m, 1h, 30d or seconds)` });
      return z.NEVER;
    }
    return ms;
  });

/** What a route may not be called: the authorization server's paths (the one list, urlmap.ts) and /health. */
const RESERVED_PATHS: readonly string[] = [...new Set(OAUTH_PATHS.map((p) => `/${p.split('/')[1]}`)), '/health'];

const routePath = z
  .string()
  .regex(/^\/[a-z0-9][a-z0-9-]{0,48}$/, 'must be "/" followed by lowercase letters, digits and dashes (it names a Cloud Run service)')
  .refine((p) => !p.endsWith('-'), 'must not end with a dash')
  .refine((p) => !RESERVED_PATHS.includes(p), 'is reserved for the authorization server');

const environment = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not an environment variable name'), z.string());

/** How Cloud Run runs the route's service; ignored by `serve`. */
const cloudRun = z
  .object({
    min_instances: z.number().int().min(0).default(0),
    max_instances: z.number().int().min(1).default(10),
    /** Concurrent requests per instance; SSE streams hold one each, so keep it high. */
    concurrency: z.number().int().min(1).max(1000).default(250),
    cpu: z.string().regex(/^\d+(\.\d+)?$|^\d+m$/, 'must be a CPU count like 1 or 500m').default('1'),
    /** Absent: derived from max_sessions_per_instance (stdio: a child per session) — see infra/names.ts. */
    memory: z.string().regex(/^\d+(Mi|Gi)$/, 'must be like 512Mi or 2Gi').optional(),
  })
  .strict()
  .prefault({});

/**
 * Who may use a route, on top of the global allow-lists: anyone matching one of the lists.
 * Judged on what the provider proved at sign-in (and at each re-check), like the global lists.
 */
const routeAccess = z
  .object({
    emails: z.array(z.string().min(1)).default([]),
    /** Google: the Workspace domain (hd claim); other providers: the verified email's domain. */
    domains: z.array(z.string().min(1)).default([]),
    /** provider: github only: an active membership, checked through the API like allowed_orgs. */
    github_orgs: z.array(z.string().min(1)).default([]),
  })
  .strict()
  .refine((a) => a.emails.length + a.domains.length + a.github_orgs.length > 0, 'needs at least one of emails, domains or github_orgs (leave access out to let everyone the global lists admit in)');

/** Tool names as patterns: `*` any run of characters, `?` one character, everything else literal. */
const toolPattern = z.string().regex(/^[A-Za-z0-9_\-.\/:*?]{1,128}$/, 'is not a tool name pattern (letters, digits, _ - . / : and the wildcards * ?)');

/** Which of the server's tools the route shows and lets be called; deny wins over allow. */
const toolPolicy = z
  .object({
    allow: z.array(toolPattern).min(1, 'must name at least one pattern (leave allow out to allow every tool)').optional(),
    deny: z.array(toolPattern).default([]),
  })
  .strict();

/** A regular expression the whole credential must match (anchored at load). */
const credentialPattern = z.string().min(1).max(1000).refine((p) => {
  try {
    new RegExp(p, 'u');
    return true;
  } catch {
    return false;
  }
}, 'is not a valid regular expression');

/**
 * Each user's own credential for the route's service (an API key, a personal token): asked for
 * on the consent page, kept sealed, given to the user's own sessions only.
 */
const userCredentialCommon = {
  /** What the credential is called on the consent and account pages, e.g. "Notion API key". */
  label: z.string().min(1).max(100),
  /** Where to get it, in a sentence or two (shown as text, never as markup). */
  instructions: z.string().min(1).max(2000),
  help_url: z.url({ protocol: /^https$/ }).optional(),
  pattern: credentialPattern.optional(),
};

const stdioUserCredential = z
  .object({
    ...userCredentialCommon,
    /** The environment variable the session's server gets it in. */
    env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not an environment variable name')
      .refine((n) => !n.startsWith('MCP_FRONT_'), 'MCP_FRONT_* names are the gateway\'s own'),
  })
  .strict();

const httpUserCredential = z
  .object({
    ...userCredentialCommon,
    /** The header every backend request of the user's sessions carries, e.g. "Authorization: Bearer {credential}". */
    header: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+: ?[\x20-\x7e]*\{credential\}[\x20-\x7e]*$/, 'must be "Header-Name: value" with {credential} in the value, e.g. "Authorization: Bearer {credential}"'),
  })
  .strict();

/**
 * Each user's own OAuth account at the route's service: after our consent the user is sent to
 * the service's authorization endpoint (code + PKCE), and the service's access token (renewed
 * with its refresh token) reaches the route as a user_credential would.
 */
const userOAuthCommon = {
  /** What the account is called on the consent and account pages; default "<host> account". */
  label: z.string().min(1).max(100).optional(),
  /** Discovered by RFC 8414, then OpenID Connect Discovery; the endpoints below override it. */
  issuer: z.url({ protocol: /^https$/ }).optional(),
  authorization_endpoint: z.url({ protocol: /^https$/ }).optional(),
  token_endpoint: z.url({ protocol: /^https$/ }).optional(),
  /** RFC 7009: where Disconnect revokes the user's tokens; discovered (`revocation_endpoint`) when not given. */
  revocation_endpoint: z.url({ protocol: /^https$/ }).optional(),
  client_id: z.string().min(1),
  client_secret: z.string().min(1),
  scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'is not an OAuth scope')).default([]),
};

const credentialEnv = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not an environment variable name')
  .refine((n) => !n.startsWith('MCP_FRONT_'), 'MCP_FRONT_* names are the gateway\'s own');

const stdioUserOAuth = z.object({ ...userOAuthCommon, env: credentialEnv }).strict();

const httpUserOAuth = z
  .object({
    ...userOAuthCommon,
    header: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+: ?[\x20-\x7e]*\{token\}[\x20-\x7e]*$/, 'must be "Header-Name: value" with {token} in the value, e.g. "Authorization: Bearer {token}"'),
  })
  .strict();

const routeCommon = {
  path: routePath,
  access: routeAccess.optional(),
  tools: toolPolicy.optional(),
  timeout: duration.prefault('5m'),
  idle_timeout: duration.prefault('15m'),
  max_sessions_per_user: z.number().int().positive().default(20),
  /** Sessions one instance holds before answering 503 + Retry-After, so Cloud Run scales out instead of running out of memory. */
  max_sessions_per_instance: z.number().int().positive().optional(),
  cloud_run: cloudRun,
};

const stdioRoute = z
  .object({
    ...routeCommon,
    type: z.literal('stdio'),
    /** Optional when `image` is given: on Cloud Run the image's own entrypoint and cmd are the command. */
    command: z.array(z.string().min(1)).min(1, 'needs the program to run').optional(),
    environment: environment.refine((env) => !Object.keys(env).some((name) => name.startsWith('MCP_FRONT_USER_')), 'MCP_FRONT_USER_* are set by the gateway (the session\'s user)').default({}),
    /** Names of the gateway's own environment variables the child may see (nothing else is inherited). */
    inherit_env: z.array(z.string()).default([]),
    user_credential: stdioUserCredential.optional(),
    user_oauth: stdioUserOAuth.optional(),
    /** The stdio server's container image, for `deploy` (the bridge is layered onto it). */
    image: z.string().regex(/^[a-z0-9][a-z0-9._\/:@-]*$/, 'is not a container image reference').optional(),
  })
  .strict()
  .refine((r) => r.command !== undefined || r.image !== undefined, { message: 'a stdio route needs a command (or an image whose entrypoint is the server)', path: ['command'] });

const httpRoute = z
  .object({
    ...routeCommon,
    type: z.literal('http'),
    backend: z.url({ protocol: /^https?$/ }).optional(),
    headers: z.record(z.string(), z.string()).default({}),
    /** Authenticate to a private Cloud Run backend with a Google-signed ID token for this audience. */
    google_id_token_audience: z.string().optional(),
    /** The private backend's Cloud Run service, so `deploy` can let this route's account invoke it (roles/run.invoker on that service only). */
    backend_service: z
      .object({ name: z.string().regex(/^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$/, 'is not a Cloud Run service name'), region: z.string().regex(/^[a-z]+-[a-z]+\d+$/, 'is not a Google Cloud region'), project: z.string().optional() })
      .strict()
      .optional(),
    /** assertion: each request to the backend carries a short-lived JWT saying who the user is (X-MCP-Front-Assertion), signed with the gateway's assertion key. */
    identity: z.enum(['none', 'assertion']).default('none'),
    user_credential: httpUserCredential.optional(),
    user_oauth: httpUserOAuth.optional(),
    /** Local work only: `serve` starts this backend itself, on a free loopback port passed as $PORT. */
    dev_backend: z.object({ command: z.array(z.string().min(1)).min(1), path: z.string().default('/mcp') }).strict().optional(),
  })
  .strict()
  .refine((r) => r.backend !== undefined || r.dev_backend !== undefined, { message: 'an http route needs a backend URL (or a dev_backend for local work)', path: ['backend'] });

const route = z.discriminatedUnion('type', [stdioRoute, httpRoute]);

export const configSchema = z
  .object({
    oauth: z
      .object({
        issuer: z.url({ protocol: /^https?$/ }).refine((u) => !u.endsWith('/'), 'must not end with "/"'),
        gcp_project: z.string().optional(),
        provider: z.enum(['google', 'github', 'oidc', 'dev']).default('dev'),
        client_id: z.string().optional(),
        client_secret: z.string().optional(),
        oidc_issuer: z.url().optional(),
        /** GitHub Enterprise, or a stand-in in tests: the web and API base URLs. */
        github_url: z.url({ protocol: /^https?$/ }).default('https://github.com'),
        github_api_url: z.url({ protocol: /^https?$/ }).default('https://api.github.com'),
        allowed_domains: z.array(z.string().min(1)).default([]),
        allowed_emails: z.array(z.string().min(1)).default([]),
        allowed_groups: z.array(z.string().min(1)).default([]),
        allowed_orgs: z.array(z.string().min(1)).default([]),
        allowed_logins: z.array(z.string().min(1)).default([]),
        token_ttl: duration.prefault('1h'),
        refresh_ttl: duration.prefault('30d'),
        refresh_grace: duration.prefault('60s'),
        code_ttl: duration.prefault('60s'),
        session_ttl: duration.prefault('12h'),
        /** A user's Allow is remembered this long; then the consent page asks again. Apart from refresh_ttl, so a short refresh_ttl doesn't mean daily consent pages. */
        consent_ttl: duration.prefault('90d'),
        /** A refresh asks the upstream provider about the user again once this long has passed since it last did. */
        upstream_recheck: duration.prefault('5m'),
        storage: z.enum(['sqlite', 'firestore']).default('sqlite'),
        data_dir: z.string().default('.data'),
        firestore_database: z.string().default('(default)'),
        /** Firestore: MCP session records live in their own database, the only one route services may touch (their stdio servers can reach the route's credentials). */
        sessions_database: z.string().default('mcp-sessions'),
        /** open: any valid redirect URI may register (DCR, metadata documents); presets: only known clients', loopback and extra_redirect_uris. */
        registration: z.enum(['open', 'presets']).default('open'),
        extra_redirect_uris: z.array(z.url()).default([]),
        /** Requests per minute per client IP on the open endpoints (counted in the store). */
        rate_limits: z
          .object({ register: z.number().int().positive().default(30), authorize: z.number().int().positive().default(60), token: z.number().int().positive().default(300) })
          .strict()
          .prefault({}),
        scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/)).default(['mcp']),
      })
      .strict(),
    routes: z.array(route).default([]),
    /** Where and how `mcp-front deploy` puts the gateway on Google Cloud. */
    deploy: z
      .object({
        region: z.string().regex(/^[a-z]+-[a-z]+\d+$/, 'is not a Google Cloud region like europe-west1').default('us-central1'),
        /** Artifact Registry repository (Docker) for the stdio routes' images. */
        repository: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/).default('mcp-front'),
        /** Environment variables the config refers to that live in Secret Manager: VAR → secret name. */
        secrets: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not an environment variable name'), z.string().regex(/^[A-Za-z0-9_-]{1,255}$/, 'is not a secret name')).default({}),
        /** OAuth function settings. */
        function_min_instances: z.number().int().min(0).default(0),
      })
      .strict()
      .prefault({}),
    server: z
      .object({
        host: z.string().default('127.0.0.1'),
        // A string too, so `port: ${PORT:-8080}` works after interpolation.
        port: z.union([z.number(), z.string().regex(/^\d+$/, 'must be a port number').transform(Number)]).pipe(z.number().int().min(0).max(65535)).default(8080),
        health_path: z.string().regex(/^\/[A-Za-z0-9/_-]*$/).default('/health'),
        /** A request not fully received (headers and body) within this gets 408. */
        request_timeout: duration.prefault('30s'),
        /** GET and legacy SSE streams are ended (with a retry hint) after this, before Cloud Run's 60-minute request limit cuts them. */
        stream_timeout: duration.prefault('55m'),
        /**
         * A route instance not heard from for this long is gone, and the sessions it ran may be taken
         * over by another (services/route/ownership.ts). Renewed every third of it.
         */
        session_lease: duration.prefault('30s'),
        /**
         * Proxies in front of the gateway whose X-Forwarded-For entries are believed, counting the
         * socket peer as the first: 0 on a bare host, 1 on Cloud Run reached directly, 2 behind
         * Google's external load balancer. Too many lets a client choose its own address.
         */
        trusted_proxies: z.number().int().min(0).default(0),
        /** Browser origins allowed to call the MCP routes (the issuer's own origin always is). */
        allowed_origins: z.array(z.string()).default([]),
        /** Routes answer without a token. Only for the MCP conformance suite; refused unless the issuer is loopback. */
        insecure_no_auth: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
