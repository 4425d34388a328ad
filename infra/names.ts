import { createHash } from 'node:crypto';
import type { Config, RouteConfig } from '../lib/config/config.ts';
import { ConfigError } from '../lib/config/load.ts';

// Names of the Google Cloud resources a config turns into, and the checks that must pass
// before anything is created: a plan that fails half-way is worse than no plan.

/** Cloud Run's limit on a service name (it becomes part of a DNS label). */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$/;
/** Cloud Run's maximum request timeout. */
export const MAX_CLOUD_RUN_TIMEOUT_MS = 60 * 60 * 1000;

export const FUNCTION_NAME = 'mcp-front-oauth';
/** The Functions Framework target the authorization server exports (functions/index.ts). */
export const FUNCTION_TARGET = 'oauth';
/** Every build (the function's and each route image's) runs as this account, with roles/run.builder only. */
export const BUILD_ACCOUNT_ID = 'mcp-front-build';
/** Cloud Run's request limit: routes get it whole (streams end themselves before it, server.stream_timeout). */
export const SERVICE_TIMEOUT_S = 3600;
export const SIGNING_KEY_SECRET = 'mcp-front-signing-key';
/** The identity-assertion key (lib/tokens/keys.ts): read by the oauth function (to publish it) and the http routes with `identity: assertion`, nothing else. */
export const ASSERTION_KEY_SECRET = 'mcp-front-assertion-key';
/** Seals users' own credentials at rest (lib/tokens/credential-keys.ts): the oauth function alone reads it. */
export const SEALING_KEY_SECRET = 'mcp-front-sealing-key';

/** A credential route's own key: the oauth function (which seals for it) and that route read it, nothing else. */
export function credentialKeySecret(route: Pick<RouteConfig, 'name'>): string {
  return `mcp-front-credential-key-${route.name}`;
}

export const LB = {
  address: 'mcp-front-ip',
  urlMap: 'mcp-front-url-map',
  redirectMap: 'mcp-front-http-redirect',
  certificate: 'mcp-front-cert',
  httpsProxy: 'mcp-front-https-proxy',
  httpProxy: 'mcp-front-http-proxy',
  httpsRule: 'mcp-front-https',
  httpRule: 'mcp-front-http',
} as const;

export function serviceName(route: Pick<RouteConfig, 'name'>): string {
  return `mcp-route-${route.name}`;
}

/** Service account ids are 6–30 characters: long route names keep a prefix and a stable hash. */
function accountId(base: string): string {
  if (base.length <= 30) return base;
  const hash = createHash('sha256').update(base).digest('hex').slice(0, 6);
  return `${base.slice(0, 23).replace(/-+$/, '')}-${hash}`;
}

export function serviceAccount(project: string, owner: 'oauth' | RouteConfig): string {
  const id = owner === 'oauth' ? 'mcp-front-oauth' : accountId(`mcp-route-${owner.name}`);
  return `${id}@${project}.iam.gserviceaccount.com`;
}

export function negName(owner: 'oauth' | RouteConfig): string {
  return owner === 'oauth' ? 'mcp-front-oauth-neg' : `${serviceName(owner)}-neg`;
}

export function backendServiceName(owner: 'oauth' | RouteConfig): string {
  return owner === 'oauth' ? 'mcp-front-oauth-backend' : `${serviceName(owner)}-backend`;
}

export function buildAccount(project: string): string {
  return `${BUILD_ACCOUNT_ID}@${project}.iam.gserviceaccount.com`;
}

/** How Cloud Build and `run deploy --build-service-account` name an account. */
export function accountResource(project: string, email: string): string {
  return `projects/${project}/serviceAccounts/${email}`;
}

/**
 * Memory for a route's instance unless the YAML sets it: a stdio session is a child process
 * (budgeted at 48 MiB each, on top of 256 MiB for the bridge); an http session is bookkeeping.
 */
export function routeMemory(route: RouteConfig): string {
  if (route.cloudRun.memory) return route.cloudRun.memory;
  if (route.type === 'http') return '512Mi';
  return `${Math.ceil((256 + 48 * route.maxSessionsPerInstance) / 256) * 256}Mi`;
}

export function imageName(config: Config, project: string, route: RouteConfig): string {
  return `${config.deploy.region}-docker.pkg.dev/${project}/${config.deploy.repository}/${serviceName(route)}:latest`;
}

/** Everything about the config that Google Cloud would refuse, reported together, before any command runs. */
export function checkDeployable(config: Config): { project: string; domain: string } {
  const problems: string[] = [];
  const project = config.oauth.gcpProject;
  if (!project) problems.push('oauth.gcp_project: required to deploy (the Google Cloud project id)');
  const issuer = new URL(config.oauth.issuer);
  if (issuer.protocol !== 'https:') problems.push(`oauth.issuer: must be https to deploy behind the load balancer (is ${config.oauth.issuer})`);
  if (issuer.pathname !== '/') problems.push('oauth.issuer: must be an origin without a path: the load balancer serves the authorization server at the root');
  if (config.oauth.provider === 'dev') problems.push('oauth.provider: "dev" is for local work; choose google, github or oidc');
  if (config.oauth.clientSecret !== undefined && !Object.keys(config.deploy.secrets).length) {
    problems.push('oauth.client_secret: write it as ${VAR} and map VAR to a Secret Manager secret under deploy.secrets, so it never sits in plain text in the service config');
  }
  config.routes.forEach((route, i) => {
    const where = `routes[${i}]`;
    if (!SERVICE_NAME.test(serviceName(route))) {
      problems.push(`${where}.path: "${route.path}" makes the Cloud Run service name "${serviceName(route)}", which must be at most 49 lowercase letters, digits or dashes, starting with a letter`);
    }
    // Under, not at: a call timing out at 60m would race Cloud Run cutting the connection, and the client would get a broken stream instead of the error.
    if (route.timeout >= MAX_CLOUD_RUN_TIMEOUT_MS) problems.push(`${where}.timeout: must be under 60m (Cloud Run's limit per request), so a call that runs out is answered before Cloud Run cuts it`);
    if (route.type === 'stdio' && route.command[0] && /(^|\/)(docker|podman)$/.test(route.command[0])) {
      problems.push(`${where}.command: "${route.command[0]}" starts a container, and a Cloud Run instance has no container engine: name the server's image as ${where}.image (its entrypoint is the server) instead`);
    }
    if (route.type === 'http' && route.googleIdTokenAudience && !route.backendService) {
      problems.push(`${where}.backend_service: name the private backend's Cloud Run service ({ name, region }) so the plan can let this route invoke it (roles/run.invoker on that service only)`);
    }
    if (route.type === 'stdio' && route.command.length === 0 && !route.image) problems.push(`${where}: a stdio route needs a command or an image`);
    if (route.type === 'http' && !route.backend) problems.push(`${where}.backend: required to deploy (dev_backend is local only)`);
    if (route.type === 'http' && route.backend && new URL(route.backend).protocol !== 'https:') problems.push(`${where}.backend: must be https outside local work`);
  });
  if (config.server.streamTimeout >= MAX_CLOUD_RUN_TIMEOUT_MS) problems.push('server.stream_timeout: must be under 60m, so streams end themselves before Cloud Run cuts them');
  if (problems.length) throw new ConfigError(`${config.source}: cannot deploy\n${problems.join('\n')}`);
  return { project: project!, domain: issuer.hostname };
}
