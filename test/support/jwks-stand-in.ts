import { createServer } from 'node:http';
import { systemClock } from '../../lib/clock.ts';
import { openSqliteStore } from '../../lib/store/sqlite-store.ts';
import { loadKeySet, type KeySet } from '../../lib/tokens/keys.ts';

// The issuer as a deployed route sees it: a fresh signing key set, and a loopback server that
// answers every request with its JWKS (the route fetches `${issuer}/jwks.json`). Tests sign
// tokens with `keys.current` and start route processes against `issuer`.

export interface JwksStandIn {
  readonly issuer: string;
  readonly keys: KeySet;
  close(): Promise<void>;
}

export async function startJwksStandIn(): Promise<JwksStandIn> {
  const store = await openSqliteStore({ file: ':memory:', clock: systemClock });
  const keys = await loadKeySet(store, systemClock);
  await store.close();
  const server = createServer((_req, res) => res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: keys.published })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    issuer: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    keys,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a route's keep-alive connection must not hold the close
      }),
  };
}
