#!/usr/bin/env node
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig } from '../lib/config/load.ts';
import { PortInUseError } from '../lib/http/node-server.ts';
import type { Config } from '../lib/config/config.ts';
import { serve } from './serve.ts';

const DEFAULT_CONFIG = resolve(fileURLToPath(import.meta.url), '../../examples/local.yaml');

/** Errors a user can fix: printed as one clear message, no stack trace, exit 1. */
const USER_ERRORS = [ConfigError, PortInUseError];

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

function withPort(config: Config, override: number | undefined): Config {
  return override === undefined ? config : { ...config, server: { ...config.server, port: override } };
}

const program = new Command('mcp-front').description('One company sign-in in front of many MCP servers').showHelpAfterError();

program
  .command('serve')
  .description('run the authorization server and every route in one process (local work, single VM)')
  .option('-c, --config <file>', 'YAML config', DEFAULT_CONFIG)
  .option('-p, --port <port>', 'listen port (overrides server.port)', port)
  .action(async (options: { config: string; port?: number }) => {
    await serve(withPort(loadConfig(options.config), options.port));
  });

try {
  await program.parseAsync();
} catch (err) {
  if (USER_ERRORS.some((type) => err instanceof type)) {
    process.stderr.write(`mcp-front: ${(err as Error).message}\n`);
    process.exit(1);
  }
  throw err;
}
