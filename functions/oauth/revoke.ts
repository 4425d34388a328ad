import { authenticateClient } from '../../lib/oauth/clients.ts';
import { revokeByRefreshToken } from '../../lib/oauth/revocation.ts';
import { readForm, type HandlerDeps } from './deps.ts';

// RFC 7009: revoking a refresh token ends its grant. Access tokens are short-lived JWTs that
// routes verify offline; they die at `token_ttl`. Unknown tokens answer 200 too (§2.2).
// token_type_hint is ignored: §2.1 makes it a hint for the lookup, never a filter, and the
// only tokens this server can revoke are refresh tokens, looked up whatever the hint says.

export async function revoke(req: Request, deps: HandlerDeps): Promise<Response> {
  const form = await readForm(req);
  const client = await authenticateClient(deps.store, req, form, deps.metadataClients);
  const token = form.get('token');
  if (token) await revokeByRefreshToken(deps.store, deps.clock, token, client.clientId);
  return new Response(null, { status: 200, headers: { 'cache-control': 'no-store' } });
}
