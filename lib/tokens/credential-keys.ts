import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { RouteConfig } from '../config/config.ts';
import type { Store } from '../store/store.ts';

// The keys of users' own credentials (routes[].user_credential), 32 random bytes each:
// - the sealing key, which seals the stored credentials at rest: the authorization server alone
//   holds it;
// - one key per credential route, which seals a user's credential inside their access token for
//   that route: the authorization server and that one route hold it. A route can open what is
//   sealed for it, and nothing sealed for another route, nor anything in the store.
// Production: Secret Manager, through the environment (`deploy` creates the secrets and grants
// each to exactly those services). Local mode: in the store, generated on first start.

export const SEALING_KEY_VARIABLE = 'MCP_FRONT_SEALING_KEY';
export const SEALING_KEY_DOC = 'credential-sealing';

/** The environment variable a route's credential key is read from (the authorization server reads them all). */
export function routeKeyVariable(route: Pick<RouteConfig, 'name'>): string {
  return `MCP_FRONT_CREDENTIAL_KEY_${route.name.toUpperCase().replaceAll('-', '_')}`;
}

const routeKeyDoc = (route: Pick<RouteConfig, 'name'>) => `credential-route-${route.name}`;

export interface CredentialKeys {
  readonly sealing: Uint8Array;
  /** By route path. */
  readonly routes: ReadonlyMap<string, Uint8Array>;
}

/** A new key as a secret's value: 32 random bytes, base64url. */
export function generateCredentialKey(): string {
  return randomBytes(32).toString('base64url');
}

export function parseCredentialKey(text: string, variable: string): Uint8Array {
  const trimmed = text.trim();
  const key = /^[A-Za-z0-9_-]{43}$/.test(trimmed) ? Buffer.from(trimmed, 'base64url') : undefined;
  if (key?.length !== 32) throw new Error(`${variable} must be 32 bytes, base64url (mcp-front deploy creates it)`);
  return new Uint8Array(key);
}

type Env = Readonly<Record<string, string | undefined>>;

async function storedKey(store: Store | undefined, clock: Clock, doc: string, variable: string): Promise<Uint8Array> {
  if (!store) throw new Error(`${variable} is not set`);
  let stored = await store.get<{ key: string }>('keys', doc);
  if (!stored) {
    // Instances starting together race here: the first create wins and the others read it back.
    await store.create('keys', doc, { key: generateCredentialKey(), createdAt: clock.now() });
    stored = (await store.get<{ key: string }>('keys', doc))!;
  }
  return parseCredentialKey(stored.key, `keys/${doc}`);
}

/** One key: from its environment variable when set, else (local mode) from the store. */
async function loadKey(store: Store | undefined, clock: Clock, env: Env, variable: string, doc: string): Promise<Uint8Array> {
  const value = env[variable];
  return value ? parseCredentialKey(value, variable) : storedKey(store, clock, doc, variable);
}

/** The authorization server's: the sealing key and every credential route's key. */
export async function loadCredentialKeys(store: Store | undefined, clock: Clock, routes: readonly RouteConfig[], env: Env): Promise<CredentialKeys> {
  const sealing = await loadKey(store, clock, env, SEALING_KEY_VARIABLE, SEALING_KEY_DOC);
  const entries = await Promise.all(routes.filter((r) => r.userCredential).map(async (r) => [r.path, await loadKey(store, clock, env, routeKeyVariable(r), routeKeyDoc(r))] as const));
  return { sealing, routes: new Map(entries) };
}

/** A route's own key (a deployed route has no store to take it from: only its secret). */
export async function loadRouteCredentialKey(store: Store | undefined, clock: Clock, route: RouteConfig, env: Env): Promise<Uint8Array> {
  return loadKey(store, clock, env, routeKeyVariable(route), routeKeyDoc(route));
}
