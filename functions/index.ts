import * as ff from '@google-cloud/functions-framework';
import { systemClock } from '../lib/clock.ts';
import { loadConfig } from '../lib/config/load.ts';
import { clientIp } from '../lib/http/client-ip.ts';
import type { Handler } from '../lib/http/types.ts';
import { createLogger } from '../lib/log.ts';
import { openStore } from '../lib/store/open.ts';
import { loadAssertionKeys, loadKeySet } from '../lib/tokens/keys.ts';
import { credentialRoutes, needsAssertionKey } from '../lib/config/config.ts';
import { loadCredentialKeys, routeKeyVariable, SEALING_KEY_VARIABLE } from '../lib/tokens/credential-keys.ts';
import { createOAuthApp } from './oauth/app.ts';
import { toWebRequest, writeWebResponse } from './express-adapter.ts';
import type { Request as ExpressRequest, Response as ExpressResponse } from 'express';

// The Cloud Function `oauth`: the authorization server's handlers behind the Functions
// Framework. Config from MCP_FRONT_CONFIG, the signing key from MCP_FRONT_SIGNING_KEY and the
// identity-assertion key (to publish) from MCP_FRONT_ASSERTION_KEY (Secret Manager), Firestore
// from the config. Built once per instance, on first request.

const log = createLogger({ base: { service: 'mcp-front-oauth' } });

/**
 * Deployed (Cloud Run names the service in K_SERVICE; not the Firebase emulator), every key the
 * config needs comes from Secret Manager through the environment, as the deploy plan mounts
 * them. One missing means the plan forgot a grant: the function refuses to start, and the
 * deploy fails at once, instead of quietly making keys of its own in Firestore that no route
 * shares (assertions nobody can verify, credentials no route can open).
 */
function missingSecrets(config: ReturnType<typeof loadConfig>, env: NodeJS.ProcessEnv): string[] {
  const credentialed = credentialRoutes(config);
  const needed = [
    'MCP_FRONT_SIGNING_KEY',
    ...(needsAssertionKey(config) ? ['MCP_FRONT_ASSERTION_KEY'] : []),
    ...(credentialed.length ? [SEALING_KEY_VARIABLE, ...credentialed.map(routeKeyVariable)] : []),
  ];
  return needed.filter((name) => !env[name]);
}

const CONFIG_FILE = process.env.MCP_FRONT_CONFIG ?? 'mcp-front.yaml';
/** Deployed, the config is read (and its secrets checked) as the module loads; elsewhere on first request. */
const deployedConfig = process.env.K_SERVICE && process.env.FUNCTIONS_EMULATOR !== 'true' ? loadConfig(CONFIG_FILE) : undefined;
if (deployedConfig) {
  const missing = missingSecrets(deployedConfig, process.env);
  if (missing.length) {
    log.error(`refusing to start: ${missing.join(', ')} not set; the deploy plan mounts each from Secret Manager (run mcp-front deploy again, or grant the function's account the secret)`);
    throw new Error(`missing ${missing.join(', ')}`);
  }
}
/** The handler, and how many proxies in front of the function add X-Forwarded-For entries we may believe. */
let app: Promise<{ handler: Handler; trustedProxies: number }> | undefined;

async function build(): Promise<{ handler: Handler; trustedProxies: number }> {
  const config = deployedConfig ?? loadConfig(CONFIG_FILE);
  const store = await openStore(config.oauth, systemClock);
  const accessKeys = await loadKeySet(store, systemClock, { fromEnv: process.env.MCP_FRONT_SIGNING_KEY });
  // Only its public half is used here: published in /jwks.json for the backends that verify assertions.
  const assertion = needsAssertionKey(config) ? await loadAssertionKeys(store, systemClock, { fromEnv: process.env.MCP_FRONT_ASSERTION_KEY }) : undefined;
  const keys = assertion ? { ...accessKeys, assertion } : accessKeys;
  // Users' own credentials: the sealing key (MCP_FRONT_SEALING_KEY) and each credential route's key.
  const credentialKeys = credentialRoutes(config).length ? await loadCredentialKeys(store, systemClock, config.routes, process.env) : undefined;
  return { handler: createOAuthApp({ config, store, keys, clock: systemClock, log, credentialKeys }), trustedProxies: config.server.trustedProxies };
}

/** The function body, shared with the Firebase emulator wrapper (functions/firebase/index.ts). */
export async function serveOAuth(req: ExpressRequest, res: ExpressResponse): Promise<void> {
  app ??= build().catch((err: unknown) => {
    app = undefined; // a failed start (store down) is retried on the next request
    throw err;
  });
  const { handler, trustedProxies } = await app;
  let request: Request;
  try {
    request = toWebRequest(req);
  } catch {
    res.status(400).json({ error: 'invalid_request', error_description: 'malformed Host or request target' });
    return;
  }
  await writeWebResponse(await handler(request, { clientIp: clientIp(req.headers['x-forwarded-for'], req.socket.remoteAddress, trustedProxies) }), res);
}

ff.http('oauth', serveOAuth);
