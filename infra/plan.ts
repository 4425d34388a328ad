import type { Config, RouteConfig } from '../lib/config/config.ts';
import { buildUrlMap } from '../lib/urlmap.ts';
import { routeImage } from './image.ts';
import { backendServiceName, checkDeployable, FUNCTION_NAME, imageName, LB, MAX_CLOUD_RUN_TIMEOUT_MS, negName, serviceAccount, serviceName, SIGNING_KEY_SECRET } from './names.ts';
import { renderServiceConfig, type ServiceConfig } from './service-config.ts';
import { httpRedirectYaml, urlMapYaml } from './url-map.ts';

// `mcp-front deploy --plan`: the config turned into the exact, ordered list of commands that
// puts the gateway on Google Cloud. Pure: same config, same plan (golden tests pin it).
// Creation steps carry a read-only `check`; when it succeeds the resource exists and the step
// is skipped, so applying a plan to an up-to-date project creates nothing. Deploy steps
// (functions/run deploy, url-maps import) are declarative: they converge to the config.

export interface PlanStep {
  readonly title: string;
  /** A read-only command whose success means there is nothing to do. */
  readonly check?: readonly string[];
  /** …provided its output contains this text. */
  readonly checkOutputContains?: string;
  readonly command: readonly string[];
  /** What to feed the command's stdin: a value the plan must never print. */
  readonly stdin?: { readonly kind: 'new-signing-key' } | { readonly kind: 'secret-from-env'; readonly variable: string };
}

export interface DeployPlan {
  readonly project: string;
  readonly domain: string;
  readonly steps: readonly PlanStep[];
  /** Files the commands read, relative to the repository root (the source and build context). */
  readonly files: Readonly<Record<string, string>>;
}

/** Collections whose documents carry `expireAt` (see lib/store): Firestore deletes them itself. */
export const TTL_COLLECTIONS = ['codes', 'authRequests', 'refreshTokens', 'mcpSessions', 'rateBuckets', 'browserSessions', 'clients', 'clientMetadata'] as const;

const APIS = ['run', 'cloudfunctions', 'cloudbuild', 'artifactregistry', 'firestore', 'secretmanager', 'compute', 'iam', 'eventarc'].map((a) => `${a}.googleapis.com`);

export interface PlanInput {
  readonly config: Config;
  /** The YAML the config was loaded from: service configs are rendered from it. */
  readonly text: string;
  /** The environment at plan time: resolves the config's plain ${VAR}s. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory (relative to the repo root) the generated files go to. */
  readonly outDir: string;
}

export function buildDeployPlan({ config, text, env, outDir }: PlanInput): DeployPlan {
  const { project, domain } = checkDeployable(config);
  const region = config.deploy.region;
  const p = [`--project=${project}`];
  const steps: PlanStep[] = [];
  const files: Record<string, string> = {};
  const add = (step: PlanStep) => steps.push(step);
  const render = (target: 'oauth' | RouteConfig): ServiceConfig => renderServiceConfig(text, { env, secrets: config.deploy.secrets, project, target });

  add({ title: 'Enable the Google Cloud APIs mcp-front uses', command: ['gcloud', 'services', 'enable', ...APIS, ...p] });

  // Firestore: the database, its TTL policies, then rules and indexes through firebase.json.
  const db = config.oauth.firestoreDatabase;
  add({
    title: `Create the Firestore database ${db}`,
    check: ['gcloud', 'firestore', 'databases', 'describe', `--database=${db}`, ...p],
    command: ['gcloud', 'firestore', 'databases', 'create', `--database=${db}`, `--location=${region}`, '--type=firestore-native', ...p],
  });
  for (const collection of TTL_COLLECTIONS) {
    add({
      title: `Let Firestore delete expired ${collection}`,
      command: ['gcloud', 'firestore', 'fields', 'ttls', 'update', 'expireAt', `--collection-group=${collection}`, '--enable-ttl', `--database=${db}`, '--async', ...p],
    });
  }
  add({ title: 'Deploy firestore.rules (deny every client) and firestore.indexes.json', command: ['npx', 'firebase', 'deploy', '--only', 'firestore', `--project=${project}`, '--non-interactive'] });

  // Identities: one service account per service, each with only what it needs.
  const owners: Array<'oauth' | RouteConfig> = ['oauth', ...config.routes];
  for (const owner of owners) {
    const email = serviceAccount(project, owner);
    const id = email.split('@')[0]!;
    add({
      title: `Create service account ${id}`,
      check: ['gcloud', 'iam', 'service-accounts', 'describe', email, ...p],
      command: ['gcloud', 'iam', 'service-accounts', 'create', id, `--display-name=mcp-front ${owner === 'oauth' ? 'authorization server' : `route ${owner.path}`}`, ...p],
    });
    add({
      title: `Let ${id} read and write Firestore`,
      command: ['gcloud', 'projects', 'add-iam-policy-binding', project, `--member=serviceAccount:${email}`, '--role=roles/datastore.user', '--condition=None', '--quiet'],
    });
  }

  // Secrets: the signing key (generated once, never printed) and each secret the config names.
  const secretNames = new Map<string, { variable?: string }>([[SIGNING_KEY_SECRET, {}], ...Object.entries(config.deploy.secrets).map(([variable, name]) => [name, { variable }] as const)]);
  for (const [name, { variable }] of secretNames) {
    add({
      title: `Create secret ${name}${variable ? ` from $${variable}` : ' with a new ES256 signing key'}`,
      check: ['gcloud', 'secrets', 'describe', name, ...p],
      command: ['gcloud', 'secrets', 'create', name, '--replication-policy=automatic', '--data-file=-', ...p],
      stdin: variable ? { kind: 'secret-from-env', variable } : { kind: 'new-signing-key' },
    });
  }

  // The authorization server: a Cloud Function from source.
  const oauthConfig = render('oauth');
  const oauthFile = `${outDir}/oauth.yaml`;
  files[oauthFile] = oauthConfig.yaml;
  grantSecrets(add, project, serviceAccount(project, 'oauth'), { ...oauthConfig.secrets, MCP_FRONT_SIGNING_KEY: SIGNING_KEY_SECRET });
  add({
    title: 'Deploy the authorization server (Cloud Function oauth)',
    command: [
      'gcloud', 'functions', 'deploy', FUNCTION_NAME, '--gen2', '--runtime=nodejs24', `--region=${region}`, '--source=.', '--entry-point=oauth', '--trigger-http',
      '--allow-unauthenticated', '--ingress-settings=internal-and-gclb', `--service-account=${serviceAccount(project, 'oauth')}`,
      `--min-instances=${config.deploy.functionMinInstances}`, `--set-env-vars=MCP_FRONT_CONFIG=${oauthFile}`,
      `--set-secrets=${secretFlag({ ...oauthConfig.secrets, MCP_FRONT_SIGNING_KEY: SIGNING_KEY_SECRET })}`, ...p,
    ],
  });

  // Routes: one Cloud Run service each, reachable only through the load balancer.
  if (config.routes.some((r) => r.type === 'stdio')) {
    add({
      title: `Create the Artifact Registry repository ${config.deploy.repository}`,
      check: ['gcloud', 'artifacts', 'repositories', 'describe', config.deploy.repository, `--location=${region}`, ...p],
      command: ['gcloud', 'artifacts', 'repositories', 'create', config.deploy.repository, '--repository-format=docker', `--location=${region}`, ...p],
    });
  }
  for (const route of config.routes) {
    const name = serviceName(route);
    const rendered = render(route);
    const configFile = `${outDir}/${name}/config.yaml`;
    files[configFile] = rendered.yaml;
    grantSecrets(add, project, serviceAccount(project, route), rendered.secrets);
    const source: string[] = [];
    if (route.type === 'stdio') {
      const image = imageName(config, project, route);
      const built = routeImage(route, { image, dir: `${outDir}/${name}`, configFile });
      files[`${outDir}/${name}/Dockerfile`] = built.dockerfile;
      files[`${outDir}/${name}/cloudbuild.yaml`] = built.cloudbuild;
      add({ title: `Build the image of ${route.path} (${route.image ?? 'bundled command'} + bridge)`, command: ['gcloud', 'builds', 'submit', `--config=${outDir}/${name}/cloudbuild.yaml`, ...p, '.'] });
      source.push(`--image=${image}`);
    } else {
      source.push('--source=.', '--command=node', '--args=services/route/main.ts');
    }
    const secrets = secretFlag(rendered.secrets);
    add({
      title: `Deploy route ${route.path} (Cloud Run ${name}, ${route.type})`,
      command: [
        'gcloud', 'run', 'deploy', name, ...source, `--region=${region}`, `--service-account=${serviceAccount(project, route)}`,
        '--ingress=internal-and-cloud-load-balancing', '--allow-unauthenticated', '--execution-environment=gen2', '--session-affinity', '--cpu-boost',
        `--concurrency=${route.cloudRun.concurrency}`, `--timeout=${Math.ceil(Math.min(route.timeout, MAX_CLOUD_RUN_TIMEOUT_MS) / 1000)}`,
        `--min-instances=${route.cloudRun.minInstances}`, `--max-instances=${route.cloudRun.maxInstances}`, `--cpu=${route.cloudRun.cpu}`, `--memory=${route.cloudRun.memory}`,
        `--set-env-vars=MCP_FRONT_CONFIG=${route.type === 'stdio' ? '/opt/mcp-front/app/config.yaml' : configFile},MCP_FRONT_ROUTE=${route.path}`,
        ...(secrets ? [`--set-secrets=${secrets}`] : []), ...p,
      ],
    });
  }

  // The load balancer: serverless NEGs, backend services, the shared URL map, TLS, redirect.
  for (const owner of owners) {
    const neg = negName(owner);
    const target = owner === 'oauth' ? `--cloud-function-name=${FUNCTION_NAME}` : `--cloud-run-service=${serviceName(owner)}`;
    add({
      title: `Serverless NEG for ${owner === 'oauth' ? 'the authorization server' : owner.path}`,
      check: ['gcloud', 'compute', 'network-endpoint-groups', 'describe', neg, `--region=${region}`, ...p],
      command: ['gcloud', 'compute', 'network-endpoint-groups', 'create', neg, `--region=${region}`, '--network-endpoint-type=serverless', target, ...p],
    });
    const backend = backendServiceName(owner);
    add({
      title: `Backend service ${backend}`,
      check: ['gcloud', 'compute', 'backend-services', 'describe', backend, '--global', ...p],
      command: ['gcloud', 'compute', 'backend-services', 'create', backend, '--global', '--load-balancing-scheme=EXTERNAL_MANAGED', ...p],
    });
    add({
      title: `Attach ${neg} to ${backend}`,
      check: ['gcloud', 'compute', 'backend-services', 'describe', backend, '--global', '--format=value(backends[].group)', ...p],
      checkOutputContains: `/networkEndpointGroups/${neg}`,
      command: ['gcloud', 'compute', 'backend-services', 'add-backend', backend, '--global', `--network-endpoint-group=${neg}`, `--network-endpoint-group-region=${region}`, ...p],
    });
  }
  const urlMapFile = `${outDir}/url-map.yaml`;
  files[urlMapFile] = urlMapYaml(buildUrlMap(config), { project, domain, defaultBackend: backendServiceName('oauth'), backendOf: backendServiceName });
  files[`${outDir}/http-redirect.yaml`] = httpRedirectYaml();
  add({ title: 'Reserve the global IP address', check: ['gcloud', 'compute', 'addresses', 'describe', LB.address, '--global', ...p], command: ['gcloud', 'compute', 'addresses', 'create', LB.address, '--global', '--ip-version=IPV4', ...p] });
  add({ title: 'URL map: the same path rules as the local router', command: ['gcloud', 'compute', 'url-maps', 'import', LB.urlMap, '--global', `--source=${urlMapFile}`, '--quiet', ...p] });
  add({ title: `Managed certificate for ${domain}`, check: ['gcloud', 'compute', 'ssl-certificates', 'describe', LB.certificate, '--global', ...p], command: ['gcloud', 'compute', 'ssl-certificates', 'create', LB.certificate, `--domains=${domain}`, '--global', ...p] });
  add({ title: 'HTTPS proxy', check: ['gcloud', 'compute', 'target-https-proxies', 'describe', LB.httpsProxy, '--global', ...p], command: ['gcloud', 'compute', 'target-https-proxies', 'create', LB.httpsProxy, `--url-map=${LB.urlMap}`, `--ssl-certificates=${LB.certificate}`, '--global', ...p] });
  add({ title: 'HTTPS forwarding rule on port 443', check: ['gcloud', 'compute', 'forwarding-rules', 'describe', LB.httpsRule, '--global', ...p], command: ['gcloud', 'compute', 'forwarding-rules', 'create', LB.httpsRule, '--global', '--load-balancing-scheme=EXTERNAL_MANAGED', `--address=${LB.address}`, `--target-https-proxy=${LB.httpsProxy}`, '--ports=443', ...p] });
  add({ title: 'HTTP → HTTPS redirect map', command: ['gcloud', 'compute', 'url-maps', 'import', LB.redirectMap, '--global', `--source=${outDir}/http-redirect.yaml`, '--quiet', ...p] });
  add({ title: 'HTTP proxy for the redirect', check: ['gcloud', 'compute', 'target-http-proxies', 'describe', LB.httpProxy, '--global', ...p], command: ['gcloud', 'compute', 'target-http-proxies', 'create', LB.httpProxy, `--url-map=${LB.redirectMap}`, '--global', ...p] });
  add({ title: 'HTTP forwarding rule on port 80', check: ['gcloud', 'compute', 'forwarding-rules', 'describe', LB.httpRule, '--global', ...p], command: ['gcloud', 'compute', 'forwarding-rules', 'create', LB.httpRule, '--global', '--load-balancing-scheme=EXTERNAL_MANAGED', `--address=${LB.address}`, `--target-http-proxy=${LB.httpProxy}`, '--ports=80', ...p] });

  return { project, domain, steps, files };
}

function secretFlag(secrets: Readonly<Record<string, string>>): string {
  return Object.entries(secrets)
    .map(([variable, name]) => `${variable}=${name}:latest`)
    .join(',');
}

function grantSecrets(add: (step: PlanStep) => void, project: string, email: string, secrets: Readonly<Record<string, string>>): void {
  for (const name of new Set(Object.values(secrets))) {
    add({
      title: `Let ${email.split('@')[0]} read secret ${name}`,
      command: ['gcloud', 'secrets', 'add-iam-policy-binding', name, `--member=serviceAccount:${email}`, '--role=roles/secretmanager.secretAccessor', `--project=${project}`, '--condition=None', '--quiet'],
    });
  }
}
