import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { RouteConfig } from '../config/config.ts';
import { ConfigError } from '../config/load.ts';
import type { Store } from '../store/store.ts';

// The keys of users' own credentials (routes[].user_credential), 32 random bytes each:
// - the sealing key, which seals the stored credentials at rest: the authorization server alone
//   holds it;
// - one key per credential route, which seals a user's credential inside their access token for
//   that route: the authorization server and that one route hold it. A route can open what is
//   sealed for it, and nothing sealed for another route, nor anything in the store.
// Production: Secret Manager, through the environment (`deploy` creates the secrets and grants
// each to exactly those services). Local mode: in the store, generated on first start.
//
// A secret's value is a key set: one key, or a few comma-separated, the one that seals first and
// the others only opening what was sealed before a rotation (docs/deploy.md, "Rotating the
// credential keys"). Opening tries the keys in turn, one AES-GCM attempt each: MAX_CREDENTIAL_KEYS
// bounds what a value that opens under none costs.

export const SEALING_KEY_VARIABLE = 'MCP_FRONT_SEALING_KEY';
export const SEALING_KEY_DOC = 'credential-sealing';

/** The environment variable a route's credential key is read from (the authorization server reads them all). */
export function routeKeyVariable(route: Pick<RouteConfig, 'name'>): string {
  return `MCP_FRONT_CREDENTIAL_KEY_${route.name.toUpperCase().replaceAll('-', '_')}`;
}

const routeKeyDoc = (route: Pick<RouteConfig, 'name'>) => `credential-route-${route.name}`;

/** Keys newest first: the first seals, every one opens. Never empty, at most MAX_CREDENTIAL_KEYS. */
export type CredentialKeySet = readonly Uint8Array[];

/** Enough for a staged key, the current one and the one before; more means old keys were never dropped. */
export const MAX_CREDENTIAL_KEYS = 3;

export interface CredentialKeys {
  readonly sealing: CredentialKeySet;
  /** By route path. */
  readonly routes: ReadonlyMap<string, CredentialKeySet>;
}

/** A new key as a secret's value: 32 random bytes, base64url. */
export function generateCredentialKey(): string {
  return randomBytes(32).toString('base64url');
}

export function parseCredentialKey(text: string, variable: string): Uint8Array {
  const trimmed = text.trim();
  const key = /^[A-Za-z0-9_-]{43}$/.test(trimmed) ? Buffer.from(trimmed, 'base64url') : undefined;
  if (key?.length !== 32) throw new ConfigError(`${variable} must be 32 bytes, base64url (mcp-front deploy creates it)`);
  return new Uint8Array(key);
}

/** A secret's value: one key, or up to MAX_CREDENTIAL_KEYS comma-separated, newest first. */
export function parseCredentialKeys(text: string, variable: string): CredentialKeySet {
  const parts = text.split(',');
  if (parts.length > MAX_CREDENTIAL_KEYS) throw new ConfigError(`${variable} holds ${parts.length} keys, at most ${MAX_CREDENTIAL_KEYS}: drop the old ones once nothing needs them (mcp-front keygen --credential-key --drop-old)`);
  const keys = parts.map((part) => parseCredentialKey(part, variable));
  if (new Set(parts.map((p) => p.trim())).size !== parts.length) throw new ConfigError(`${variable} holds the same key twice`);
  return keys;
}

const keyText = (key: Uint8Array) => Buffer.from(key).toString('base64url');

/** The current keys with room for one more: a value the services would refuse to start with is never printed. */
function keysWithRoom(current: string, variable: string): string[] {
  const keys = parseCredentialKeys(current, variable).map(keyText);
  if (keys.length >= MAX_CREDENTIAL_KEYS) throw new Error(`${variable} already holds ${keys.length} keys, at most ${MAX_CREDENTIAL_KEYS}: drop the old ones first (mcp-front keygen --credential-key --drop-old)`);
  return keys;
}

/** The transitions of a key set's value (`mcp-front keygen --credential-key …`), each from the current value. */
export const credentialKeyRotation = {
  /** A new key first, sealing from now on; the current ones kept to open what they sealed. */
  rotate: (current: string, variable: string) => [generateCredentialKey(), ...keysWithRoom(current, variable)].join(','),
  /** A new key last: it opens everywhere the set is held, and seals nothing until promoted. */
  stage: (current: string, variable: string) => [...keysWithRoom(current, variable), generateCredentialKey()].join(','),
  /** The last key (the staged one) first: it seals from now on. */
  promote: (current: string, variable: string) => {
    const keys = parseCredentialKeys(current, variable).map(keyText);
    if (keys.length < 2) throw new Error(`${variable} holds one key: nothing staged to promote (mcp-front keygen --credential-key --stage)`);
    return [keys.at(-1)!, ...keys.slice(0, -1)].join(',');
  },
  /** The sealing key alone: what the others sealed no longer opens. */
  dropOld: (current: string, variable: string) => keyText(parseCredentialKeys(current, variable)[0]!),
};

type Env = Readonly<Record<string, string | undefined>>;

async function storedKey(store: Store | undefined, clock: Clock, doc: string, variable: string): Promise<CredentialKeySet> {
  if (!store) throw new ConfigError(`${variable} is not set`);
  let stored = await store.get<{ key: string }>('keys', doc);
  if (!stored) {
    // Instances starting together race here: the first create wins and the others read it back.
    await store.create('keys', doc, { key: generateCredentialKey(), createdAt: clock.now() });
    stored = (await store.get<{ key: string }>('keys', doc))!;
  }
  return parseCredentialKeys(stored.key, `keys/${doc}`);
}

/** One key: from its environment variable when set, else (local mode) from the store. */
async function loadKey(store: Store | undefined, clock: Clock, env: Env, variable: string, doc: string): Promise<CredentialKeySet> {
  const value = env[variable];
  return value ? parseCredentialKeys(value, variable) : storedKey(store, clock, doc, variable);
}

/** The authorization server's: the sealing key and every credential route's key. */
export async function loadCredentialKeys(store: Store | undefined, clock: Clock, routes: readonly RouteConfig[], env: Env): Promise<CredentialKeys> {
  const sealing = await loadKey(store, clock, env, SEALING_KEY_VARIABLE, SEALING_KEY_DOC);
  const entries = await Promise.all(routes.filter((r) => r.userCredential).map(async (r) => [r.path, await loadKey(store, clock, env, routeKeyVariable(r), routeKeyDoc(r))] as const));
  return { sealing, routes: new Map(entries) };
}

/** A route's own keys (a deployed route has no store to take them from: only its secret). */
export async function loadRouteCredentialKeys(store: Store | undefined, clock: Clock, route: RouteConfig, env: Env): Promise<CredentialKeySet> {
  return loadKey(store, clock, env, routeKeyVariable(route), routeKeyDoc(route));
}

/**
 * The sealing keys for an operator's command (`mcp-front credentials reseal`): from the
 * environment, else the ones the store keeps (local mode). Never creates one: a key made up here
 * would open nothing.
 */
export async function existingSealingKeys(store: Store, env: Env): Promise<CredentialKeySet> {
  const value = env[SEALING_KEY_VARIABLE];
  if (value) return parseCredentialKeys(value, SEALING_KEY_VARIABLE);
  const stored = await store.get<{ key: string }>('keys', SEALING_KEY_DOC);
  if (!stored) throw new Error(`${SEALING_KEY_VARIABLE} is not set and the store keeps no sealing key: set it to the value of the mcp-front-sealing-key secret`);
  return parseCredentialKeys(stored.key, `keys/${SEALING_KEY_DOC}`);
}
