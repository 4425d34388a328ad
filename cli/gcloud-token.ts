import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DeployError } from './deploy-error.ts';

// The caller's gcloud credentials as a bearer token, for the commands that call a Google API
// themselves (firestore-rules, status). Everything else a deploy does runs gcloud, so one
// `gcloud auth login` covers it all: no application-default credentials.

/** CLOUDSDK_AUTH_ACCESS_TOKEN (gcloud's own override) if set, else `gcloud auth print-access-token`. */
export async function gcloudAccessToken(command: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.CLOUDSDK_AUTH_ACCESS_TOKEN) return env.CLOUDSDK_AUTH_ACCESS_TOKEN;
  let why: string;
  try {
    const { stdout } = await promisify(execFile)('gcloud', ['auth', 'print-access-token'], { env: { ...env, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' } });
    if (stdout.trim()) return stdout.trim();
    why = 'gcloud printed no access token';
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    why = e.code === 'ENOENT' ? 'gcloud is not installed' : (e.stderr?.trim().split('\n')[0] ?? e.message.split('\n')[0]!);
  }
  throw new DeployError(`${command}: no Google Cloud credentials (${why}): run \`gcloud auth login\`, or set CLOUDSDK_AUTH_ACCESS_TOKEN`);
}
