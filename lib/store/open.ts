import { join } from 'node:path';
import type { Clock } from '../clock.ts';
import type { OAuthConfig } from '../config/config.ts';
import type { Store } from './store.ts';

// Opens the store the config names. An entrypoint-level helper: it may read the environment
// (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST) as the entrypoints do.

export const SQLITE_FILE = 'mcp-front.sqlite';

type StoreSettings = Pick<OAuthConfig, 'storage' | 'dataDir' | 'gcpProject' | 'firestoreDatabase' | 'sessionsDatabase'>;

/** The authorization server's store: clients, grants, tokens, consents, keys. */
export async function openStore(oauth: StoreSettings, clock: Clock): Promise<Store> {
  if (oauth.storage === 'sqlite') return openSqlite(oauth, clock);
  return openFirestore(oauth, oauth.firestoreDatabase, clock);
}

/**
 * A route service's store: MCP session records only. On Firestore it is a database of its own,
 * the only one a route's service account may use (a stdio server runs beside the bridge and can
 * take that account's credentials). One local process keeps everything in one SQLite file.
 */
export async function openSessionStore(oauth: StoreSettings, clock: Clock): Promise<Store> {
  if (oauth.storage === 'sqlite') return openSqlite(oauth, clock);
  return openFirestore(oauth, oauth.sessionsDatabase, clock);
}

async function openSqlite(oauth: StoreSettings, clock: Clock): Promise<Store> {
  const { openSqliteStore } = await import('./sqlite-store.ts');
  return openSqliteStore({ file: join(oauth.dataDir, SQLITE_FILE), clock });
}

async function openFirestore(oauth: StoreSettings, databaseId: string, clock: Clock): Promise<Store> {
  const projectId = oauth.gcpProject ?? process.env.GOOGLE_CLOUD_PROJECT ?? (process.env.FIRESTORE_EMULATOR_HOST ? 'demo-mcp-front' : undefined);
  if (!projectId) throw new Error('storage: firestore needs oauth.gcp_project (or GOOGLE_CLOUD_PROJECT)');
  const { openFirestoreStore } = await import('./firestore-store.ts');
  return openFirestoreStore({ projectId, databaseId, clock });
}
