import { credentialRoutes, needsAssertionKey, type Config, type RouteConfig } from '../lib/config/config.ts';
import { routeKeyVariable, SEALING_KEY_VARIABLE } from '../lib/tokens/credential-keys.ts';
import { buildUrlMap } from '../lib/urlmap.ts';
import { routeImage } from './image.ts';
import {
  accountResource, backendServiceName, buildAccount, BUILD_ACCOUNT_ID, checkDeployable, FUNCTION_NAME, FUNCTION_TARGET, imageName, LB, negName, routeMemory,
  ASSERTION_KEY_SECRET, credentialKeySecret, SEALING_KEY_SECRET, SERVICE_TIMEOUT_S, serviceAccount, serviceName, SIGNING_KEY_SECRET,
} from './names.ts';
import { renderServiceConfig, type ServiceConfig } from './service-config.ts';
import { GCLOUDIGNORE, stagedPackageJson, type StagedContext } from './stage.ts';
import { httpRedirectYaml, urlMapYaml } from './url-map.ts';

// `mcp-front deploy --plan`: the config turned into the exact, ordered list of commands that
// puts the gateway on Google Cloud. Pure: same config, same plan (golden tests pin it).
// Creation steps carry a read-only `check`; when it succeeds the resource exists and the step
// is skipped, so applying a plan to an up-to-date project creates nothing. Deploy steps
// (run deploy, url-maps import) are declarative: they converge to the config.
// Each build uploads a staged context (stage.ts) and runs as the build account; each service
// runs as its own account with only what it needs; nothing is granted to allUsers.

export interface PlanStep {
  readonly title: string;
  /** A read-only command whose success means there is nothing to do. */
  readonly check?: readonly string[];
  /** …provided its output contains this text. */
  readonly checkOutputContains?: string;
  readonly command: readonly string[];
  /** What to feed the command's stdin: a value the plan must never print. */
  readonly stdin?: { readonly kind: 'new-signing-key' } | { readonly kind: 'new-credential-key' } | { readonly kind: 'secret-from-env'; readonly variable: string };
  /** Runs again on every apply even though `check` passes, with --update-secrets: a new version of an existing secret. */
  readonly update?: readonly string[];
}

export interface DeployPlan {
  readonly project: string;
  readonly domain: string;
  readonly steps: readonly PlanStep[];
  /** Generated files outside the staged contexts (the URL maps), relative to the repository root. */
  readonly files: Readonly<Record<string, string>>;
  /** Each build's upload: directory (relative to the repository root) → what is staged there. */
  readonly contexts: Readonly<Record<string, StagedContext>>;
  /** Things the plan can do but a careful operator would not leave so. */
  readonly warnings: readonly string[];
}

/** Collections whose documents carry `expireAt` (see lib/store), by database: Firestore deletes them itself. */
export const TTL_COLLECTIONS = {
  auth: ['codes', 'authRequests', 'refreshTokens', 'grants', 'consents', 'rateBuckets', 'browserSessions', 'clients', 'clientMetadata', 'keys'],
  sessions: ['mcpSessions', 'routeInstances', 'mcpRelay'],
} as const;

const APIS = ['run', 'cloudbuild', 'artifactregistry', 'firestore', 'firebaserules', 'secretmanager', 'compute', 'iam'].map((a) => `${a}.googleapis.com`);

/** What the authorization server's code is: the Functions Framework loads package.json `main`. */
const FUNCTION_SOURCES = ['lib', 'functions/index.ts', 'functions/express-adapter.ts', 'functions/oauth', 'package-lock.json'];
const ROUTE_SOURCES = ['lib', 'services', 'package-lock.json'];
/** The authorization server's instances: many light requests each. */
const FUNCTION_SETTINGS = { concurrency: 80, cpu: '1', memory: '512Mi', timeoutS: 60, maxInstances: 20 };

export interface PlanInput {
  readonly config: Config;
  /** The YAML the config was loaded from: service configs are rendered from it. */
  readonly text: string;
  /** The environment at plan time: resolves the config's plain ${VAR}s. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory (relative to the repo root) the staged contexts and generated files go to. */
  readonly outDir: string;
  /** The repository's package.json: each staged service installs from it (and its lock file). */
  readonly packageJson: string;
}

/** A bundled stdio command's own files: its relative path arguments (copied into the image beside the app). */
export function bundledPaths(route: RouteConfig): string[] {
  if (route.type !== 'stdio' || route.image) return [];
  return route.command.filter((arg) => !arg.startsWith('-') && !arg.startsWith('/') && arg.includes('/')).map((arg) => arg.replace(/^\.\//, ''));
}

export function buildDeployPlan({ config, text, env, outDir, packageJson }: PlanInput): DeployPlan {
  const { project, domain } = checkDeployable(config);
  const region = config.deploy.region;
  const p = [`--project=${project}`];
  const steps: PlanStep[] = [];
  const files: Record<string, string> = {};
  const contexts: Record<string, StagedContext> = {};
  const warnings: string[] = [];
  const add = (step: PlanStep) => steps.push(step);
  const render = (target: 'oauth' | RouteConfig): ServiceConfig => renderServiceConfig(text, { env, secrets: config.deploy.secrets, project, target });
  const builder = buildAccount(project);

  add({ title: 'Enable the Google Cloud APIs mcp-front uses', command: ['gcloud', 'services', 'enable', ...APIS, ...p] });

  // Firestore: the authorization server's database and the sessions database, apart, so that
  // route accounts can be granted the second one alone; TTL policies on each.
  const databases = { auth: config.oauth.firestoreDatabase, sessions: config.oauth.sessionsDatabase };
  for (const [kind, db] of Object.entries(databases) as Array<[keyof typeof databases, string]>) {
    add({
      title: `Create the Firestore database ${db} (${kind === 'auth' ? 'clients, grants, tokens, keys' : 'MCP session records'})`,
      check: ['gcloud', 'firestore', 'databases', 'describe', `--database=${db}`, ...p],
      command: ['gcloud', 'firestore', 'databases', 'create', `--database=${db}`, `--location=${region}`, '--type=firestore-native', ...p],
    });
    for (const collection of TTL_COLLECTIONS[kind]) {
      add({
        title: `Let Firestore delete expired ${collection} in ${db}`,
        command: ['gcloud', 'firestore', 'fields', 'ttls', 'update', 'expireAt', `--collection-group=${collection}`, '--enable-ttl', `--database=${db}`, '--async', ...p],
      });
    }
    add({
      title: `Deny every client SDK on ${db} (firestore.rules; only the services' accounts, through IAM, reach data)`,
      command: ['mcp-front', 'firestore-rules', `--project=${project}`, `--database=${db}`, '--rules=firestore.rules'],
    });
  }

  // Identities: a build account, and one account per service with only what it needs.
  add({
    title: `Create service account ${BUILD_ACCOUNT_ID} (runs every build)`,
    check: ['gcloud', 'iam', 'service-accounts', 'describe', builder, ...p],
    command: ['gcloud', 'iam', 'service-accounts', 'create', BUILD_ACCOUNT_ID, '--display-name=mcp-front builds', ...p],
  });
  add({ title: `Let ${BUILD_ACCOUNT_ID} build and push images (roles/run.builder)`, command: addBinding(project, builder, 'roles/run.builder') });
  const owners: Array<'oauth' | RouteConfig> = ['oauth', ...config.routes];
  for (const owner of owners) {
    const email = serviceAccount(project, owner);
    const id = email.split('@')[0]!;
    const db = owner === 'oauth' ? databases.auth : databases.sessions;
    add({
      title: `Create service account ${id}`,
      check: ['gcloud', 'iam', 'service-accounts', 'describe', email, ...p],
      command: ['gcloud', 'iam', 'service-accounts', 'create', id, `--display-name=mcp-front ${owner === 'oauth' ? 'authorization server' : `route ${owner.path}`}`, ...p],
    });
    // A route's stdio server can take its account's token from the metadata server: that
    // account reaches the sessions database and nothing else.
    add({ title: `Let ${id} use the Firestore database ${db} only`, command: addBinding(project, email, 'roles/datastore.user', databaseCondition(project, db)) });
    if (owner !== 'oauth' && owner.type === 'http' && owner.backendService) {
      const target = owner.backendService;
      add({
        title: `Let ${id} invoke its private backend (Cloud Run ${target.name})`,
        command: ['gcloud', 'run', 'services', 'add-iam-policy-binding', target.name, `--region=${target.region}`, `--member=serviceAccount:${email}`, '--role=roles/run.invoker', `--project=${target.project ?? project}`, '--quiet'],
      });
    }
  }

  // Secrets: the signing key (generated once, never printed), the identity-assertion key when a
  // route sends assertions (a key of its own: a route holding the signing key could mint access
  // tokens for every route), and each secret the config names.
  // Created once; `deploy --apply --update-secrets` adds a new version from the environment.
  // Users' own credentials (routes[].user_credential): a sealing key for the stored ones, which
  // only the authorization server reads, and one key per credential route, which the
  // authorization server seals that route's tokens' credentials with and that route alone opens.
  const assertions = needsAssertionKey(config);
  const credentials = credentialRoutes(config);
  type Generated = { variable?: string; symmetric?: boolean };
  const secretNames = new Map<string, Generated>([
    [SIGNING_KEY_SECRET, {}],
    ...(assertions ? [[ASSERTION_KEY_SECRET, {}] as const] : []),
    ...(credentials.length ? [[SEALING_KEY_SECRET, { symmetric: true }] as const, ...credentials.map((r) => [credentialKeySecret(r), { symmetric: true }] as const)] : []),
    ...Object.entries(config.deploy.secrets).map(([variable, name]) => [name, { variable }] as const),
  ]);
  for (const [name, { variable, symmetric }] of secretNames) {
    add({
      title: `Create secret ${name}${variable ? ` from $${variable}` : symmetric ? ' with a new 256-bit key' : ' with a new ES256 signing key'}`,
      check: ['gcloud', 'secrets', 'describe', name, ...p],
      command: ['gcloud', 'secrets', 'create', name, '--replication-policy=automatic', '--data-file=-', ...p],
      ...(variable ? { update: ['gcloud', 'secrets', 'versions', 'add', name, '--data-file=-', ...p] } : {}),
      stdin: variable ? { kind: 'secret-from-env', variable } : symmetric ? { kind: 'new-credential-key' } : { kind: 'new-signing-key' },
    });
  }

  // The authorization server: a Cloud Run function (Functions Framework, nodejs24) from its staged source.
  const oauthConfig = render('oauth');
  const oauthDir = `${outDir}/oauth`;
  contexts[oauthDir] = {
    copy: FUNCTION_SOURCES,
    files: { '.gcloudignore': GCLOUDIGNORE, 'package.json': stagedPackageJson(packageJson, 'functions/index.ts'), 'config.yaml': oauthConfig.yaml },
  };
  const oauthSecrets = {
    ...oauthConfig.secrets, MCP_FRONT_SIGNING_KEY: SIGNING_KEY_SECRET, ...(assertions ? { MCP_FRONT_ASSERTION_KEY: ASSERTION_KEY_SECRET } : {}),
    ...(credentials.length ? { [SEALING_KEY_VARIABLE]: SEALING_KEY_SECRET, ...Object.fromEntries(credentials.map((r) => [routeKeyVariable(r), credentialKeySecret(r)])) } : {}),
  };
  grantSecrets(add, project, serviceAccount(project, 'oauth'), oauthSecrets);
  add({
    title: `Deploy the authorization server (Cloud Run function ${FUNCTION_NAME})`,
    command: [
      'gcloud', 'run', 'deploy', FUNCTION_NAME, `--source=${oauthDir}`, `--function=${FUNCTION_TARGET}`, '--base-image=nodejs24', `--region=${region}`,
      `--service-account=${serviceAccount(project, 'oauth')}`, `--build-service-account=${accountResource(project, builder)}`,
      '--ingress=internal-and-cloud-load-balancing', '--no-invoker-iam-check', '--cpu-boost',
      `--concurrency=${FUNCTION_SETTINGS.concurrency}`, `--cpu=${FUNCTION_SETTINGS.cpu}`, `--memory=${FUNCTION_SETTINGS.memory}`, `--timeout=${FUNCTION_SETTINGS.timeoutS}`,
      `--min-instances=${config.deploy.functionMinInstances}`, `--max-instances=${FUNCTION_SETTINGS.maxInstances}`,
      // Relative to the function's working directory, the root of its source.
      '--set-env-vars=MCP_FRONT_CONFIG=config.yaml', `--set-secrets=${secretFlag(oauthSecrets)}`, ...p,
    ],
  });

  // Routes: one image and one Cloud Run service each, reachable only through the load balancer.
  add({
    title: `Create the Artifact Registry repository ${config.deploy.repository}`,
    check: ['gcloud', 'artifacts', 'repositories', 'describe', config.deploy.repository, `--location=${region}`, ...p],
    command: ['gcloud', 'artifacts', 'repositories', 'create', config.deploy.repository, '--repository-format=docker', `--location=${region}`, ...p],
  });
  for (const route of config.routes) {
    const name = serviceName(route);
    const rendered = render(route);
    const dir = `${outDir}/${name}`;
    const image = imageName(config, project, route);
    const bundled = bundledPaths(route);
    const built = routeImage(route, { image, bundled });
    contexts[dir] = {
      copy: [...ROUTE_SOURCES, ...bundled],
      files: { '.gcloudignore': GCLOUDIGNORE, 'package.json': stagedPackageJson(packageJson), 'config.yaml': rendered.yaml, Dockerfile: built.dockerfile, 'cloudbuild.yaml': built.cloudbuild },
    };
    if (route.type === 'stdio' && route.image && !route.image.includes('@sha256:')) {
      warnings.push(`${route.path}: image ${route.image} is a tag, not a digest: each build may get a different server. Pin it as ${route.image.split(':')[0]}@sha256:…`);
    }
    const routeSecrets = {
      ...rendered.secrets, ...(route.type === 'http' && route.identity === 'assertion' ? { MCP_FRONT_ASSERTION_KEY: ASSERTION_KEY_SECRET } : {}),
      ...(route.userCredential ? { [routeKeyVariable(route)]: credentialKeySecret(route) } : {}),
    };
    grantSecrets(add, project, serviceAccount(project, route), routeSecrets);
    add({
      title: `Build the image of ${route.path} (${route.type === 'stdio' ? (route.image ?? 'bundled command') : 'http proxy'} + bridge)`,
      command: ['gcloud', 'builds', 'submit', dir, `--config=${dir}/cloudbuild.yaml`, `--service-account=${accountResource(project, builder)}`, ...p],
    });
    const secrets = secretFlag(routeSecrets);
    add({
      title: `Deploy route ${route.path} (Cloud Run ${name}, ${route.type})`,
      command: [
        'gcloud', 'run', 'deploy', name, `--image=${image}`, `--region=${region}`, `--service-account=${serviceAccount(project, route)}`,
        '--ingress=internal-and-cloud-load-balancing', '--no-invoker-iam-check', '--execution-environment=gen2', '--session-affinity', '--cpu-boost',
        // CPU stays allocated between requests, on both route kinds: a stdio session's child, the
        // idle reaper, and one owner per session (the lease renewed every lease/3, the listener
        // that relays to the owner). Throttled, a lease would lapse while a session idles and the
        // next instance would re-initialize it, losing the server's state. Idle instances still
        // scale to zero.
        '--no-cpu-throttling',
        `--concurrency=${route.cloudRun.concurrency}`, `--timeout=${SERVICE_TIMEOUT_S}`,
        `--min-instances=${route.cloudRun.minInstances}`, `--max-instances=${route.cloudRun.maxInstances}`, `--cpu=${route.cloudRun.cpu}`, `--memory=${routeMemory(route)}`,
        `--startup-probe=httpGet.path=${config.server.healthPath}/ready,periodSeconds=2,timeoutSeconds=2,failureThreshold=30`,
        `--set-env-vars=MCP_FRONT_CONFIG=/opt/mcp-front/app/config.yaml,MCP_FRONT_ROUTE=${route.path}`,
        ...(secrets ? [`--set-secrets=${secrets}`] : []), ...p,
      ],
    });
  }

  // The load balancer: serverless NEGs, backend services, the shared URL map, TLS, redirect.
  for (const owner of owners) {
    const neg = negName(owner);
    const target = owner === 'oauth' ? FUNCTION_NAME : serviceName(owner);
    add({
      title: `Serverless NEG for ${owner === 'oauth' ? 'the authorization server' : owner.path}`,
      check: ['gcloud', 'compute', 'network-endpoint-groups', 'describe', neg, `--region=${region}`, ...p],
      command: ['gcloud', 'compute', 'network-endpoint-groups', 'create', neg, `--region=${region}`, '--network-endpoint-type=serverless', `--cloud-run-service=${target}`, ...p],
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

  return { project, domain, steps, files, contexts, warnings };
}

/** The IAM condition that limits a Firestore role to one database (Firestore's documented form). */
export function databaseCondition(project: string, database: string): string {
  return `expression=resource.name=="projects/${project}/databases/${database}",title=firestore-${database.replace(/[()]/g, '')}-only`;
}

function addBinding(project: string, email: string, role: string, condition = 'None'): string[] {
  return ['gcloud', 'projects', 'add-iam-policy-binding', project, `--member=serviceAccount:${email}`, `--role=${role}`, `--condition=${condition}`, '--quiet'];
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
