import { exportJWK, generateKeyPair, importJWK, calculateJwkThumbprint, type JWK } from 'jose';
import type { Clock } from '../clock.ts';
import type { Store } from '../store/store.ts';

export const SIGNING_ALG = 'ES256';

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

/** The current signing key plus the previous ones still published so their tokens verify until they expire. */
export interface KeySet {
  readonly current: SigningKey;
  readonly published: readonly JWK[];
  /** The identity-assertion keys (see loadAssertionKeys), published beside the access-token keys. */
  readonly assertion?: AssertionKeys;
}

/**
 * The key http routes with `identity: assertion` sign their statements of who the user is
 * with. Not the access-token key: a route holding that could mint tokens for every route. Its
 * kids carry ASSERTION_KID_PREFIX, so the routes' token verifier, which reads the same JWKS,
 * never takes one of its signatures for an access token.
 */
export interface AssertionKeys {
  readonly current: SigningKey;
  readonly published: readonly JWK[];
}

export const ASSERTION_KID_PREFIX = 'assertion-';

interface StoredKey {
  [key: string]: unknown;
  privateJwk: JWK;
  createdAt: number;
  retiredAt?: number;
}

async function toSigningKey(privateJwk: JWK): Promise<SigningKey> {
  const privateKey = (await importJWK(privateJwk, SIGNING_ALG)) as CryptoKey;
  const { d: _d, ...pub } = privateJwk;
  return { kid: privateJwk.kid!, privateKey, publicJwk: { ...pub, alg: SIGNING_ALG, use: 'sig' } };
}

export async function generateSigningJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  return jwk;
}

const CURRENT = 'current';

/**
 * The signing key as Secret Manager holds it: one private JWK, or a JWK set whose first key signs
 * and whose others (the key before a rotation) stay published until their tokens have expired.
 */
export function parseSigningKeys(text: string): JWK[] {
  const parsed = JSON.parse(text) as JWK | { keys?: JWK[] };
  const keys = 'keys' in parsed && Array.isArray(parsed.keys) ? parsed.keys : [parsed as JWK];
  if (!keys.length || keys.some((k) => k.kty !== 'EC' || !k.d)) throw new Error('MCP_FRONT_SIGNING_KEY must be a private EC JWK or a set of them ({"keys": [...]})');
  return keys;
}

const ASSERTION_DOC = 'assertion';

/** An assertion key's kid is derived from the key, in the assertion namespace, whatever the secret says. */
async function toAssertionKey(privateJwk: JWK): Promise<SigningKey> {
  const { d: _d, kid: _kid, ...pub } = privateJwk;
  return toSigningKey({ ...privateJwk, kid: `${ASSERTION_KID_PREFIX}${await calculateJwkThumbprint(pub)}` });
}

/**
 * The identity-assertion key: from the environment (production: Secret Manager,
 * MCP_FRONT_ASSERTION_KEY, the same format as the signing key, rotated the same way), or in
 * local mode from the store (document `keys/assertion`), generated on first start.
 */
export async function loadAssertionKeys(store: Store | undefined, clock: Clock, options: { fromEnv?: string } = {}): Promise<AssertionKeys> {
  let jwks: JWK[];
  if (options.fromEnv) {
    jwks = parseSigningKeys(options.fromEnv);
  } else {
    if (!store) throw new Error('MCP_FRONT_ASSERTION_KEY is not set');
    let stored = await store.get<StoredKey>('keys', ASSERTION_DOC);
    if (!stored) {
      await store.create('keys', ASSERTION_DOC, { privateJwk: await generateSigningJwk(), createdAt: clock.now() });
      stored = (await store.get<StoredKey>('keys', ASSERTION_DOC))!;
    }
    jwks = [stored.privateJwk];
  }
  const [current, ...previous] = await Promise.all(jwks.map(toAssertionKey));
  return { current: current!, published: [current!.publicJwk, ...previous.map((k) => k.publicJwk).filter((k) => k.kid !== current!.kid)] };
}

/** `mcp-front keygen --rotate`: a new signing key first, the one it replaces kept to verify the tokens it signed. */
export async function rotatedSigningKeys(currentSecret: string): Promise<{ keys: JWK[] }> {
  const [current] = parseSigningKeys(currentSecret);
  const fresh = await generateSigningJwk();
  if (!current!.kid) current!.kid = await calculateJwkThumbprint(current!);
  return { keys: [fresh, current!] };
}

/**
 * Local mode: the signing key lives in the store (document `keys/current`), generated on
 * first start; retired keys stay under their kid until their tokens have expired. A key
 * from the environment (production: Secret Manager, MCP_FRONT_SIGNING_KEY) takes precedence.
 */
export async function loadKeySet(store: Store, clock: Clock, options: { fromEnv?: string } = {}): Promise<KeySet> {
  if (options.fromEnv) {
    const [current, ...previous] = await Promise.all(parseSigningKeys(options.fromEnv).map(toSigningKey));
    return { current: current!, published: [current!.publicJwk, ...previous.map((k) => k.publicJwk).filter((k) => k.kid !== current!.kid)] };
  }
  let stored = await store.get<StoredKey>('keys', CURRENT);
  if (!stored) {
    // Instances starting together race here: the first create wins and the others read it back.
    await store.create('keys', CURRENT, { privateJwk: await generateSigningJwk(), createdAt: clock.now() });
    stored = (await store.get<StoredKey>('keys', CURRENT))!;
  }
  const current = await toSigningKey(stored.privateJwk);
  const retired = await store.find<StoredKey>('keys', 'retired', true);
  const previous = await Promise.all(retired.map(async (r) => (await toSigningKey(r.doc.privateJwk)).publicJwk));
  return { current, published: [current.publicJwk, ...previous.filter((k) => k.kid !== current.kid)] };
}

/** `mcp-front keys rotate`: a new current key; the old one stays published for `retainFor` ms (the token TTL). */
export async function rotateSigningKey(store: Store, clock: Clock, retainFor: number): Promise<string> {
  const privateJwk = await generateSigningJwk();
  const now = clock.now();
  await store.transaction(async (tx) => {
    const old = await tx.get<StoredKey>('keys', CURRENT);
    if (old) tx.put('keys', old.privateJwk.kid!, { ...old, retired: true, retiredAt: now }, { expiresAt: now + retainFor });
    tx.put('keys', CURRENT, { privateJwk, createdAt: now });
  });
  return privateJwk.kid!;
}
