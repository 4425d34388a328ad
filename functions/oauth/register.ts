import { json } from '../../lib/http/types.ts';
import { clientInformation, redirectPolicy, registerClient } from '../../lib/oauth/clients.ts';
import { OAuthError } from '../../lib/oauth/errors.ts';
import { MAX_JSON_BYTES, readBody, type OAuthDeps } from './deps.ts';

// RFC 7591 dynamic client registration. Clients that register again on every connect simply
// get a new client_id; registrations nobody completes a grant with expire.

export async function register(req: Request, { store, clock, config }: OAuthDeps): Promise<Response> {
  const type = (req.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new OAuthError('invalid_client_metadata', 400, 'the body must be application/json');
  const text = await readBody(req, MAX_JSON_BYTES);
  let metadata: unknown;
  try {
    metadata = JSON.parse(text);
  } catch {
    throw new OAuthError('invalid_client_metadata', 400, 'the body is not JSON');
  }
  const client = await registerClient(store, clock, metadata, redirectPolicy(config.oauth));
  return json(clientInformation(client), 201);
}
