import { browserSessionUser, routeForResource, saveAuthRequest } from '../../lib/oauth/authorization.ts';
import { findClient } from '../../lib/oauth/clients.ts';
import { OAuthError } from '../../lib/oauth/errors.ts';
import { errorPage } from '../../lib/oauth/pages.ts';
import { continueAuthorization, redirectToClient } from './consent.ts';
import type { HandlerDeps } from './deps.ts';

// GET /authorize (OAuth 2.1 §4.1.1, PKCE S256 only, RFC 8707 resource, RFC 9207 iss). Until
// the client and its redirect_uri are verified, errors are a page; after, they go back to the
// client with `state` and `iss`.

export async function authorize(req: Request, deps: HandlerDeps): Promise<Response> {
  const url = new URL(req.url);
  const q = url.searchParams;
  for (const key of new Set(q.keys())) {
    // `resource` may repeat (RFC 8707 §2): one sign-in and one consent for several routes.
    if (key !== 'resource' && q.getAll(key).length > 1) return errorPage('Invalid request', `The parameter ${key} appears more than once.`);
  }
  const clientId = q.get('client_id');
  if (!clientId) return errorPage('Invalid request', 'client_id is missing.');
  let client;
  try {
    client = await findClient(deps.store, clientId, deps.metadataClients);
  } catch (err) {
    // A metadata document that can't be used: say why, on a page (the redirect is unverified).
    if (err instanceof OAuthError) return errorPage('Unusable client', `${err.message}.`);
    throw err;
  }
  if (!client) return errorPage('Unknown client', 'This client is not registered (or its registration expired). Add the server to your MCP client again.');
  const redirectUri = q.get('redirect_uri') ?? (client.redirectUris.length === 1 ? client.redirectUris[0]! : null);
  // Exact string match (OAuth 2.1 §2.3.1): no prefix, no normalisation.
  if (!redirectUri || !client.redirectUris.includes(redirectUri)) return errorPage('Invalid redirect', 'redirect_uri is missing or is not one this client registered.');

  const state = q.get('state') ?? undefined;
  const back = (error: string, description: string) => redirectToClient(deps.config.oauth.issuer, { redirectUri, state }, { error, error_description: description });
  if (q.get('response_type') !== 'code') return back('unsupported_response_type', 'response_type must be code');
  const challenge = q.get('code_challenge');
  if (!challenge) return back('invalid_request', 'code_challenge is required (PKCE)');
  if ((q.get('code_challenge_method') ?? 'plain') !== 'S256') return back('invalid_request', 'code_challenge_method must be S256');
  if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) return back('invalid_request', 'code_challenge is not a base64url SHA-256');
  const resources = [...new Set(q.getAll('resource'))];
  const resource = resources[0];
  // No default resource, even with one route (RFC 8707 §2 would allow one; the MCP
  // authorization spec makes `resource` a MUST for clients): a client sent here by another
  // server's metadata would get a token for our route and hand it to that server. The SDK
  // (hence the Inspector) leaves `resource` out only when it could not read the protected
  // resource metadata, which a browser client now can (cors.ts).
  if (!resource) return back('invalid_target', 'resource is required: the URL of the MCP server (RFC 8707)');
  const unknownResource = resources.find((r) => !routeForResource(deps.config, r));
  if (unknownResource) return back('invalid_target', `${unknownResource} is not an MCP server of this gateway`);
  if (resources.length > 50) return back('invalid_target', 'too many resources in one request');
  const requested = (q.get('scope') ?? deps.config.oauth.scopes.join(' ')).split(' ').filter(Boolean);
  const unknown = requested.filter((s) => !deps.config.oauth.scopes.includes(s));
  if (unknown.length) return back('invalid_scope', `unknown scope ${unknown.join(' ')}`);

  const { id, request } = await saveAuthRequest(deps.store, deps.clock, {
    clientId,
    clientName: client.clientName,
    redirectUri,
    ...(q.has('redirect_uri') ? {} : { redirectUriImplied: true }),
    ...(state !== undefined ? { state } : {}),
    codeChallenge: challenge,
    resource,
    ...(resources.length > 1 ? { extraResources: resources.slice(1) } : {}),
    scope: (requested.length ? requested : deps.config.oauth.scopes).join(' '),
  });
  const user = await browserSessionUser(deps.store, deps.config, req);
  if (user) return continueAuthorization(deps, id, request, user);
  return deps.provider.begin(id, request);
}
