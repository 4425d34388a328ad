import { createOAuthApp, type OAuthAppOptions } from '../../functions/oauth/app.ts';
import { ManualClock } from '../../lib/clock.ts';
import type { Config } from '../../lib/config/config.ts';
import { parseConfig } from '../../lib/config/load.ts';
import type { Handler } from '../../lib/http/types.ts';
import { silentLogger } from '../../lib/log.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import type { Store } from '../../lib/store/store.ts';
import { loadKeySet, type KeySet } from '../../lib/tokens/keys.ts';

// One authorization server called in process (no socket): a fresh in-memory SQLite store and
// a clock the test moves, so expiry and grace windows are exact.

export const ISSUER = 'http://127.0.0.1:8787';

export interface AuthorizationServer {
  readonly handler: Handler;
  readonly issuer: string;
  readonly store: Store;
  readonly clock: ManualClock;
  readonly keys: KeySet;
  readonly config: Config;
}

export async function authorizationServer(oauthYaml = '', options: OAuthAppOptions & { store?: (clock: ManualClock) => Promise<Store> } = {}): Promise<AuthorizationServer> {
  const clock = new ManualClock();
  const store = await (options.store ?? ((c: ManualClock) => openSqliteStore({ file: ':memory:', clock: c })))(clock);
  const config = parseConfig(
    `oauth:\n  issuer: ${ISSUER}\n  provider: dev\n${oauthYaml}routes:\n  - { path: /demo, type: stdio, command: [node, examples/demo-server/server.ts] }\n  - { path: /other, type: stdio, command: [node, examples/demo-server/server.ts] }\n`,
    {},
  );
  const keys = await loadKeySet(store, clock);
  const handler = createOAuthApp({ config, store, keys, clock, log: silentLogger }, options);
  return { handler, issuer: ISSUER, store, clock, keys, config };
}

export async function countOf(store: Store, collection: 'clients' | 'codes' | 'grants' | 'browserSessions' | 'authRequests', field: string, value: string): Promise<number> {
  return (await store.find(collection, field, value)).length;
}
