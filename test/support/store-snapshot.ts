import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/**
 * A hash of every document a stack keeps in its SQLite file, rate-limit counters aside: equal
 * before and after a refused request proves the request changed nothing.
 */
export function storeSnapshot(dataDir: string): string {
  const db = new DatabaseSync(join(dataDir, 'mcp-front.sqlite'), { readOnly: true });
  try {
    const rows = db.prepare("SELECT collection, id, doc FROM docs WHERE collection != 'rateBuckets' ORDER BY collection, id").all();
    return createHash('sha256').update(JSON.stringify(rows)).digest('hex');
  } finally {
    db.close();
  }
}
