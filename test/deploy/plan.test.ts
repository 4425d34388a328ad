import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../lib/config/load.ts';
import { buildDeployPlan, TTL_COLLECTIONS } from '../../infra/plan.ts';
import { renderPlan } from '../../infra/render.ts';
import { loadDeployConfig } from '../../infra/service-config.ts';
import { serviceName } from '../../infra/names.ts';

// The plan is pinned by golden files: a change to what `deploy` would run shows up as a
// readable diff of test/deploy/golden/*.txt. Regenerate with UPDATE_GOLDEN=1 after review.

const EXAMPLES = ['http-google', 'stdio-images', 'mixed-github'];
const GOLDEN = join(import.meta.dirname, 'golden');
const ENV = { PATH: process.env.PATH };
const PACKAGE_JSON = readFileSync('package.json', 'utf8');

function planFor(example: string) {
  const { config, text } = loadDeployConfig(`examples/deploy/${example}.yaml`, ENV);
  return buildDeployPlan({ config, text, env: ENV, outDir: 'build/deploy', packageJson: PACKAGE_JSON });
}

describe('deploy plan', () => {
  it.each(EXAMPLES)('matches the golden plan for examples/deploy/%s.yaml', (example) => {
    const text = renderPlan(planFor(example));
    const file = join(GOLDEN, `${example}.txt`);
    if (process.env.UPDATE_GOLDEN) {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(file, text);
    }
    // A missing golden file is a failure, never a file this test writes and then agrees with.
    expect(existsSync(file), `${file} is missing: review the plan, then UPDATE_GOLDEN=1`).toBe(true);
    expect(text).toBe(readFileSync(file, 'utf8'));
  });

  it('firestore.indexes.json (firebase deploy) sets a TTL on every collection the plan does', () => {
    const indexes = JSON.parse(readFileSync('firestore.indexes.json', 'utf8')) as { fieldOverrides: Array<{ collectionGroup: string; fieldPath: string; ttl?: boolean }> };
    const ttl = indexes.fieldOverrides.filter((o) => o.fieldPath === 'expireAt' && o.ttl).map((o) => o.collectionGroup);
    expect(ttl.sort()).toEqual([...TTL_COLLECTIONS.auth, ...TTL_COLLECTIONS.sessions].sort());
  });

  it('never prints a secret value, and routes never get the upstream client secret', () => {
    const env = { ...ENV, GOOGLE_CLIENT_SECRET: 'gocspx-very-secret-value' };
    const { config, text } = loadDeployConfig('examples/deploy/http-google.yaml', env);
    const plan = buildDeployPlan({ config, text, env, outDir: 'build/deploy', packageJson: PACKAGE_JSON });
    expect(renderPlan(plan)).not.toContain('gocspx-very-secret-value');
    expect(plan.contexts['build/deploy/mcp-route-notion']!.files['config.yaml']).not.toContain('GOOGLE_CLIENT_SECRET');
    expect(plan.contexts['build/deploy/oauth']!.files['config.yaml']).toContain('client_secret: ${GOOGLE_CLIENT_SECRET}');
  });

  it('routes on the load balancer follow the same path rules as the local router', () => {
    const urlMap = planFor('mixed-github').files['build/deploy/url-map.yaml']!;
    expect(urlMap).toMatch(/- \/linear\n\s+- \/linear\/\*\n\s+service: .*mcp-route-linear-backend/);
    expect(urlMap).toMatch(/- \/\.well-known\/\*[\s\S]*service: .*mcp-front-oauth-backend/);
  });

  it('layers the bridge onto distroless and Alpine images without touching their libc', () => {
    const dockerfile = planFor('stdio-images').contexts['build/deploy/mcp-route-db']!.files.Dockerfile!;
    expect(dockerfile).toContain('FROM ghcr.io/example/postgres-mcp:1.4-alpine');
    expect(dockerfile).toContain('ENTRYPOINT ["/opt/mcp-front/runtime/tini","--","/opt/mcp-front/runtime/lib/ld-linux-x86-64.so.2","--library-path"');
    expect(dockerfile).not.toContain('LD_LIBRARY_PATH');
  });
});

/** A deployable config with these routes (YAML list items) and `extra` top-level lines. */
const deployYaml = (routes: string, extra = '') => `
oauth:
  issuer: https://mcp.example.com
  gcp_project: p
  provider: google
  client_id: id
  client_secret: \${SECRET}
${extra}
routes:
${routes}
deploy:
  secrets: { SECRET: s }
`;

function planOfYaml(yaml: string) {
  const config = parseConfig(yaml, { SECRET: '${SECRET}' }, 'deploy.yaml');
  return buildDeployPlan({ config, text: yaml, env: {}, outDir: 'build/deploy', packageJson: PACKAGE_JSON });
}

type Plan = ReturnType<typeof planOfYaml>;
/** The plan's `gcloud run deploy` steps (every Cloud Run service and the function). */
const deploySteps = (plan: Plan) => plan.steps.filter((s) => s.command.slice(0, 3).join(' ') === 'gcloud run deploy');
/** A service's deploy command, as one line. */
const deployOf = (plan: Plan, service: string) => deploySteps(plan).find((s) => s.command[3] === service)!.command.join(' ');
/** Who is granted a secret: the --member of each binding on it. */
const readersOf = (plan: Plan, secret: string) => plan.steps.filter((s) => s.command.includes('add-iam-policy-binding') && s.command[3] === secret).map((s) => s.command.find((a) => a.startsWith('--member='))!.split('@')[0]);

describe('deploy input that Google Cloud would refuse is refused before anything runs', () => {
  const cases: Array<[string, string, string]> = [
    ['a route name too long for a service name', deployYaml(`  - { path: /${'a'.repeat(45)}, type: http, backend: https://b.example.com/mcp }`), 'Cloud Run service name'],
    ['a timeout above 60 minutes', deployYaml('  - { path: /x, type: http, backend: https://b.example.com/mcp, timeout: 61m }'), 'routes[0].timeout: must be under 60m'],
    ['a timeout at the platform limit', deployYaml('  - { path: /x, type: http, backend: https://b.example.com/mcp, timeout: 60m }'), 'routes[0].timeout: must be under 60m'],
    ['a stdio route with neither command nor image', deployYaml('  - { path: /x, type: stdio }'), 'routes[0].command: a stdio route needs a command'],
    ['duplicate paths', deployYaml('  - { path: /x, type: http, backend: https://b.example.com/mcp }\n  - { path: /x, type: http, backend: https://c.example.com/mcp }'), 'routes[1].path: "/x" is used by another route'],
    ['an http backend', deployYaml('  - { path: /x, type: http, backend: http://b.example.com/mcp }'), 'routes[0].backend: must be https'],
    ['a docker run command', deployYaml('  - { path: /x, type: stdio, command: [docker, run, -i, --rm, mcp/git] }'), 'routes[0].command: "docker" starts a container'],
    ['a private backend without its service', deployYaml('  - { path: /x, type: http, backend: https://b.example.com/mcp, google_id_token_audience: https://b.example.com }'), 'routes[0].backend_service: name the private backend'],
    ['a stream timeout at the platform limit', deployYaml('  - { path: /x, type: http, backend: https://b.example.com/mcp }', '').replace('routes:', 'server: { stream_timeout: 60m }\nroutes:'), 'server.stream_timeout: must be under 60m'],
    ['a missing project', deployYaml('  - { path: /x, type: http, backend: https://b.example.com/mcp }').replace('  gcp_project: p\n', ''), 'oauth.gcp_project: required to deploy'],
  ];
  it.each(cases)('refuses %s', (_name, yaml, message) => {
    expect(() => planOfYaml(yaml)).toThrow(message);
  });
});

const gcloud = await promisify(execFile)('gcloud', ['--version']).then(
  () => undefined,
  () => 'gcloud not installed: flag check skipped',
);

describe.skipIf(gcloud !== undefined && !process.env.CI)(`every gcloud flag in the plans exists in the installed Cloud SDK${gcloud ? ` (${gcloud})` : ''}`, () => {
  const usages = new Map<string, Set<string>>();
  for (const example of EXAMPLES) {
    const plan = planFor(example);
    for (const step of plan.steps) {
      for (const argv of [step.command, step.check ?? [], step.update ?? []]) {
        if (argv[0] !== 'gcloud') continue;
        const group = argv.slice(1).filter((a, i, all) => !a.startsWith('-') && all.slice(0, i).every((b) => !b.startsWith('-')));
        // The command path stops at the first positional that names a resource (e.g. a service name).
        const path = commandPath(group);
        const flags = usages.get(path.join(' ')) ?? new Set<string>();
        for (const a of argv) if (a.startsWith('--')) flags.add(a.split('=')[0]!);
        usages.set(path.join(' '), flags);
      }
    }
  }
  it.each([...usages.entries()].map(([cmd, flags]) => [cmd, [...flags]] as const))('gcloud %s', async (cmd, flags) => {
    const { stdout } = await promisify(execFile)('gcloud', [...cmd.split(' '), '--help'], { env: { ...process.env, CLOUDSDK_CORE_DISABLE_PROMPTS: '1', PAGER: 'cat' }, maxBuffer: 4 << 20 });
    const missing = flags.filter((flag) => !stdout.includes(flag.replace(/^--no-/, '--')));
    expect(missing).toEqual([]);
    // gcloud is a Python program that may rebuild its command index on a call: seconds idle,
    // tens of seconds on a loaded machine. What is checked here does not depend on speed.
  }, 180_000);
});

/** gcloud command groups are the leading words up to the verb (create, describe, deploy, …). */
function commandPath(words: readonly string[]): string[] {
  const verbs = new Set(['create', 'describe', 'deploy', 'enable', 'update', 'import', 'add-backend', 'add-iam-policy-binding', 'submit', 'add']);
  const end = words.findIndex((w) => verbs.has(w));
  return words.slice(0, end + 1);
}

describe('how every example plan runs its routes, read as data', () => {
  it.each(EXAMPLES)('%s: streams outlive calls, routes keep their CPU, every route waits to be ready', (example) => {
    const plan = planFor(example);
    const { config } = loadDeployConfig(`examples/deploy/${example}.yaml`, ENV);
    for (const route of config.routes) {
      const deploy = deploySteps(plan).find((s) => s.command[3] === serviceName(route))!;
      const flag = (name: string) => deploy.command.find((a) => a.startsWith(`--${name}=`))?.split('=').slice(1).join('=');
      // Cloud Run's timeout bounds a whole request: a GET stream, not a call. It must outlast the
      // gateway's own stream end (server.stream_timeout) and every call (route.timeout).
      const serviceTimeoutMs = Number(flag('timeout')) * 1000;
      expect(serviceTimeoutMs).toBe(3_600_000);
      expect(serviceTimeoutMs).toBeGreaterThan(config.server.streamTimeout);
      expect(serviceTimeoutMs).toBeGreaterThan(route.timeout);
      // Children, the idle reaper and the session owner's lease and listener run between requests, on both kinds.
      expect(deploy.command.includes('--no-cpu-throttling')).toBe(true);
      expect(flag('startup-probe')).toContain(`httpGet.path=${config.server.healthPath}/ready`);
    }
  });
});

describe('the IAM of every example plan, read as data', () => {
  const bindings = (example: string) =>
    planFor(example).steps.filter((s) => s.command.includes('add-iam-policy-binding')).map((s) => ({ command: s.command, member: s.command.find((a) => a.startsWith('--member='))!.slice(9), role: s.command.find((a) => a.startsWith('--role='))!.slice(7), condition: s.command.find((a) => a.startsWith('--condition='))?.slice(12) }));

  it.each(EXAMPLES)('%s: route accounts may use the sessions database only; nothing is granted to allUsers; every build runs as the build account', (example) => {
    const plan = planFor(example);
    const all = bindings(example);
    expect(all.some((b) => /allUsers|allAuthenticatedUsers/.test(b.member))).toBe(false);
    expect(plan.steps.some((s) => s.command.includes('--allow-unauthenticated'))).toBe(false);
    const routeBindings = all.filter((b) => b.member.includes('mcp-route-'));
    expect(routeBindings.length).toBeGreaterThan(0);
    for (const b of routeBindings) {
      // Only the sessions database (by an IAM condition), the route's own secrets, and invoking its own private backend.
      if (b.role === 'roles/datastore.user') expect(b.condition).toBe('expression=resource.name=="projects/' + plan.project + '/databases/mcp-sessions",title=firestore-mcp-sessions-only');
      else expect(['roles/secretmanager.secretAccessor', 'roles/run.invoker']).toContain(b.role);
    }
    const oauthData = all.find((b) => b.member.includes('mcp-front-oauth@') && b.role === 'roles/datastore.user')!;
    expect(oauthData.condition).toContain('/databases/(default)"');
    const builds = [...plan.steps.filter((s) => s.command.slice(0, 3).join(' ') === 'gcloud builds submit'), ...deploySteps(plan).filter((s) => s.command.some((a) => a.startsWith('--source=')))];
    expect(builds.length).toBeGreaterThan(0);
    for (const b of builds) expect(b.command.some((a) => /^--(build-)?service-account=projects\/[^/]+\/serviceAccounts\/mcp-front-build@/.test(a))).toBe(true);
    for (const deploy of deploySteps(plan)) {
      expect(deploy.command).toContain('--no-invoker-iam-check');
      expect(deploy.command).toContain('--ingress=internal-and-cloud-load-balancing');
    }
  });

  it.each(EXAMPLES)('%s: each service account reads exactly the secrets its service is deployed with, and no route the signing or sealing key', (example) => {
    const plan = planFor(example);
    const account = (member: string) => member.replace(/^serviceAccount:/, '').split('@')[0]!;
    const reads = new Map<string, string[]>();
    for (const b of bindings(example).filter((b) => b.role === 'roles/secretmanager.secretAccessor')) reads.set(account(b.member), [...(reads.get(account(b.member)) ?? []), b.command[3]!]);
    const mounts = new Map<string, string[]>();
    for (const deploy of deploySteps(plan)) {
      const flag = (name: string) => deploy.command.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
      const secrets = (flag('set-secrets') ?? '').split(',').filter(Boolean).map((pair) => pair.split('=')[1]!.replace(/:latest$/, ''));
      mounts.set(account(flag('service-account')!), [...new Set(secrets)].sort());
    }
    expect(Object.fromEntries([...reads].map(([who, secrets]) => [who, secrets.sort()]))).toEqual(Object.fromEntries([...mounts].filter(([, secrets]) => secrets.length)));
    for (const [who, secrets] of reads) if (who.startsWith('mcp-route-')) expect(secrets.filter((s) => s === 'mcp-front-signing-key' || s === 'mcp-front-sealing-key'), who).toEqual([]);
  });

  it('a route with a private Cloud Run backend may invoke that service and no other', () => {
    const invoker = bindings('http-google').filter((b) => b.role === 'roles/run.invoker');
    expect(invoker.map((b) => b.command.slice(0, 5).join(' '))).toEqual(['gcloud run services add-iam-policy-binding notion-mcp']);
  });
});

describe('users\' own credentials in the plan', () => {
  const plan = planOfYaml(
    deployYaml(`  - { path: /notion, type: http, backend: "https://notion.example.com/mcp", user_credential: { label: Notion key, instructions: x, header: "Authorization: Bearer {credential}" } }
  - { path: /db, type: stdio, command: [node, server.js], user_credential: { label: DB password, instructions: x, env: DB_PASSWORD } }
  - { path: /wiki, type: http, backend: "https://wiki.example.com/mcp" }`),
  );

  it('creates a sealing key and one key per credential route, each a fresh 256-bit key never printed', () => {
    for (const secret of ['mcp-front-sealing-key', 'mcp-front-credential-key-notion', 'mcp-front-credential-key-db']) {
      const create = plan.steps.find((s) => s.command.slice(0, 4).join(' ') === `gcloud secrets create ${secret}`)!;
      expect(create.stdin).toEqual({ kind: 'new-credential-key' });
      expect(renderPlan(plan)).toContain(`mcp-front keygen --credential-key | gcloud secrets create ${secret}`);
    }
    expect(plan.steps.some((s) => s.command.includes('mcp-front-credential-key-wiki'))).toBe(false);
  });

  it('the sealing key goes to the authorization server alone; each route key to it and its own route', () => {
    expect(readersOf(plan, 'mcp-front-sealing-key')).toEqual(['--member=serviceAccount:mcp-front-oauth']);
    expect(readersOf(plan, 'mcp-front-credential-key-notion')).toEqual(['--member=serviceAccount:mcp-front-oauth', '--member=serviceAccount:mcp-route-notion']);
    expect(readersOf(plan, 'mcp-front-credential-key-db')).toEqual(['--member=serviceAccount:mcp-front-oauth', '--member=serviceAccount:mcp-route-db']);
    expect(deployOf(plan, 'mcp-front-oauth')).toContain('MCP_FRONT_SEALING_KEY=mcp-front-sealing-key:latest,MCP_FRONT_CREDENTIAL_KEY_NOTION=mcp-front-credential-key-notion:latest,MCP_FRONT_CREDENTIAL_KEY_DB=mcp-front-credential-key-db:latest');
    expect(deployOf(plan, 'mcp-route-notion')).toContain('--set-secrets=MCP_FRONT_CREDENTIAL_KEY_NOTION=mcp-front-credential-key-notion:latest');
    expect(deployOf(plan, 'mcp-route-notion')).not.toContain('mcp-front-sealing-key');
    expect(deployOf(plan, 'mcp-route-notion')).not.toContain('credential-key-db');
    expect(deployOf(plan, 'mcp-route-db')).toContain('--set-secrets=MCP_FRONT_CREDENTIAL_KEY_DB=mcp-front-credential-key-db:latest');
    expect(deployOf(plan, 'mcp-route-wiki')).not.toContain('CREDENTIAL_KEY');
  });

  it('user credentials never expire by TTL: the collection is not in the TTL list', () => {
    expect(plan.steps.some((s) => s.command.includes('--collection-group=userCredentials'))).toBe(false);
  });
});

describe('identity: assertion in the plan', () => {
  const plan = planOfYaml(
    deployYaml(`  - { path: /crm, type: http, backend: "https://crm.example.com/mcp", identity: assertion }
  - { path: /wiki, type: http, backend: "https://wiki.example.com/mcp" }
  - { path: /db, type: stdio, command: [node, server.js] }`),
  );

  it('creates an assertion key of its own, generated like the signing key and never printed', () => {
    const create = plan.steps.find((s) => s.command.slice(0, 4).join(' ') === 'gcloud secrets create mcp-front-assertion-key')!;
    expect(create.stdin).toEqual({ kind: 'new-signing-key' });
    expect(renderPlan(plan)).toContain('mcp-front keygen | gcloud secrets create mcp-front-assertion-key');
  });

  it('gives it to the authorization server (to publish it) and the asserting route only', () => {
    expect(readersOf(plan, 'mcp-front-assertion-key')).toEqual(['--member=serviceAccount:mcp-front-oauth', '--member=serviceAccount:mcp-route-crm']);
    expect(deployOf(plan, 'mcp-front-oauth')).toContain('MCP_FRONT_ASSERTION_KEY=mcp-front-assertion-key:latest');
    expect(deployOf(plan, 'mcp-route-crm')).toContain('--set-secrets=MCP_FRONT_ASSERTION_KEY=mcp-front-assertion-key:latest');
    expect(deployOf(plan, 'mcp-route-wiki')).not.toContain('MCP_FRONT_ASSERTION_KEY');
    expect(deployOf(plan, 'mcp-route-db')).not.toContain('MCP_FRONT_ASSERTION_KEY');
    // The access-token signing key stays with the authorization server.
    expect(deployOf(plan, 'mcp-route-crm')).not.toContain('mcp-front-signing-key');
  });
});
