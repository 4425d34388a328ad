#!/usr/bin/env node
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig } from '../lib/config/load.ts';
import { PortInUseError } from '../lib/http/node-server.ts';
import { isLoopbackHost, type Config } from '../lib/config/config.ts';
import type { Clock } from '../lib/clock.ts';
import type { Store } from '../lib/store/store.ts';
import { generateSigningJwk, rotateSigningKey, rotatedSigningKeys } from '../lib/tokens/keys.ts';
import { DeployError } from './deploy-error.ts';
import { ConnectError } from './connect/discovery.ts';
import { DevBackendError } from './dev-backend.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const DEFAULT_CONFIG = resolve(ROOT, 'examples/local.yaml');

/** Errors a user can fix: printed as one clear message, no stack trace, exit 1. */
const USER_ERRORS = [ConfigError, PortInUseError, DeployError, InvalidArgumentError, ConnectError, DevBackendError];

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

/**
 * `serve --port`. A loopback issuer on the configured listen port is this process itself, so it
 * moves with the port (else the metadata and connector URLs send clients to the old one); an
 * issuer anywhere else (a public name, a local proxy on another port) stays as configured.
 */
function withPort(config: Config, override: number | undefined): Config {
  if (override === undefined) return config;
  const issuer = new URL(config.oauth.issuer);
  const issuerPort = Number(issuer.port || (issuer.protocol === 'https:' ? 443 : 80));
  const server = { ...config.server, port: override };
  if (!isLoopbackHost(issuer.hostname) || issuerPort !== config.server.port) return { ...config, server };
  const path = config.oauth.issuer.replace(/^https?:\/\/[^/]+/, '');
  issuer.port = String(override);
  return { ...config, server, oauth: { ...config.oauth, issuer: issuer.origin + path } };
}

/** Opens the store the config names, runs `use` on it and closes it, whatever happens: the operators' store commands. */
async function withStore<T>(config: Config, use: (store: Store, clock: Clock) => Promise<T>): Promise<T> {
  const [{ openStore }, { systemClock }] = await Promise.all([import('../lib/store/open.ts'), import('../lib/clock.ts')]);
  const store = await openStore(config.oauth, systemClock);
  try {
    return await use(store, systemClock);
  } finally {
    await store.close();
  }
}

const program = new Command('mcp-front').description('One company sign-in in front of many MCP servers').showHelpAfterError();

program
  .command('serve')
  .description('run the authorization server and every route in one process (local work, single VM)')
  .option('-c, --config <file>', 'YAML config', DEFAULT_CONFIG)
  .option('-p, --port <port>', 'listen port (overrides server.port; a loopback issuer on server.port moves with it)', port)
  .action(async (options: { config: string; port?: number }) => {
    const { serve } = await import('./serve.ts'); // loaded on use: `connect` must start fast
    await serve(withPort(loadConfig(options.config), options.port));
  });

program
  .command('deploy')
  .description('put the gateway on Google Cloud from the same YAML: print the plan (default) or apply it')
  .requiredOption('-c, --config <file>', 'YAML config')
  .option('--plan', 'print every command and generated file, run nothing (the default)')
  .option('--apply', 'run the plan, skipping what already exists; stops at the first failure')
  .option('--out <dir>', 'where staged build contexts and generated files go, relative to the repository root', 'build/deploy')
  .option('--update-secrets', 'with --apply: add a new version to each existing secret from its environment variable (secrets are otherwise created once)')
  .action(async (options: { config: string; apply?: boolean; out: string; updateSecrets?: boolean }) => {
    const { loadDeployConfig } = await import('../infra/service-config.ts');
    const deploy = { ...loadDeployConfig(options.config, process.env), env: process.env, root: ROOT, outDir: options.out, updateSecrets: options.updateSecrets, out: (line: string) => process.stdout.write(`${line}\n`) };
    const { applyDeploy, printPlan } = await import('./deploy.ts');
    if (options.apply) await applyDeploy(deploy);
    else printPlan(deploy);
  });

program
  .command('firestore-rules')
  .description('deploy firestore.rules to one Firestore database through the Firebase Rules API, with gcloud\'s credentials (a deploy plan step)')
  .requiredOption('--project <id>', 'Google Cloud project')
  .requiredOption('--database <id>', 'Firestore database id, e.g. (default)')
  .option('--rules <file>', 'rules file', resolve(ROOT, 'firestore.rules'))
  .option('--api-base <url>', 'Firebase Rules API base URL')
  .action(async (options: { project: string; database: string; rules: string; apiBase?: string }) => {
    const { deployFirestoreRules } = await import('./firestore-rules.ts');
    const ruleset = await deployFirestoreRules({ project: options.project, database: options.database, rulesFile: options.rules, apiBase: options.apiBase ?? process.env.MCP_FRONT_RULES_API, token: process.env.CLOUDSDK_AUTH_ACCESS_TOKEN });
    process.stdout.write(`${options.database}: rules released (${ruleset})\n`);
  });

interface ConnectOptions {
  clientMetadataUrl?: string;
  clientId?: string;
  clientSecret?: string;
  callbackPort?: number;
}

async function authOptions(options: ConnectOptions) {
  const [{ followRedirects, systemBrowser }, { connectDir }] = await Promise.all([import('./connect/auth.ts'), import('./connect/token-store.ts')]);
  // MCP_FRONT_BROWSER: unset opens the system browser; none only prints the URL; follow is for automation.
  const choice = process.env.MCP_FRONT_BROWSER;
  const openBrowser = choice === 'follow' ? followRedirects : choice ? undefined : systemBrowser;
  const timeout = Number(process.env.MCP_FRONT_SIGNIN_TIMEOUT ?? 300);
  return {
    dir: connectDir(),
    clientMetadataUrl: options.clientMetadataUrl,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    callbackPort: options.callbackPort,
    openBrowser,
    signInTimeoutMs: timeout * 1000,
    log: (line: string) => process.stderr.write(`${line}\n`),
  };
}

async function authorizer(url: string, options: ConnectOptions) {
  const { Authorizer } = await import('./connect/auth.ts');
  return new Authorizer(url, await authOptions(options));
}

const withClientOptions = (command: Command) =>
  command
    .option('--client-metadata-url <url>', 'your Client ID Metadata Document (https), used as client_id where the server supports it')
    .option('--client-id <id>', 'a client registered with the server (else dynamic registration)')
    .option('--client-secret <secret>', 'its secret, for a confidential client')
    .option('--callback-port <port>', 'fixed loopback port for the sign-in callback', port);

withClientOptions(
  program
    .command('connect')
    .description('a stdio MCP server for Claude Desktop and other stdio-only clients, bridging to a remote OAuth-protected MCP server')
    .argument('<url>', 'the remote MCP endpoint, e.g. https://mcp.example.com/notion/mcp (with --all: the gateway)')
    .option('--all', 'every route of an mcp-front gateway as one server, one sign-in, tools named <route>__<tool>'),
)
  .action(async (url: string, options: ConnectOptions & { all?: boolean }) => {
    if (options.all) {
      const { runAllRoutes } = await import('./connect/all-routes.ts');
      return runAllRoutes(url, await authOptions(options));
    }
    const { runBridge } = await import('./connect/bridge.ts');
    const auth = await authorizer(url, options);
    // stdout carries MCP only; everything for people goes to stderr.
    await runBridge({ url, auth, input: process.stdin, output: (line) => process.stdout.write(`${line}\n`), log: (line) => process.stderr.write(`${line}\n`) });
  });

withClientOptions(program.command('login').description('sign in to a remote MCP server ahead of time (for clients that time out during sign-in)').argument('<url>', 'the remote MCP endpoint'))
  .action(async (url: string, options: ConnectOptions) => {
    await (await authorizer(url, options)).accessToken();
  });

program
  .command('logout')
  .description('forget the stored sign-in for a remote MCP server (all of them without a URL)')
  .argument('[url]', 'the remote MCP endpoint')
  .action(async (url: string | undefined) => {
    const { GrantFile, connectDir, listGrants } = await import('./connect/token-store.ts');
    const grants = listGrants(connectDir()).filter((g) => !url || g.server === url || g.resource === url);
    for (const g of grants) new GrantFile(connectDir(), g.resource).remove();
    process.stdout.write(`forgot ${grants.length} sign-in${grants.length === 1 ? '' : 's'}\n`);
  });

program
  .command('status')
  .description('with --config: what Cloud Run runs for each route and its drift from the YAML; without: the sign-ins `connect` keeps')
  .option('-c, --config <file>', 'YAML config of a deployment')
  .action(async (options: { config?: string }) => {
    if (!options.config) {
      const { connectDir, listGrants } = await import('./connect/token-store.ts');
      const grants = listGrants(connectDir());
      for (const g of grants) process.stdout.write(`${g.resource}  client ${g.clientId}  ${g.refreshToken ? 'signed in' : 'signed out'}${g.expiresAt ? `  access token until ${new Date(g.expiresAt).toISOString()}` : ''}\n`);
      if (!grants.length) process.stdout.write('no stored sign-ins\n');
      return;
    }
    const [{ loadDeployConfig }, { renderStatuses, routeStatuses }] = await Promise.all([import('../infra/service-config.ts'), import('./status.ts')]);
    const statuses = await routeStatuses(loadDeployConfig(options.config!, process.env).config);
    process.stdout.write(`${renderStatuses(statuses)}\n`);
    if (statuses.some((s) => s.drift.length)) process.exitCode = 2;
  });

program
  .command('doctor')
  .description('check a live deployment from outside, as Claude.ai sees it, with the fix for each failure')
  .argument('<url>', 'the issuer, e.g. https://mcp.example.com')
  .option('-r, --route <path...>', 'routes to check, e.g. /notion (default: every route in --config)')
  .option('-c, --config <file>', 'take the routes from this config')
  .action(async (url: string, options: { route?: string[]; config?: string }) => {
    const { configRoutes, renderChecks, runDoctor } = await import('./doctor.ts');
    const fromConfig = !options.route && options.config ? configRoutes(options.config, process.env) : undefined;
    if (fromConfig?.note) process.stdout.write(`note: ${fromConfig.note}\n`);
    const routes = options.route ?? fromConfig?.routes ?? [];
    const checks = await runDoctor(url, routes);
    process.stdout.write(`${renderChecks(checks)}\n`);
    if (checks.some((c) => !c.ok)) process.exitCode = 1;
  });

program
  .command('revoke')
  .description('end every grant of a user (offboarding) or of a client; their access tokens die within token_ttl')
  .requiredOption('-c, --config <file>', 'YAML config (names the store)')
  .option('--user <email>', 'the user to cut off')
  .option('--client <id>', 'the client to cut off (its registration is deleted too)')
  .action(async (options: { config: string; user?: string; client?: string }) => {
    if (!options.user === !options.client) throw new InvalidArgumentError('give exactly one of --user or --client');
    const config = loadConfig(options.config);
    const { revokeUser, revokeClient } = await import('../lib/oauth/revocation.ts');
    const count = await withStore(config, (store, clock) => (options.user ? revokeUser(store, clock, options.user) : revokeClient(store, clock, options.client!)));
    process.stdout.write(`revoked ${count} grant${count === 1 ? '' : 's'} of ${options.user ?? `client ${options.client}`}; access tokens already issued expire within ${config.oauth.tokenTtl / 1000} s\n`);
  });

const grants = program.command('grants').description('the grants users gave clients (one per connection), in the store the config names');
grants
  .command('list')
  .description('live grants: user, client, routes, when given and last used')
  .requiredOption('-c, --config <file>', 'YAML config (names the store)')
  .option('--user <email>', 'only this user\'s')
  .action(async (options: { config: string; user?: string }) => {
    const config = loadConfig(options.config);
    const { listGrants, renderGrants } = await import('./grants.ts');
    process.stdout.write(`${renderGrants(await withStore(config, (store, clock) => listGrants(store, clock, config, options.user)))}\n`);
  });

const credentials = program.command('credentials').description('users\' own credentials for routes (routes[].user_credential)');
credentials
  .command('delete')
  .description('delete a user\'s credential for a route: their clients get no new token for it until they give one again')
  .requiredOption('-c, --config <file>', 'YAML config (names the store)')
  .requiredOption('--user <email>', 'the user')
  .requiredOption('--route <path>', 'the route, e.g. /notion')
  .action(async (options: { config: string; user: string; route: string }) => {
    const config = loadConfig(options.config);
    if (!config.routes.some((r) => r.path === options.route)) throw new InvalidArgumentError(`${options.config} has no route ${options.route}`);
    const { deleteUserCredentialsByEmail } = await import('../lib/oauth/user-credentials.ts');
    const count = await withStore(config, (store) => deleteUserCredentialsByEmail(store, options.user, options.route));
    process.stdout.write(
      count
        ? `deleted ${options.user}'s credential for ${options.route}; sessions running with it end when their client refreshes (within ${config.oauth.tokenTtl / 1000} s), and no new token for ${options.route} is issued until they give one again\n`
        : `${options.user} has no credential stored for ${options.route}\n`,
    );
  });
credentials
  .command('reseal')
  .description('seal every stored credential again under the newest sealing key (MCP_FRONT_SEALING_KEY, else the store\'s in local mode), before the older keys are dropped')
  .requiredOption('-c, --config <file>', 'YAML config (names the store)')
  .action(async (options: { config: string }) => {
    const config = loadConfig(options.config);
    const [{ resealAllUserCredentials }, { existingSealingKeys }] = await Promise.all([import('../lib/oauth/credential-reseal.ts'), import('../lib/tokens/credential-keys.ts')]);
    const report = await withStore(config, async (store) => {
      const sealing = await existingSealingKeys(store, process.env).catch((err: Error) => {
        throw new InvalidArgumentError(err.message);
      });
      return resealAllUserCredentials(store, { sealing, routes: new Map() });
    });
    process.stdout.write(`re-sealed ${report.resealed}, already under the newest key ${report.current}, opened by no key ${report.unreadable}\n`);
    // Not a failure of this command: no key, old or new, opens them, so dropping a key changes nothing for them.
    if (report.unreadable) process.stderr.write(`${report.unreadable} stored credential${report.unreadable === 1 ? '' : 's'} opened by no key held: those users are asked for theirs again at their next connection\n`);
  });

program
  .command('keys')
  .description('signing keys kept in the store (local mode; production keeps the key in Secret Manager)')
  .command('rotate')
  .description('start signing with a new key; the old one stays in the JWKS until its tokens have expired')
  .requiredOption('-c, --config <file>', 'YAML config (names the store)')
  .action(async (options: { config: string }) => {
    const config = loadConfig(options.config);
    const kid = await withStore(config, (store, clock) => rotateSigningKey(store, clock, config.oauth.tokenTtl));
    process.stdout.write(`new signing key ${kid}; restart the server (or its instances) to use it\n`);
  });

program
  .command('keygen')
  .description('print a new ES256 signing key (JWK) for MCP_FRONT_SIGNING_KEY / Secret Manager')
  .option('--rotate', 'read the current secret value on stdin; print a key set with a new key first (it signs, or seals) and the current ones kept for what they signed or sealed')
  .option('--credential-key', 'a 256-bit key instead (mcp-front-sealing-key, mcp-front-credential-key-<route>); its secret holds up to 3, comma-separated, the first sealing')
  .option('--stage', 'with --credential-key: read the current value on stdin; print it with a new key last (it opens, and seals nothing yet)')
  .option('--promote', 'with --credential-key: read the current value on stdin; print it with its last key (the staged one) first, sealing from now on')
  .option('--drop-old', 'with --credential-key: read the current value on stdin; print its first key alone (what the others sealed no longer opens)')
  .action(async (options: { rotate?: boolean; credentialKey?: boolean; stage?: boolean; promote?: boolean; dropOld?: boolean }) => {
    const transitions = (['rotate', 'stage', 'promote', 'dropOld'] as const).filter((t) => options[t]);
    if (transitions.length > 1) throw new InvalidArgumentError('give at most one of --rotate, --stage, --promote, --drop-old');
    const transition = transitions[0];
    if (options.credentialKey) {
      const { credentialKeyRotation, generateCredentialKey } = await import('../lib/tokens/credential-keys.ts');
      if (!transition) return void process.stdout.write(`${generateCredentialKey()}\n`);
      let value: string;
      try {
        value = credentialKeyRotation[transition](await readStdin(), 'the value on stdin');
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
      return void process.stdout.write(`${value}\n`);
    }
    if (transition && transition !== 'rotate') throw new InvalidArgumentError(`--${transition === 'dropOld' ? 'drop-old' : transition} is for --credential-key`);
    const value = options.rotate ? await rotatedSigningKeys(await readStdin()) : await generateSigningJwk();
    process.stdout.write(`${JSON.stringify(value)}\n`);
  });

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

try {
  await program.parseAsync();
} catch (err) {
  if (USER_ERRORS.some((type) => err instanceof type)) {
    process.stderr.write(`mcp-front: ${(err as Error).message}\n`);
    process.exit(1);
  }
  throw err;
}
