import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { Agent, fetch as tlsFetch } from 'undici';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/dev-backend.ts';
import { systemClock } from '../../lib/clock.ts';
import type { RouteConfig } from '../../lib/config/config.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { openFirestoreStore } from '../../lib/store/firestore-store.ts';
import { generateCredentialKey } from '../../lib/tokens/credential-keys.ts';
import { generateSigningJwk } from '../../lib/tokens/keys.ts';
import { buildDeployPlan, type DeployPlan, type PlanStep } from '../../infra/plan.ts';
import { serviceName } from '../../infra/names.ts';
import { loadDeployConfig } from '../../infra/service-config.ts';
import { stageContext } from '../../infra/stage.ts';
import { browserSkipReason, launchBrowser } from '../support/browser.ts';
import { authorizeInBrowser, startRedirectTarget, type RedirectTarget } from '../support/browser-authorization.ts';
import { credentialFor, expectBackendIdentity, expectOutsiderRefused, giveCredential, OUTSIDER, serverStandIns, USER, type BackendRequest } from '../support/company-controls-rehearsal.ts';
import { startFirestoreEmulator, type FirestoreEmulator } from '../support/firestore-emulator.ts';
import { startGithubStandIn, startOidcStandIn, type IdpStandIn, type UpstreamClient } from '../support/idp-stand-ins.ts';
import { buildImage, canUnshare, installProduction, runImage, uploadSet, type RunningImage } from '../support/image-runner.ts';
import { descendantsOf } from '../support/process-table.ts';
import { until } from '../support/route-harness.ts';

// The rehearsal: each example's generated plan executed the way Google would execute it, on
// loopback. Each deploy step's upload is what `gcloud meta list-files-for-upload` lists, copied
// to a fresh directory with production dependencies only; the authorization server starts
// under the Functions Framework from the uploaded package.json's `main` and the step's
// --function target; each route starts from its generated Dockerfile (built by
// test/support/image-runner.ts) as PID 1 of a PID namespace. Every service gets exactly the
// env and secrets its deploy step sets (secrets as env values), PORT, and the platform's
// stand-ins: the Firestore emulator (both databases), a metadata server, TLS trust for the
// load balancer. The load balancer terminates TLS for https://localhost:PORT and routes by
// the generated url-map.yaml: its backend services → NEGs → services, read from the plan.
// What stands in for a stdio server's image: the demo server (commands on a stand-in PATH), or
// for a route with company controls the tool-server fixture (test/support/company-controls-rehearsal.ts).
// The client is a user's: DCR, then for each route an authorization in headless Chromium that
// signs in at a loopback stand-in for the example's identity provider and approves our consent
// page (giving their own credential where a route asks), the code redeemed with PKCE, MCP calls
// with the token, and refresh-token rotation; then a user outside a route's access list, refused.

const EXAMPLES = ['http-google', 'mixed-github', 'stdio-images'] as const;
const ROOT = process.cwd();
const NODE = process.execPath;
const DEMO = join(ROOT, 'examples/demo-server/server.ts');

const emulatorOrSkip = await startFirestoreEmulator();
const unshare = canUnshare();
const skip = 'skip' in emulatorOrSkip ? emulatorOrSkip.skip : !unshare ? 'unshare --pid not permitted: rehearsal skipped' : browserSkipReason();
if (skip && !('skip' in emulatorOrSkip) && process.env.CI) throw new Error(`${skip} — but CI must run it`);

/** The flag values of one command: --name=value. */
function flag(step: PlanStep, name: string): string | undefined {
  return step.command.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

/** What the stand-in Secret Manager holds for a secret created from $VARIABLE. */
const storedSecret = (variable: string) => `rehearsal-${variable}`;

/**
 * The user, as each kind of identity provider knows them: in the Workspace domain, the allow
 * list, the GitHub org and the one a route's access list names; and, on GitHub, a colleague
 * in the org but not that one.
 */
function startIdp(provider: string, client: UpstreamClient): Promise<IdpStandIn> {
  const github = (id: number, email: string, orgs: string[]) => ({ id, emails: [{ email, primary: true, verified: true }], orgs });
  if (provider === 'github') return startGithubStandIn(client, { [USER.login]: github(1815, USER.email, ['example-org', 'example-sre']), [OUTSIDER.login]: github(1906, OUTSIDER.email, ['example-org']) });
  return startOidcStandIn(client, { [USER.login]: { email: USER.email, email_verified: true, hd: 'example.com' } });
}

/** --set-env-vars and --set-secrets of a deploy step, secrets resolved from the stand-in Secret Manager. */
function deployEnv(step: PlanStep, secrets: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of (flag(step, 'set-env-vars') ?? '').split(',').filter(Boolean)) env[pair.split('=')[0]!] = pair.slice(pair.indexOf('=') + 1);
  for (const pair of (flag(step, 'set-secrets') ?? '').split(',').filter(Boolean)) {
    const [variable, reference] = pair.split('=') as [string, string];
    const name = reference.replace(/:latest$/, '');
    if (secrets[name] === undefined) throw new Error(`the plan mounts secret ${name}, which no step creates`);
    env[variable] = secrets[name]!;
  }
  return env;
}

function selfSignedCert(): { key: string; cert: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-lb-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), file: join(dir, 'cert.pem') };
}

/** Google's URL map semantics: exact paths, and `/prefix/*` prefixes; the longest match wins. */
function urlMapRouter(yaml: string, serviceOfBackend: (backend: string) => string): (path: string) => string {
  const map = parseYaml(yaml) as { defaultService: string; pathMatchers: Array<{ defaultService: string; pathRules: Array<{ paths: string[]; service: string }> }> };
  const name = (url: string) => url.split('/').at(-1)!;
  const rules = map.pathMatchers[0]!.pathRules.flatMap((r) => r.paths.map((p) => ({ path: p, service: serviceOfBackend(name(r.service)) })));
  const fallback = serviceOfBackend(name(map.pathMatchers[0]!.defaultService));
  return (path) => {
    let best: { length: number; service: string } | undefined;
    for (const rule of rules) {
      const matches = rule.path.endsWith('/*') ? path.startsWith(rule.path.slice(0, -1)) : path === rule.path;
      if (matches && (!best || rule.path.length > best.length)) best = { length: rule.path.length, service: rule.service };
    }
    return best?.service ?? fallback;
  };
}

/** The plan's own wiring: backend service → NEG (add-backend) → Cloud Run service (NEG create). */
function backendToService(plan: DeployPlan): (backend: string) => string {
  const negOf = new Map(plan.steps.filter((s) => s.command.includes('add-backend')).map((s) => [s.command[4]!, flag(s, 'network-endpoint-group')!]));
  const serviceOf = new Map(plan.steps.filter((s) => s.command.slice(0, 4).join(' ') === 'gcloud compute network-endpoint-groups create').map((s) => [s.command[4]!, flag(s, 'cloud-run-service')!]));
  return (backend) => serviceOf.get(negOf.get(backend)!)!;
}

interface AuthServer {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
  readonly registration_endpoint: string;
  readonly code_challenge_methods_supported: string[];
}

interface Tokens {
  readonly access_token: string;
  readonly refresh_token: string;
}

async function tokensOf(answer: Response): Promise<Tokens> {
  const body = (await answer.json()) as Tokens;
  if (answer.status !== 200) throw new Error(`token endpoint: HTTP ${answer.status} ${JSON.stringify(body)}`);
  return body;
}

async function errorOf(answer: Response): Promise<string> {
  expect(answer.status).toBe(400);
  return ((await answer.json()) as { error: string }).error;
}

interface Deployed {
  readonly name: string;
  readonly port: number;
  readonly kind: 'function' | 'route';
  readonly child?: ChildProcess;
  readonly image?: RunningImage;
  output(): string;
}

describe.skipIf(skip !== undefined)(`the deploy plan rehearsed as Google runs it${skip ? ` (${skip})` : ''}`, () => {
  const emulator = emulatorOrSkip as FirestoreEmulator;
  const tls = selfSignedCert();
  const dispatcher = new Agent({ connect: { ca: tls.cert } });
  const clientFetch = ((url: string, init?: RequestInit) => tlsFetch(url, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
  const standIns: Server[] = [];
  let demoBackend: ChildProcess | undefined;
  let demoBackendUrl = '';
  let metadataHost = '';
  let browser: Awaited<ReturnType<typeof launchBrowser>> | undefined;
  let redirect: RedirectTarget | undefined;

  beforeAll(async () => {
    browser = await launchBrowser();
    redirect = await startRedirectTarget();
    // The private http backend stands behind TLS with the same trust, checking what the route sends.
    const port = await freePort();
    demoBackend = spawn(NODE, [DEMO, '--http'], { env: { PATH: process.env.PATH, PORT: String(port) }, stdio: 'ignore' });
    demoBackendUrl = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100 && !(await fetch(`${demoBackendUrl}/mcp`).then(() => true, () => false)); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    // The metadata server: an ID token for whatever audience a route asks for.
    const metadata = createHttpServer((req, res) => {
      res.setHeader('metadata-flavor', 'Google');
      if (req.headers['metadata-flavor'] !== 'Google') return void res.writeHead(403).end();
      const url = new URL(req.url!, 'http://x');
      if (url.pathname.endsWith('/identity')) {
        const payload = Buffer.from(JSON.stringify({ aud: url.searchParams.get('audience'), exp: Math.floor(Date.now() / 1000) + 3600, iat: Math.floor(Date.now() / 1000) })).toString('base64url');
        return void res.end(`eyJhbGciOiJSUzI1NiJ9.${payload}.c2lnbmF0dXJl`);
      }
      res.end(url.pathname.endsWith('project-id') ? 'rehearsal' : '');
    });
    await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
    standIns.push(metadata);
    metadataHost = `127.0.0.1:${(metadata.address() as { port: number }).port}`;
  }, 60_000);

  const tokenRequest = (meta: AuthServer, form: Record<string, string>) =>
    clientFetch(meta.token_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });

  /** A session with the real MCP client, through the load balancer. */
  async function session(url: string, accessToken: string, use: (client: InstanceType<typeof Client>) => Promise<void>): Promise<void> {
    const client = new Client({ name: 'rehearsal', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: clientFetch, requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
    await client.connect(transport);
    await use(client);
    await client.close();
  }

  afterAll(async () => {
    await browser?.closeAll();
    await redirect?.close();
    demoBackend?.kill('SIGTERM');
    for (const s of standIns) s.close();
    await dispatcher.close();
    await emulator?.stop();
  });

  it.each(EXAMPLES)('examples/deploy/%s.yaml: uploads, services, load balancer, sign-in in Chromium at the identity provider, calls and refresh rotation on every route, clean stop', async (example) => {
    const lbPort = await freePort();
    const issuer = `https://localhost:${lbPort}`;
    const backendRequests: BackendRequest[] = [];
    // Remote http backends: one TLS stand-in (each backend host a path prefix) that records what
    // each route sends and proxies to the demo server.
    const backend = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      backendRequests.push({ path: new URL(req.url!, 'https://x').pathname, headers: req.headers });
      const upstream = httpRequest(`${demoBackendUrl}/mcp`, { method: req.method, headers: { ...req.headers, host: new URL(demoBackendUrl).host } }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      });
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    standIns.push(backend);
    const backendOrigin = `https://localhost:${(backend.address() as { port: number }).port}`;

    // The upstream identity provider: the example's client, with the secret the plan stores for it.
    const original = readFileSync(`examples/deploy/${example}.yaml`, 'utf8');
    const upstream = (parseYaml(original) as { oauth: { provider: string; client_id: string; client_secret: string } }).oauth;
    const idp = await startIdp(upstream.provider, { clientId: upstream.client_id, clientSecret: storedSecret(/^\$\{(\w+)\}$/.exec(upstream.client_secret)![1]!), redirectUri: `${issuer}/callback` });

    // The example, pointed at loopback: the issuer, the upstream IdP, remote backends.
    const text = original
      .replace(/^ {2}issuer: .*$/m, `  issuer: ${issuer}`)
      .replace(/^ {2}oidc_issuer: .*$/m, `  oidc_issuer: ${idp.url}`)
      .replace(/^ {2}provider: google$/m, `  provider: google\n  oidc_issuer: ${idp.url}`)
      .replace(/^ {2}provider: github$/m, `  provider: github\n  github_url: ${idp.url}\n  github_api_url: ${idp.url}`)
      .replace(/backend: https:\/\/([^\s/]+)\/mcp/g, (_, host: string) => `backend: ${backendOrigin}/${host}/mcp`);
    const file = join(mkdtempSync(join(tmpdir(), 'mcp-front-rehearsal-')), `${example}.yaml`);
    writeFileSync(file, text);
    const { config, text: loaded } = loadDeployConfig(file, {});
    expect(config.oauth.provider === 'github' ? config.oauth.githubApiUrl : config.oauth.oidcIssuer).toBe(idp.url);
    const plan = buildDeployPlan({ config, text: loaded, env: {}, outDir: 'build/deploy', packageJson: readFileSync('package.json', 'utf8') });

    // Secret Manager: what each create-secret step would store.
    const secrets: Record<string, string> = {};
    for (const step of plan.steps.filter((s) => s.stdin)) {
      const name = step.command[3]!;
      const stdin = step.stdin!;
      secrets[name] = stdin.kind === 'new-signing-key' ? JSON.stringify(await generateSigningJwk()) : stdin.kind === 'new-credential-key' ? generateCredentialKey() : storedSecret(stdin.variable);
    }
    const platform = { FIRESTORE_EMULATOR_HOST: emulator.host, GCE_METADATA_HOST: metadataHost, METADATA_SERVER_DETECTION: 'assume-present', NODE_EXTRA_CA_CERTS: tls.file };
    const standInBin = mkdtempSync(join(tmpdir(), 'mcp-front-server-image-'));
    // Stand-in for a server image's own program (stdio-images' /db names `postgres-mcp`).
    writeFileSync(join(standInBin, 'postgres-mcp'), `#!/bin/sh\nexec ${NODE} ${DEMO}\n`, { mode: 0o755 });
    const servers = serverStandIns(NODE, standInBin);
    const routeOf = (service: string) => config.routes.find((r) => serviceName(r) === service)!;
    const path = `${join(NODE, '..')}:${standInBin}:/usr/bin:/bin`;

    const deployed: Deployed[] = [];
    const routeExits = new Map<string, number | null>();
    try {
      for (const step of plan.steps.filter((s) => s.command.slice(0, 3).join(' ') === 'gcloud run deploy')) {
        const name = step.command[3]!;
        const port = await freePort();
        const env = { ...deployEnv(step, secrets), ...platform, PORT: String(port), K_SERVICE: name, PATH: path };
        const source = flag(step, 'source');
        if (source) {
          // A Cloud Run function: the upload, production dependencies, the Functions Framework.
          const staged = mkdtempSync(join(tmpdir(), 'mcp-front-stage-'));
          stageContext(ROOT, staged, plan.contexts[source]!);
          const upload = uploadSet(staged);
          expect(JSON.parse(readFileSync(join(upload, 'package.json'), 'utf8')).main).toBe('functions/index.ts');
          installProduction(upload);
          const child = spawn(NODE, ['node_modules/@google-cloud/functions-framework/build/src/main.js', `--target=${flag(step, 'function')}`, '--signature-type=http'], { cwd: upload, env, stdio: ['ignore', 'pipe', 'pipe'] });
          let output = '';
          child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
          child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
          deployed.push({ name, port, kind: 'function', child, output: () => output });
        } else {
          // A route: its image, built from the context the build step uploads.
          const build = plan.steps.find((s) => s.command.slice(0, 3).join(' ') === 'gcloud builds submit' && s.command[3]!.endsWith(`/${name}`))!;
          const dir = build.command[3]!;
          const staged = mkdtempSync(join(tmpdir(), 'mcp-front-stage-'));
          stageContext(ROOT, staged, plan.contexts[dir]!);
          const upload = uploadSet(staged);
          const image = buildImage(upload, readFileSync(join(upload, 'Dockerfile'), 'utf8'), { node: NODE, imageCommand: servers.imageCommand(routeOf(name)) });
          const running = runImage(image, env);
          deployed.push({ name, port, kind: 'route', image: running, output: running.output });
        }
      }
      for (const service of deployed.filter((d) => d.kind === 'route')) {
        if (!(await until(() => service.output().includes('route listening'), 30_000))) throw new Error(`${service.name} did not start:\n${service.output()}`);
      }

      // The load balancer, from the generated URL map.
      const serviceFor = urlMapRouter(plan.files['build/deploy/url-map.yaml']!, backendToService(plan));
      const portOf = new Map(deployed.map((d) => [d.name, d.port]));
      const lb = createHttpsServer({ key: tls.key, cert: tls.cert }, (req: IncomingMessage, res: ServerResponse) => {
        const service = serviceFor(new URL(req.url!, issuer).pathname);
        const forwarded = req.headers['x-forwarded-for'];
        const headers = { ...req.headers, 'x-forwarded-for': `${forwarded ? `${forwarded}, ` : ''}${req.socket.remoteAddress}, 127.0.0.2`, 'x-forwarded-proto': 'https' };
        const upstream = httpRequest({ host: '127.0.0.1', port: portOf.get(service), method: req.method, path: req.url, headers }, (answer) => {
          res.writeHead(answer.statusCode!, answer.headers);
          answer.pipe(res);
        });
        upstream.on('error', () => res.headersSent ? res.destroy() : res.writeHead(502).end());
        req.pipe(upstream);
      });
      await new Promise<void>((resolve) => lb.listen(lbPort, '127.0.0.1', resolve));
      standIns.push(lb);

      // Discovery and registration through the load balancer, as an MCP client does them.
      const meta = (await (await clientFetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as AuthServer;
      expect(meta.issuer).toBe(issuer);
      expect(meta.code_challenge_methods_supported).toContain('S256');
      const registered = await clientFetch(meta.registration_endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [redirect!.uri], client_name: 'rehearsal', token_endpoint_auth_method: 'none' }) });
      expect(registered.status).toBe(201);
      const { client_id: clientId } = (await registered.json()) as { client_id: string };
      const urls = config.routes.map((route) => `${issuer}${route.path}/mcp`);
      const refresh = (refreshToken: string, resource: string) => tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, resource });
      const accessTokens: string[] = [];
      const use = async (route: RouteConfig, url: string, tokens: Tokens, text: string) => {
        accessTokens.push(tokens.access_token);
        await session(url, tokens.access_token, (client) => servers.expectSession(client, route, text));
      };

      // One authorization per route, as a client connecting each MCP server does, in one browser.
      const context = await browser!.newContext({ ignoreHTTPSErrors: true });
      try {
        const page = await context.newPage();
        for (const [i, route] of config.routes.entries()) {
          const url = urls[i]!;
          const challenge = await clientFetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
          expect(challenge.status).toBe(401);
          const prmUrl = /resource_metadata="([^"]+)"/.exec(challenge.headers.get('www-authenticate') ?? '')![1]!;
          const prm = (await (await clientFetch(prmUrl)).json()) as { resource: string; authorization_servers: string[] };
          expect(prm).toMatchObject({ resource: url, authorization_servers: [issuer] });

          // The identity provider's sign-in on the first; the AS session cookie carries the user past it on the others.
          const authorization = await authorizeInBrowser(page, { issuer, authorizationEndpoint: meta.authorization_endpoint, clientId, redirect: redirect!, resource: url, signIn: i === 0 ? (p) => idp.signIn(p, USER.login) : undefined, consent: giveCredential(route) });
          expect(authorization.navigations.some((u) => u.startsWith(`${idp.url}/`))).toBe(i === 0);
          expect(authorization.consent).toContain(route.path);
          // The client's checks of the redirect: its state, and the issuer it asked (RFC 9207).
          expect(authorization.redirect.get('state')).toBe(authorization.state);
          expect(authorization.redirect.get('iss')).toBe(issuer);
          expect(redirect!.received.get(authorization.state)?.get('code')).toBe(authorization.redirect.get('code'));
          const first = await tokensOf(await tokenRequest(meta, { grant_type: 'authorization_code', code: authorization.redirect.get('code')!, redirect_uri: redirect!.uri, client_id: clientId, code_verifier: authorization.verifier, resource: url }));
          await use(route, url, first, `through ${route.path}`);
          // The token and the grant are this route's only (RFC 8707): another route refuses the
          // token, and the grant refuses a refresh for another route (without using it up).
          for (const other of urls.filter((u) => u !== url)) {
            const elsewhere = await clientFetch(other, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${first.access_token}` }, body: '{}' });
            expect(elsewhere.status).toBe(401);
            expect(elsewhere.headers.get('www-authenticate')).toContain('invalid_token');
            expect(await errorOf(await refresh(first.refresh_token, other))).toBe('invalid_target');
          }

          // Rotation: each refresh gives a new refresh token and an access token the route takes.
          const second = await tokensOf(await refresh(first.refresh_token, url));
          expect(second.refresh_token).not.toBe(first.refresh_token);
          await use(route, url, second, `refreshed through ${route.path}`);
          const third = await tokensOf(await refresh(second.refresh_token, url));
          expect(third.refresh_token).not.toBe(second.refresh_token);
          // refresh_grace (60 s by default) honours the token rotated last, for a client that lost
          // the answer; an older one is a replay: refused, and the grant ends with it.
          expect(await errorOf(await refresh(first.refresh_token, url))).toBe('invalid_grant');
          expect(await errorOf(await refresh(third.refresh_token, url))).toBe('invalid_grant');
        }
      } finally {
        await context.close();
      }

      // A colleague outside a route's access list, in a browser of their own, is refused after sign-in.
      for (const route of config.routes.filter((r) => r.access)) {
        await expectOutsiderRefused(browser!, route, { issuer, authorizationEndpoint: meta.authorization_endpoint, clientId, redirect: redirect!, signIn: (p, login) => idp.signIn(p, login) });
      }

      // Private backends got the route's own credentials and, where the route says so, who the user is; never the user's token.
      const jwks = (await (await clientFetch(`${issuer}/jwks.json`)).json()) as JSONWebKeySet;
      for (const route of config.routes.filter((r) => r.type === 'http')) {
        const seen = backendRequests.filter((r) => r.path === new URL(route.backend!).pathname);
        await expectBackendIdentity(route, seen, { issuer, jwks, accessTokens });
        const authorization = seen.map((r) => String(r.headers.authorization ?? ''));
        if (route.googleIdTokenAudience) expect(authorization.every((h) => h.startsWith('Bearer eyJhbGciOiJSUzI1NiJ9.'))).toBe(true);
        if (route.path === '/linear') expect(authorization.every((h) => h === 'Bearer rehearsal-LINEAR_API_KEY')).toBe(true);
      }

      // Session records went to the sessions database, and nothing of the routes' to the authorization server's.
      process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
      const sessionsDb = await openFirestoreStore({ projectId: config.oauth.gcpProject!, databaseId: config.oauth.sessionsDatabase, clock: systemClock });
      const authDb = await openFirestoreStore({ projectId: config.oauth.gcpProject!, databaseId: config.oauth.firestoreDatabase, clock: systemClock });
      for (const route of config.routes) {
        expect((await sessionsDb.find('mcpSessions', 'route', route.path)).length).toBeGreaterThan(0);
        expect(await authDb.find('mcpSessions', 'route', route.path)).toEqual([]);
      }
      expect((await authDb.find('clients', 'clientName', 'rehearsal')).length).toBeGreaterThan(0);
      // One grant per route, for the user the identity provider vouched for, ended by the replay.
      // The provider's credential is kept, sealed, for the re-checks at later refreshes.
      const grants = await authDb.find<{ email: string; resource: string; upstream?: string; revokedReason?: string }>('grants', 'clientId', clientId);
      expect(grants.map((g) => g.doc.resource).sort()).toEqual([...urls].sort());
      for (const { doc } of grants) expect(doc).toMatchObject({ email: USER.email, upstream: expect.stringMatching(/^v1\./), revokedReason: 'refresh token reused' });
      // Each credential the user gave is stored once, sealed: never as they typed it.
      const stored = await authDb.find<{ route: string }>('userCredentials', 'email', USER.email);
      expect(stored.map((c) => c.doc.route).sort()).toEqual(config.routes.filter((r) => r.userCredential).map((r) => r.path).sort());
      for (const { doc } of stored) expect(JSON.stringify(doc)).not.toContain(credentialFor(config.routes.find((r) => r.path === doc.route)!));
      await sessionsDb.close();
      await authDb.close();
    } finally {
      await idp.close();
      // SIGTERM every service, as Cloud Run stops instances.
      for (const service of deployed) {
        if (service.image) routeExits.set(service.name, await service.image.stop());
        else if (service.child!.exitCode === null) {
          const exited = new Promise((resolve) => service.child!.once('exit', resolve));
          service.child!.kill('SIGTERM');
          await exited;
        }
      }
    }
    // Checked after the run, so that what failed in it is what the run reports: each route stopped cleanly, and nothing is left.
    expect(Object.fromEntries(routeExits)).toEqual(Object.fromEntries([...routeExits.keys()].map((name) => [name, 0])));
    for (const service of deployed) expect(descendantsOf((service.child ?? service.image!.process).pid!)).toEqual([]);
  }, 240_000);
});
