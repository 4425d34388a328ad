import { join } from 'node:path';
import type { Clock } from '../clock.ts';
import type { OAuthConfig } from '../config/config.ts';
import type { Store } from './store.ts';

// Opens the store the config names. An entrypoint-level helper: it may read the environment
// (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST) as the entrypoints do.

export const SQLITE_FILE = 'mcp-front.sqlite';

export async function openStore(oauth: Pick<OAuthConfig, 'storage' | 'dataDir' | 'gcpProject' | 'firestoreDatabase'>, clock: Clock): Promise<Store> {
  if (oauth.storage === 'sqlite') {
    const { openSqliteStore } = await import('./sqlite-store.ts');
    return openSqliteStore({ file: join(oauth.dataDir, SQLITE_FILE), clock });
  }
  const projectId = oauth.gcpProject ?? process.env.GOOGLE_CLOUD_PROJECT ?? (process.env.FIRESTORE_EMULATOR_HOST ? 'demo-mcp-front' : undefined);
  if (!projectId) throw new Error('storage: firestore needs oauth.gcp_project (or GOOGLE_CLOUD_PROJECT)');
  const { openFirestoreStore } = await import('./firestore-store.ts');
  return openFirestoreStore({ projectId, databaseId: oauth.firestoreDatabase, clock });
}

/** What `serve` prints as the store in use. */
export function describeStore(oauth: Pick<OAuthConfig, 'storage' | 'dataDir' | 'gcpProject'>): string {
  if (oauth.storage === 'sqlite') return `SQLite ${join(oauth.dataDir, SQLITE_FILE)}`;
  const emulator = process.env.FIRESTORE_EMULATOR_HOST;
  return emulator ? `Firestore emulator at ${emulator}` : `Firestore in ${oauth.gcpProject ?? process.env.GOOGLE_CLOUD_PROJECT}`;
}
