import { ServicesClient, type protos } from '@google-cloud/run';
import { OAuth2Client } from 'google-auth-library';
import type { Config, RouteConfig } from '../lib/config/config.ts';
import { checkDeployable, SERVICE_TIMEOUT_S, serviceAccount, serviceName } from '../infra/names.ts';
import { DeployError } from './deploy-error.ts';
import { gcloudAccessToken } from './gcloud-token.ts';

// `mcp-front status`: what Cloud Run is actually running for each route, and where it has
// drifted from the YAML (someone ran `gcloud run services update` by hand, or a deploy failed
// half-way). The Run Admin API is the only place @google-cloud/run is imported.

export interface RouteStatus {
  readonly route: string;
  readonly service: string;
  readonly state: 'ready' | 'not ready' | 'missing';
  readonly url?: string;
  readonly revision?: string;
  readonly traffic?: string;
  readonly drift: readonly string[];
}

export interface RunAdminOptions {
  /** A stand-in Run Admin API (tests): host:port, spoken over plain HTTP/JSON. */
  readonly apiEndpoint?: string;
  /** Something with google-auth-library's `fetch` (tests pass a client with a fixed token); default: gcloud's credentials. */
  readonly authClient?: unknown;
  /** Where gcloud's credentials are looked for (CLOUDSDK_AUTH_ACCESS_TOKEN, PATH). */
  readonly env?: NodeJS.ProcessEnv;
}

type Service = protos.google.cloud.run.v2.IService;

export async function routeStatuses(config: Config, options: RunAdminOptions = {}): Promise<RouteStatus[]> {
  const { project } = checkDeployable(config);
  const client = runClient(options.apiEndpoint, options.authClient ?? (await gcloudAuthClient(options.env)));
  try {
    return await Promise.all(config.routes.map((route) => statusOf(client, config, project, route)));
  } finally {
    await client.close();
  }
}

/** The same credentials as the rest of a deploy (gcloud's), never application-default ones. */
async function gcloudAuthClient(env?: NodeJS.ProcessEnv): Promise<OAuth2Client> {
  const client = new OAuth2Client();
  client.setCredentials({ access_token: await gcloudAccessToken('status', env) });
  return client;
}

function runClient(apiEndpoint: string | undefined, authClient: unknown): ServicesClient {
  if (!apiEndpoint) return new ServicesClient({ authClient: authClient as never });
  const [host, port] = apiEndpoint.split(':');
  return new ServicesClient({ apiEndpoint: host, port: Number(port), protocol: 'http', fallback: true, authClient: authClient as never });
}

async function statusOf(client: ServicesClient, config: Config, project: string, route: RouteConfig): Promise<RouteStatus> {
  const service = serviceName(route);
  let found: Service;
  try {
    [found] = await client.getService({ name: `projects/${project}/locations/${config.deploy.region}/services/${service}` });
  } catch (err) {
    if (isNotFound(err)) return { route: route.path, service, state: 'missing', drift: ['not deployed: run `mcp-front deploy --apply`'] };
    if (isRefused(err)) throw new DeployError(`status: Cloud Run refused the credentials (${reasonOf(err)}): run \`gcloud auth login\` as an account that can view ${project}, or set CLOUDSDK_AUTH_ACCESS_TOKEN`);
    throw err;
  }
  const traffic = (found.trafficStatuses ?? []).map((t) => `${t.percent ?? 0}% ${t.revision || 'latest'}`).join(', ');
  const ready = found.terminalCondition?.state === 'CONDITION_SUCCEEDED' || (found.terminalCondition?.state as unknown) === 2;
  return {
    route: route.path,
    service,
    state: ready ? 'ready' : 'not ready',
    url: found.uri ?? undefined,
    revision: found.latestReadyRevision?.split('/').pop(),
    traffic,
    drift: driftOf(found, config, project, route),
  };
}

/** NOT_FOUND as gRPC (code 5) or as the REST transport's HTTP 404. */
function isNotFound(err: unknown): boolean {
  const e = err as { code?: number | string; status?: number; response?: { status?: number } };
  return e.code === 5 || e.status === 404 || e.response?.status === 404;
}

/** The API's reason: gRPC's message as is, or the one inside the REST transport's JSON body. */
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return /"message":\s*"([^"]*)"/.exec(message)?.[1] ?? message.split('\n')[0]!;
}

/** UNAUTHENTICATED or PERMISSION_DENIED, as gRPC (16, 7) or as HTTP (401, 403). */
function isRefused(err: unknown): boolean {
  const e = err as { code?: number | string; status?: number; response?: { status?: number } };
  const status = e.status ?? e.response?.status;
  return e.code === 16 || e.code === 7 || status === 401 || status === 403;
}

function driftOf(found: Service, config: Config, project: string, route: RouteConfig): string[] {
  const drift: string[] = [];
  const want = (what: string, actual: unknown, expected: unknown) => {
    if (String(actual) !== String(expected)) drift.push(`${what} is ${String(actual)}, the config says ${String(expected)}`);
  };
  const template = found.template ?? {};
  const env = new Map((template.containers?.[0]?.env ?? []).map((e) => [e.name, e.value]));
  want('ingress', ingressName(found.ingress), 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER');
  want('MCP_FRONT_ROUTE', env.get('MCP_FRONT_ROUTE'), route.path);
  // The plan gives every route Cloud Run's whole request limit (streams outlast calls), not route.timeout.
  want('timeout', Number(template.timeout?.seconds ?? 0), SERVICE_TIMEOUT_S);
  want('concurrency', template.maxInstanceRequestConcurrency, route.cloudRun.concurrency);
  want('min instances', template.scaling?.minInstanceCount ?? 0, route.cloudRun.minInstances);
  want('max instances', template.scaling?.maxInstanceCount, route.cloudRun.maxInstances);
  want('service account', template.serviceAccount, serviceAccount(project, route));
  want('session affinity', Boolean(template.sessionAffinity), true);
  const latest = (found.trafficStatuses ?? []).some((t) => t.type === 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST' || (t.type as unknown) === 1);
  if (found.trafficStatuses?.length && !latest) drift.push('traffic is pinned to a revision, so new deploys do not serve');
  return drift;
}

function ingressName(value: unknown): string {
  // REST answers enum names; gRPC may answer numbers.
  const names = ['INGRESS_TRAFFIC_UNSPECIFIED', 'INGRESS_TRAFFIC_ALL', 'INGRESS_TRAFFIC_INTERNAL_ONLY', 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER', 'INGRESS_TRAFFIC_NONE'];
  return typeof value === 'number' ? (names[value] ?? String(value)) : String(value);
}

export function renderStatuses(statuses: readonly RouteStatus[]): string {
  const lines: string[] = [];
  for (const s of statuses) {
    lines.push(`${s.route}  ${s.service}  ${s.state}${s.revision ? `  ${s.revision}` : ''}${s.traffic ? `  (${s.traffic})` : ''}${s.url ? `  ${s.url}` : ''}`);
    for (const d of s.drift) lines.push(`  drift: ${d}`);
  }
  const drifted = statuses.filter((s) => s.drift.length).length;
  lines.push(drifted ? `${drifted} of ${statuses.length} routes differ from the config: run \`mcp-front deploy --apply\`` : `all ${statuses.length} routes match the config`);
  return lines.join('\n');
}
