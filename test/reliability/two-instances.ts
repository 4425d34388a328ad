import { systemClock } from '../../lib/clock.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { parseDuration } from '../../lib/config/duration.ts';
import { Client, StreamableHTTPClientTransport } from '../../lib/mcp/sdk.ts';
import { openSessionStore } from '../../lib/store/open.ts';
import type { Collection } from '../../lib/store/store.ts';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';
import { descendantsOf } from '../support/process-table.ts';
import { alive } from '../support/route-harness.ts';
import { startInstancePair, type InstancePair, type RouteInstance } from '../support/route-instances.ts';
import { echoCalls, quantile, vanishMidCall } from './soak.ts';

// The soak's two-instance phase: two route instances (services/route/main.ts, the Cloud Run
// entrypoint) of the demo stdio route on the Firestore emulator, behind a loopback round-robin
// balancer that alternates requests between them, as Cloud Run spreads an API client's
// requests. Every session therefore has one owner (which runs its child) and every other
// request is relayed to it through Firestore. Workers churn sessions as in the main soak (one in
// ten vanishes mid-call, left to the owner's idle reaper); after a rest the run counts what is
// left: child processes of either instance, and session, relay and lease documents.

export interface TwoInstanceResult {
  readonly skipped?: string;
  readonly totals: { sessions: number; vanished: number; calls: number; errors: number; errorKinds: Record<string, number> };
  readonly latency: { p50: number; p99: number; max: number };
  /** Requests each instance got through the balancer. */
  readonly requestsPerInstance: number[];
  /** At rest, after the reaper ran: live children (zombies too) of both instances. */
  readonly childrenAtRest: number;
  /** At rest: live (unexpired) documents per collection; any is an orphan, as no session is open. */
  readonly documentsAtRest: Partial<Record<Collection, number>>;
  /** After SIGTERM to both: their exit codes, processes of theirs still alive, leases left. */
  readonly exitCodes: Array<number | null>;
  readonly leftAfterExit: number;
  readonly leasesAfterExit: number;
}

const SESSION_COLLECTIONS: Collection[] = ['mcpSessions', 'mcpRelay', 'routeInstances'];

export async function runTwoInstanceSoak(options: { durationMs: number; workers: number; idleTimeout: string; log?: (line: string) => void }): Promise<TwoInstanceResult> {
  const log = options.log ?? (() => undefined);
  const emulator = await startFirestoreEmulator();
  const empty = { totals: { sessions: 0, vanished: 0, calls: 0, errors: 0, errorKinds: {} }, latency: { p50: 0, p99: 0, max: 0 }, requestsPerInstance: [], childrenAtRest: 0, documentsAtRest: {}, exitCodes: [], leftAfterExit: 0, leasesAfterExit: 0 };
  if ('skip' in emulator) return { skipped: emulator.skip, ...empty };
  let pair: InstancePair | undefined;
  try {
    const route = `    type: stdio\n    command: [${process.execPath}, examples/demo-server/server.ts]\n    timeout: 30s\n    idle_timeout: ${options.idleTimeout}\n    max_sessions_per_user: 100000\n    max_sessions_per_instance: 100000`;
    pair = await startInstancePair({ emulatorHost: emulator.host, path: '/demo', route, lease: '5s' });
    const { balancer, yaml } = pair;
    const instances = [pair.a, pair.b];
    const token = await balancer.token('dev:soak@example.com');

    const latencies: number[] = [];
    const totals = { sessions: 0, vanished: 0, calls: 0, errors: 0, errorKinds: {} as Record<string, number> };
    const fail = (what: string, err: unknown) => {
      totals.errors++;
      const key = `${what}: ${String((err as Error)?.message ?? err).slice(0, 80)}`;
      totals.errorKinds[key] = (totals.errorKinds[key] ?? 0) + 1;
    };
    const session = async (worker: number, n: number) => {
      const transport = new StreamableHTTPClientTransport(new URL(balancer.url), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
      const client = new Client({ name: `soak-2i-${worker}`, version: '1' });
      totals.sessions++;
      try {
        await client.connect(transport);
        await echoCalls(client, `w${worker}-s${n}`, 1 + (n % 5), {
          latency: (ms) => (latencies.push(ms), totals.calls++),
          wrong: (err) => fail('wrong answer', err),
        });
        if (n % 10 === 7) {
          totals.vanished++;
          await vanishMidCall(client);
          return;
        }
        await transport.terminateSession();
        await client.close();
      } catch (err) {
        fail('/demo two instances', err);
        await client.close().catch(() => undefined);
      }
    };

    log(`two instances: ${options.workers} workers for ${Math.round(options.durationMs / 1000)} s`);
    const deadline = Date.now() + options.durationMs;
    const progress = setInterval(() => log(`two instances: calls=${totals.calls} errors=${totals.errors} children=${children(instances)}`), 5_000);
    await Promise.all(
      Array.from({ length: options.workers }, async (_, worker) => {
        for (let n = worker; Date.now() < deadline; n += options.workers) await session(worker, n);
      }),
    );
    clearInterval(progress);

    // Rest: the vanished sessions' owners reap them at idle_timeout; their records expire then.
    const idleMs = parseDuration(options.idleTimeout)!;
    const restUntil = Date.now() + idleMs * 2 + 10_000;
    while (Date.now() < restUntil && children(instances) > 0) await new Promise((resolve) => setTimeout(resolve, 1000));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, restUntil - Date.now())));
    const childrenAtRest = children(instances);
    process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
    const store = await openSessionStore(parseConfig(yaml, {}, 'two-instances.yaml').oauth, systemClock);
    const documentsAtRest: Partial<Record<Collection, number>> = {};
    for (const collection of SESSION_COLLECTIONS.filter((c) => c !== 'routeInstances')) documentsAtRest[collection] = (await store.list(collection)).length;

    const everything = instances.flatMap((i) => [i.pid(), ...descendantsOf(i.pid()).map((p) => p.pid)]);
    const exitCodes = await pair.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const leftAfterExit = everything.filter(alive).length;
    const leasesAfterExit = (await store.list('routeInstances')).length;
    await store.close();
    const sorted = [...latencies].sort((a, b) => a - b);
    const requestsPerInstance = instances.map((_, index) => balancer.sent.filter((i) => i === index).length);
    return { totals, latency: { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? 0 }, requestsPerInstance, childrenAtRest, documentsAtRest, exitCodes, leftAfterExit, leasesAfterExit };
  } finally {
    await pair?.stop();
    await emulator.stop();
  }
}

const children = (instances: readonly RouteInstance[]) => instances.reduce((n, i) => n + descendantsOf(i.pid()).length, 0);

