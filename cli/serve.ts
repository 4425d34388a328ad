import type { Config } from '../lib/config/config.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { startStack } from './stack.ts';

const PROVIDER_NAMES: Record<Config['oauth']['provider'], string> = {
  dev: 'dev (local sign-in page: any email, loopback only)',
  google: 'Google',
  github: 'GitHub',
  oidc: 'OpenID Connect',
};

function describeStore(config: Config): string {
  if (config.oauth.storage === 'sqlite') return `sqlite (${config.oauth.dataDir}/mcp-front.sqlite)`;
  return process.env.FIRESTORE_EMULATOR_HOST ? `firestore (emulator at ${process.env.FIRESTORE_EMULATOR_HOST})` : `firestore (project ${config.oauth.gcpProject ?? 'from environment'})`;
}

/** `mcp-front serve`: the whole stack in one process until SIGINT/SIGTERM, then a clean exit 0. */
export async function serve(config: Config, log: Logger = createLogger()): Promise<void> {
  const stack = await startStack(config, { log });
  const lines = [
    `mcp-front is up`,
    `  issuer:    ${stack.issuer}`,
    `  store:     ${describeStore(config)}`,
    `  sign-in:   ${PROVIDER_NAMES[config.oauth.provider]}`,
    `  routes (add these URLs to your MCP client as connectors):`,
    ...stack.routes.map(({ route, connectorUrl }) => `    ${connectorUrl.padEnd(40)} ${route.type === 'stdio' ? `stdio: ${route.command.join(' ')}` : `http → ${route.backend}`}`),
    `  Ctrl-C stops it.`,
  ];
  process.stdout.write(lines.join('\n') + '\n');

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info('shutting down', { signal });
      stack.close().then(resolve, (err: unknown) => {
        log.error('shutdown failed', { error: String(err) });
        resolve();
      });
    };
    // `on`, not `once`: Ctrl-C under `npm start` delivers SIGINT twice (the terminal's and the
    // one npm forwards), and the default action of the second would cut the shutdown short.
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
