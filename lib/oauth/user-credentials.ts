import type { Clock } from '../clock.ts';
import { routeResources, type Config, type RouteConfig } from '../config/config.ts';
import { randomToken, sha256 } from '../random.ts';
import type { Store } from '../store/store.ts';
import type { CredentialKeys } from '../tokens/credential-keys.ts';
import { keySetSealer, type Unsealed } from './sealed.ts';

// Each user's own credential for a route's service (routes[].user_credential): given on the
// consent page or the account page, kept only sealed (AES-256-GCM under the sealing key, which
// only the authorization server holds), with the user and the route as additional data, so a
// sealed value copied onto another user's or route's record does not open. It leaves the
// authorization server only inside an access token for that route, sealed again for that route
// (lib/tokens/route-credential.ts). Never logged, never shown back.

/** Larger values are refused: the credential rides in every access token for its route. */
export const MAX_CREDENTIAL_BYTES = 4096;

export interface UserCredentialRecord {
  [key: string]: unknown;
  userSub: string;
  email: string;
  route: string;
  sealed: string;
  /** New on every save: sessions started with another version end (services/route/registry.ts). */
  version: string;
  createdAt: number;
  updatedAt: number;
  /** A service account connected through its OAuth server (routes[].user_oauth): the sealed value holds its tokens (service-accounts.ts). */
  kind?: 'service-account';
  /** Service accounts: when the access token expires (epoch ms), when the service said. */
  expiresAt?: number;
}

export const credentialId = (userSub: string, route: string) => sha256(`credential\n${userSub}\n${route}`);

const PURPOSE = 'user credential';
const context = (userSub: string, route: string) => `mcp-front user credential\n${userSub}\n${route}`;

/** Seals a value for this user and route under the (newest) sealing key: user credentials and service accounts alike. */
export const sealUserCredential = (keys: CredentialKeys, userSub: string, route: string, plain: string) => keySetSealer(keys.sealing, PURPOSE).seal(plain, context(userSub, route));

/**
 * Why `value` can't be the route's credential, as a sentence for the page, or undefined. Visible
 * ASCII only: it becomes a header value or an environment variable, where a line break or a NUL
 * would let it say more than itself. Never quotes the value.
 */
export function credentialProblem(route: Pick<RouteConfig, 'userCredential'>, value: string): string | undefined {
  const c = route.userCredential!;
  if (!value) return `Enter your ${c.label}.`;
  if (Buffer.byteLength(value, 'utf8') > MAX_CREDENTIAL_BYTES) return `That ${c.label} is longer than ${MAX_CREDENTIAL_BYTES} bytes.`;
  if (!/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value)) return `That ${c.label} has characters a credential can't have (only printable ASCII, no line breaks).`;
  if (c.pattern && !new RegExp(`^(?:${c.pattern})$`, 'u').test(value)) return `That does not look like a ${c.label}.`;
  return undefined;
}

/** What the user typed, with the blanks a copy and paste brings trimmed. */
export const credentialInput = (raw: string | null) => (raw ?? '').trim();

/**
 * A route whose users bring their own credential: a token for it is issued only with a usable
 * one, read in the same transaction as the grant (lib/oauth/grants.ts).
 */
export interface CredentialNeed {
  readonly route: string;
  /** Why this stored record can't go into a token for this user (none, or it does not open for them); undefined: it can. */
  refusal(record: UserCredentialRecord | undefined, userSub: string): string | undefined;
}

/** What /token needs to know about a resource's route. */
export function credentialNeeds(config: Pick<Config, 'oauth' | 'routes'>, keys: CredentialKeys | undefined): (resource: string) => CredentialNeed | undefined {
  return (resource) => {
    const route = config.routes.find((r) => routeResources(config.oauth.issuer, r).includes(resource));
    if (!route?.userCredential) return undefined;
    const { label } = route.userCredential;
    if (route.userCredential.oauth) {
      const again = `connect it again: your MCP client's next authorization asks you to`;
      return {
        route: route.path,
        refusal: (record, userSub) => {
          if (!record || record.kind !== 'service-account') return `your ${label} is not connected for ${route.path}: ${again}`;
          if (!keys || openUserCredential(keys, record, { userSub, route: route.path }) === undefined) return `your ${label} connection for ${route.path} can no longer be read: ${again}`;
          return undefined;
        },
      };
    }
    return {
      route: route.path,
      refusal: (record, userSub) => {
        if (!record) return `no ${label} is stored for ${route.path}: connect again and give it, or add it on ${config.oauth.issuer}/account`;
        if (!keys || openUserCredential(keys, record, { userSub, route: route.path }) === undefined) return `the stored ${label} for ${route.path} can no longer be read: give it again on ${config.oauth.issuer}/account`;
        return undefined;
      },
    };
  };
}

/** Stores (or replaces) the user's credential for the route; a new version every time. */
export async function saveUserCredential(store: Store, clock: Clock, keys: CredentialKeys, user: { sub: string; email: string }, route: string, value: string): Promise<UserCredentialRecord> {
  const now = clock.now();
  const id = credentialId(user.sub, route);
  const previous = await store.get<UserCredentialRecord>('userCredentials', id);
  const record: UserCredentialRecord = {
    userSub: user.sub,
    email: user.email.toLowerCase(),
    route,
    sealed: sealUserCredential(keys, user.sub, route, value),
    version: randomToken(12),
    createdAt: previous?.createdAt ?? now,
    updatedAt: now,
  };
  await store.put('userCredentials', id, record);
  return record;
}

/** The stored credential in the clear, or undefined when it does not open for this user and route (another user's or route's record, an altered one, a sealing key no longer held). */
export function openUserCredential(keys: CredentialKeys, record: UserCredentialRecord, expected: { userSub: string; route: string }): string | undefined {
  return unsealUserCredential(keys, record, expected)?.plain;
}

/** As openUserCredential, saying too whether it was sealed under an older sealing key (credential-reseal.ts seals it again). */
export function unsealUserCredential(keys: CredentialKeys, record: UserCredentialRecord, expected: { userSub: string; route: string }): Unsealed | undefined {
  if (record.userSub !== expected.userSub || record.route !== expected.route) return undefined;
  return keySetSealer(keys.sealing, PURPOSE).unseal(record.sealed, context(expected.userSub, expected.route));
}

export async function storedCredential(store: Store, userSub: string, route: string): Promise<UserCredentialRecord | undefined> {
  return store.get<UserCredentialRecord>('userCredentials', credentialId(userSub, route));
}

export async function credentialsOf(store: Store, userSub: string): Promise<UserCredentialRecord[]> {
  return (await store.find<UserCredentialRecord>('userCredentials', 'userSub', userSub)).map((r) => r.doc);
}

/** Deletes a user's credential for a route; false when there was none. */
export async function deleteUserCredential(store: Store, userSub: string, route: string): Promise<boolean> {
  const id = credentialId(userSub, route);
  if (!(await store.get('userCredentials', id))) return false;
  await store.delete('userCredentials', id);
  return true;
}

/** `mcp-front credentials delete --user --route`, and offboarding: by email, since operators know people by it. */
export async function deleteUserCredentialsByEmail(store: Store, email: string, route?: string): Promise<number> {
  const found = (await store.find<UserCredentialRecord>('userCredentials', 'email', email.toLowerCase())).filter((r) => route === undefined || r.doc.route === route);
  for (const { id } of found) await store.delete('userCredentials', id);
  return found.length;
}
