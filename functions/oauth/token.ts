import { json } from '../../lib/http/types.ts';
import { authenticateClient, markClientUsed } from '../../lib/oauth/clients.ts';
import { OAuthError } from '../../lib/oauth/errors.ts';
import { peekGrant, redeemCode, rotateRefreshToken, type CodeRecord, type GrantRecord, type IssuedGrant } from '../../lib/oauth/grants.ts';
import { askUpstream } from '../../lib/oauth/recheck.ts';
import { enforceLimit } from '../../lib/oauth/rate-limit.ts';
import { admit } from '../../lib/oauth/providers/oidc.ts';
import { resourceRefusal } from '../../lib/oauth/route-access.ts';
import { signAccessToken } from '../../lib/tokens/access-token.ts';
import { sealForRoute } from '../../lib/tokens/route-credential.ts';
import { credentialId, credentialNeeds } from '../../lib/oauth/user-credentials.ts';
import { resealUserCredential } from '../../lib/oauth/credential-reseal.ts';
import { deliveredCredential, renewServiceAccount } from '../../lib/oauth/service-accounts.ts';
import { routeForResource } from '../../lib/oauth/authorization.ts';
import { sha256 } from '../../lib/random.ts';
import { readForm, type HandlerDeps } from './deps.ts';

// POST /token: authorization_code (PKCE) and refresh_token (rotation). Responses are never
// cached (RFC 6749 §5.1); the access token's audience is the route the grant is for.

export async function token(req: Request, deps: HandlerDeps): Promise<Response> {
  const form = await readForm(req);
  const client = await authenticateClient(deps.store, req, form, deps.metadataClients);
  // Per client too (a leaked client spread over many IPs). Not for a metadata-document
  // client_id: every user of that app shares it.
  if (!client.metadataDocument) await enforceLimit(deps.store, deps.clock, 'token per client', client.clientId, { max: deps.config.oauth.rateLimits.token, windowMs: 60_000 });
  const grantType = form.get('grant_type');
  const resource = form.get('resource') ?? undefined;
  const credentialNeed = credentialNeeds(deps.config, deps.credentialKeys);
  let issued: IssuedGrant;
  if (grantType === 'authorization_code') {
    const code = form.get('code');
    const verifier = form.get('code_verifier');
    // Required when /authorize carried one (RFC 6749 §4.1.3); checked against the code.
    const redirectUri = form.get('redirect_uri') ?? undefined;
    if (!code) throw new OAuthError('invalid_request', 400, 'code is required');
    if (!verifier) throw new OAuthError('invalid_request', 400, 'code_verifier is required (PKCE)');
    const pending = await deps.store.get<CodeRecord>('codes', sha256(code));
    await renewServiceAccountFor(deps, pending?.clientId === client.clientId && !pending.grantId ? pending : undefined, resource);
    issued = await redeemCode(deps.store, deps.clock, deps.config.oauth.refreshTtl, { code, clientId: client.clientId, redirectUri, verifier, resource, credentialNeed });
    // The client completed a grant: its registration no longer expires.
    await markClientUsed(deps.store, deps.clock, client);
  } else if (grantType === 'refresh_token') {
    const refreshToken = form.get('refresh_token');
    if (!refreshToken) throw new OAuthError('invalid_request', 400, 'refresh_token is required');
    const oauth = deps.config.oauth;
    // Ask the identity provider about the user again, when due.
    const upstream = await askUpstream(deps, refreshToken, client.clientId);
    await renewServiceAccountFor(deps, await peekGrant(deps.store, refreshToken, client.clientId), resource);
    // Between re-checks, the config may still have changed since sign-in (a domain removed, an
    // allow list shortened): checked against what the provider last said.
    const policy = oauth.provider === 'dev' || oauth.provider === 'github' ? undefined : (grant: GrantRecord) => admit(oauth, { sub: grant.userSub, email: grant.email, emailVerified: true, hd: grant.hd });
    // And each route's access list, as the config says now, on what the provider last proved.
    const routeAccess = (grant: GrantRecord, audience: string) => resourceRefusal(deps.config, audience, grant);
    issued = await rotateRefreshToken(deps.store, deps.clock, { refreshTtlMs: oauth.refreshTtl, graceMs: oauth.refreshGrace }, { token: refreshToken, clientId: client.clientId, resource, policy, routeAccess, credentialNeed, upstream });
  } else {
    throw new OAuthError(grantType ? 'unsupported_grant_type' : 'invalid_request', 400, grantType ? `grant_type ${grantType} is not supported` : 'grant_type is required');
  }
  const { grant } = issued;
  await resealCredential(deps, issued);
  const access = await signAccessToken(deps.keys.current, deps.config.oauth.issuer, deps.config.oauth.tokenTtl, deps.clock, {
    sub: grant.userSub,
    email: grant.email,
    aud: issued.audience,
    client_id: grant.clientId,
    scope: grant.scope,
    ...credentialClaim(deps, issued),
  });
  return json(
    { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, refresh_token: issued.refreshToken, scope: grant.scope },
    200,
    { 'cache-control': 'no-store', pragma: 'no-cache' },
  );
}

/**
 * The user's own credential for the token's route, opened from the store and sealed again with
 * that route's key (the only key the route holds): the route reads it from the token it
 * verifies anyway, with no store of ours to reach.
 */
function credentialClaim(deps: HandlerDeps, issued: IssuedGrant): { cred?: string } {
  const record = issued.credential;
  if (!record) return {};
  const keys = deps.credentialKeys!;
  // grants.ts checked, in the transaction, that it opens for this user and route.
  const value = deliveredCredential(keys, record, { userSub: issued.grant.userSub, route: record.route })!;
  return { cred: sealForRoute(keys.routes.get(record.route)!, { sub: issued.grant.userSub, route: record.route }, { version: record.version, value }) };
}

/**
 * The stored credential sealed again under the newest sealing key when an older one opened it
 * (docs/deploy.md, "Rotating the credential keys"), so most are moved by the time the operator
 * runs `credentials reseal`. A failure here does not fail the request: the grant has already
 * moved on (a code redeemed, a refresh token rotated), so its answer must go out; the next read
 * tries again, and `credentials reseal` catches the rest.
 */
async function resealCredential(deps: HandlerDeps, issued: IssuedGrant): Promise<void> {
  const record = issued.credential;
  if (!record) return;
  const who = { user: record.userSub, route: record.route };
  try {
    if ((await resealUserCredential(deps.store, deps.credentialKeys!, credentialId(record.userSub, record.route), record)) === 'resealed') deps.log.info('stored credential sealed again under the newest sealing key', who);
  } catch (err) {
    deps.log.warn('stored credential not sealed again; the next read tries again', { ...who, error: (err as Error).message });
  }
}

/**
 * The user's service account for the token's route (routes[].user_oauth), renewed first when
 * its token is (nearly) expired: outside the grant's transaction (a request to the service), read
 * again inside it. `found` is the code or grant as read before; the transaction judges them.
 */
async function renewServiceAccountFor(deps: HandlerDeps, found: { userSub: string; resource: string } | undefined, resource: string | undefined): Promise<void> {
  if (!found || !deps.credentialKeys) return;
  const route = routeForResource(deps.config, resource ?? found.resource);
  if (route?.userCredential?.oauth) await renewServiceAccount({ ...deps, credentialKeys: deps.credentialKeys }, route, found.userSub);
}
