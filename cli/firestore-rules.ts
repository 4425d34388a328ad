import { readFileSync } from 'node:fs';
import { DeployError } from './deploy-error.ts';
import { gcloudAccessToken } from './gcloud-token.ts';

// `mcp-front firestore-rules`: puts firestore.rules (deny every client SDK) on one database
// through the Firebase Rules API, with the caller's gcloud credentials. No Firebase project,
// `firebase login` or application-default credentials needed: the rest of the plan runs on
// gcloud's credentials, and so does this step.

export const RULES_API = 'https://firebaserules.googleapis.com';

export interface RulesOptions {
  readonly project: string;
  readonly database: string;
  readonly rulesFile: string;
  readonly apiBase?: string;
  /** The bearer token; default: CLOUDSDK_AUTH_ACCESS_TOKEN, else `gcloud auth print-access-token`. */
  readonly token?: string;
}

/** Firestore's rules release: `cloud.firestore` for the default database, `cloud.firestore/<id>` for the others. */
export function releaseName(project: string, database: string): string {
  return `projects/${project}/releases/cloud.firestore${database === '(default)' ? '' : `/${database}`}`;
}

export async function deployFirestoreRules(options: RulesOptions): Promise<string> {
  const base = options.apiBase ?? RULES_API;
  const token = options.token ?? (await gcloudAccessToken('firestore-rules'));
  const call = async (method: string, path: string, body: unknown): Promise<Response> =>
    fetch(`${base}/v1/${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const fail = async (what: string, res: Response) => new DeployError(`firestore-rules: ${what} answered HTTP ${res.status}: ${(await res.text()).slice(0, 500)}`);

  const content = readFileSync(options.rulesFile, 'utf8');
  const created = await call('POST', `projects/${options.project}/rulesets`, { source: { files: [{ name: 'firestore.rules', content }] } });
  if (!created.ok) throw await fail('creating the ruleset', created);
  const { name: rulesetName } = (await created.json()) as { name: string };

  const release = releaseName(options.project, options.database);
  const updated = await call('PATCH', release, { release: { name: release, rulesetName } });
  if (updated.ok) return rulesetName;
  if (updated.status !== 404) throw await fail('updating the release', updated);
  const first = await call('POST', `projects/${options.project}/releases`, { name: release, rulesetName });
  if (!first.ok) throw await fail('creating the release', first);
  return rulesetName;
}
