import type { Clock } from '../lib/clock.ts';
import type { Config } from '../lib/config/config.ts';
import { resourcesOf, routeForResource } from '../lib/oauth/authorization.ts';
import type { ClientRecord } from '../lib/oauth/clients.ts';
import type { GrantRecord } from '../lib/oauth/grants.ts';
import { grantIsLive } from '../lib/oauth/revocation.ts';
import type { Store } from '../lib/store/store.ts';

// `mcp-front grants list`: what operators need to see who is connected with what, read from
// whichever store the config names. Never a token or a credential: the store holds neither in
// the clear, and this prints only names, ids and times.

export interface GrantLine {
  readonly grantId: string;
  readonly email: string;
  readonly clientId: string;
  readonly clientName: string;
  readonly routes: readonly string[];
  readonly createdAt: number;
  readonly lastUsedAt: number;
}

/** Up to this many grants are read; listing more is a job for the Firestore console. */
const LIMIT = 10_000;

export async function listGrants(store: Store, clock: Clock, config: Pick<Config, 'oauth' | 'routes'>, email?: string): Promise<GrantLine[]> {
  const found = email ? await store.find<GrantRecord>('grants', 'email', email.toLowerCase(), LIMIT) : await store.list<GrantRecord>('grants', LIMIT);
  const now = clock.now();
  const clients = new Map<string, ClientRecord | undefined>();
  const lines: GrantLine[] = [];
  for (const { id, doc } of found) {
    if (!grantIsLive(doc, now, config.oauth.refreshTtl)) continue;
    if (!clients.has(doc.clientId)) clients.set(doc.clientId, await store.get<ClientRecord>('clients', doc.clientId));
    lines.push({
      grantId: id,
      email: doc.email,
      clientId: doc.clientId,
      clientName: doc.clientName ?? clients.get(doc.clientId)?.clientName ?? '',
      routes: resourcesOf(doc).map((r) => routeForResource(config, r)?.path ?? r),
      createdAt: doc.createdAt,
      lastUsedAt: doc.lastUsedAt ?? doc.createdAt,
    });
  }
  return lines.sort((a, b) => a.email.localeCompare(b.email) || a.createdAt - b.createdAt);
}

const when = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace('T', ' ');

/** One line per grant, tab-separated under a header, so it reads and cuts alike. */
export function renderGrants(lines: readonly GrantLine[]): string {
  if (!lines.length) return 'no live grants';
  // Client names are whatever a client registered: control characters would rewrite the terminal.
  const clean = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  const rows = lines.map((l) => [l.email, clean(l.clientName || '-'), l.clientId, l.routes.join(','), when(l.createdAt), when(l.lastUsedAt), l.grantId].map(clean).join('\t'));
  return ['user\tclient\tclient_id\troutes\tgranted (UTC)\tlast used (UTC)\tgrant', ...rows].join('\n');
}
