import { ServicesClient, type protos } from '@google-cloud/run';
import type { Config, RouteConfig } from '../lib/config/config.ts';
import { checkDeployable, MAX_CLOUD_RUN_TIMEOUT_MS, serviceAccount, serviceName } from '../infra/names.ts';

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
  /** Something with google-auth-library's `fetch` (tests pass a client with a fixed token). */
  readonly authClient?: unknown;
}

type Service = protos.google.cloud.run.v2.IService;

export async function routeStatuses(config: Config, options: RunAdminOptions = {}): Promise<RouteStatus[]> {
  const { project } = checkDeployable(config);
  const client = runClient(options);
  try {
    return await Promise.all(config.routes.map((route) => statusOf(client, config, project, route)));
  } finally {
    await client.close();
  }
}

function runClient(options: RunAdminOptions): ServicesClient {
  if (!options.apiEndpoint) return new ServicesClient();
  const [host, port] = options.apiEndpoint.split(':');
  return new ServicesClient({ apiEndpoint: host, port: Number(port), protocol: 'http', fallback: true, ...(options.authClient ? { authClient: options.authClient as never } : {}) });
}

async function statusOf(client: ServicesClient, config: Config, project: string, route: RouteConfig): Promise<RouteStatus> {
  const service = serviceName(route);
  let found: Service;
  try {
    [found] = await client.getService({ name: `projects/${project}/locations/${config.deploy.region}/services/${service}` });
  } catch (err) {
    if (isNotFound(err)) return { route: route.path, service, state: 'missing', drift: ['not deployed: run `mcp-front deploy --apply`'] };
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

function driftOf(found: Service, config: Config, project: string, route: RouteConfig): string[] {
  const drift: string[] = [];
  const want = (what: string, actual: unknown, expected: unknown) => {
    if (String(actual) !== String(expected)) drift.push(`${what} is ${String(actual)}, the config says ${String(expected)}`);
  };
  const template = found.template ?? {};
  const env = new Map((template.containers?.[0]?.env ?? []).map((e) => [e.name, e.value]));
  want('ingress', ingressName(found.ingress), 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER');
  want('MCP_FRONT_ROUTE', env.get('MCP_FRONT_ROUTE'), route.path);
  want('timeout', Number(template.timeout?.seconds ?? 0), Math.ceil(Math.min(route.timeout, MAX_CLOUD_RUN_TIMEOUT_MS) / 1000));
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
