// The typed, frozen configuration every part of mcp-front reads. Built once by load.ts.

export type ProviderKind = 'google' | 'github' | 'oidc' | 'dev';

export interface OAuthConfig {
  readonly issuer: string;
  readonly gcpProject?: string;
  readonly provider: ProviderKind;
  readonly clientId?: string;
  readonly clientSecret?: string;
  readonly oidcIssuer?: string;
  readonly githubUrl: string;
  readonly githubApiUrl: string;
  readonly allowedDomains: readonly string[];
  readonly allowedEmails: readonly string[];
  readonly allowedGroups: readonly string[];
  readonly allowedOrgs: readonly string[];
  readonly allowedLogins: readonly string[];
  /** All durations are milliseconds. */
  readonly tokenTtl: number;
  readonly refreshTtl: number;
  readonly refreshGrace: number;
  /** ms; see upstream_recheck in the schema. */
  readonly upstreamRecheck: number;
  readonly registration: 'open' | 'presets';
  readonly extraRedirectUris: readonly string[];
  readonly codeTtl: number;
  readonly sessionTtl: number;
  readonly consentTtl: number;
  readonly storage: 'sqlite' | 'firestore';
  readonly dataDir: string;
  readonly firestoreDatabase: string;
  /** Firestore database of the MCP session records (route services open only this one). */
  readonly sessionsDatabase: string;
  readonly scopes: readonly string[];
  /** Requests per minute per client IP. */
  readonly rateLimits: { readonly register: number; readonly authorize: number; readonly token: number };
}

/** Who may use a route besides passing the global allow-lists: a match in any list admits. All lowercase. */
export interface RouteAccess {
  readonly emails: readonly string[];
  readonly domains: readonly string[];
  readonly githubOrgs: readonly string[];
}

/** Which tools a route shows and lets be called: name patterns (`*`, `?`); deny wins. */
export interface ToolPolicyConfig {
  /** Undefined: every tool not denied. */
  readonly allow?: readonly string[];
  readonly deny: readonly string[];
}

/**
 * Each user's own credential for the route's service (lib/oauth/user-credentials.ts): asked for
 * at consent, stored sealed, carried to the route sealed for it alone inside the access token.
 */
export interface UserCredentialConfig {
  readonly label: string;
  readonly instructions: string;
  readonly helpUrl?: string;
  /** The whole credential must match (anchored). */
  readonly pattern?: string;
  /** stdio: an environment variable of the session's child; http: a header on every backend request. */
  readonly inject: { readonly kind: 'env'; readonly name: string } | { readonly kind: 'header'; readonly name: string; readonly template: string };
  /**
   * routes[].user_oauth: the credential is the access token of the user's own account at the
   * service, connected through its OAuth server instead of typed in (lib/oauth/service-accounts.ts).
   * The route itself can't tell: it gets a token like any other user credential.
   */
  readonly oauth?: UserOAuthConfig;
}

/** The service's OAuth server, as routes[].user_oauth names it. Endpoints given win over discovered ones. */
export interface UserOAuthConfig {
  readonly issuer?: string;
  readonly authorizationEndpoint?: string;
  readonly tokenEndpoint?: string;
  /** RFC 7009; otherwise the discovered one, if the service has one. */
  readonly revocationEndpoint?: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
}

interface RouteCommon {
  /** "/notion": the URL prefix, and (without the slash) the route's name. */
  readonly path: string;
  readonly name: string;
  /** Undefined: everyone the global allow-lists admit. */
  readonly access?: RouteAccess;
  /** Undefined: every tool of the server. */
  readonly tools?: ToolPolicyConfig;
  /** Undefined: the route's users bring no credential of their own (typed in, or an OAuth account: `oauth`). */
  readonly userCredential?: UserCredentialConfig;
  readonly timeout: number;
  readonly idleTimeout: number;
  readonly maxSessionsPerUser: number;
  /** Past this many live sessions, an instance answers 503 with Retry-After. */
  readonly maxSessionsPerInstance: number;
  readonly cloudRun: CloudRunSettings;
}

/** How Cloud Run runs a route's service (`deploy` only). */
export interface CloudRunSettings {
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly concurrency: number;
  readonly cpu: string;
  /** Undefined: derived from the route's sessions per instance when deploying. */
  readonly memory?: string;
}

export interface DeployConfig {
  readonly region: string;
  readonly repository: string;
  /** Environment variables (named in the config as ${VAR}) that come from Secret Manager: VAR → secret. */
  readonly secrets: Readonly<Record<string, string>>;
  readonly functionMinInstances: number;
}

export interface StdioRouteConfig extends RouteCommon {
  readonly type: 'stdio';
  /** Empty when only `image` is given: on Cloud Run the image's entrypoint is the command. */
  readonly command: readonly string[];
  readonly environment: Readonly<Record<string, string>>;
  readonly inheritEnv: readonly string[];
  readonly image?: string;
}

export interface HttpRouteConfig extends RouteCommon {
  readonly type: 'http';
  /** Absent only while a dev_backend has not been started yet. */
  readonly backend?: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly googleIdTokenAudience?: string;
  /** assertion: every backend request carries a signed statement of who the user is (lib/tokens/identity-assertion.ts). */
  readonly identity: 'none' | 'assertion';
  readonly backendService?: { readonly name: string; readonly region: string; readonly project?: string };
  readonly devBackend?: { readonly command: readonly string[]; readonly path: string };
}

export type RouteConfig = StdioRouteConfig | HttpRouteConfig;

export interface ServerConfig {
  readonly host: string;
  readonly port: number;
  readonly healthPath: string;
  /** ms */
  readonly requestTimeout: number;
  /** ms; GET and legacy SSE streams end (with a retry hint) after this. */
  readonly streamTimeout: number;
  /** ms; a route instance silent this long is gone: its sessions may be taken over (services/route/ownership.ts). */
  readonly sessionLease: number;
  /** Proxy hops whose X-Forwarded-For entries are believed (lib/http/client-ip.ts). */
  readonly trustedProxies: number;
  readonly allowedOrigins: readonly string[];
  /** Conformance testing only (loopback issuers): routes take requests without a token. */
  readonly insecureNoAuth: boolean;
}

export interface Config {
  readonly oauth: OAuthConfig;
  readonly routes: readonly RouteConfig[];
  readonly server: ServerConfig;
  readonly deploy: DeployConfig;
  /** Where the config was read from, for messages. */
  readonly source: string;
}

/** True for hosts that never leave the machine: the only ones `provider: dev` may run on. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The config has an http route that sends identity assertions: the assertion key must exist and be published. */
export function needsAssertionKey(config: Pick<Config, 'routes'>): boolean {
  return config.routes.some((r) => r.type === 'http' && r.identity === 'assertion');
}

/** The routes whose users each bring their own credential. */
export function credentialRoutes(config: Pick<Config, 'routes'>): RouteConfig[] {
  return config.routes.filter((r) => r.userCredential !== undefined);
}

/** The URLs a client may name as the RFC 8707 resource of a route, canonical form first. */
export function routeResources(issuer: string, route: Pick<RouteConfig, 'path'>): string[] {
  const base = issuer + route.path;
  return [`${base}/mcp`, base, `${base}/sse`];
}
