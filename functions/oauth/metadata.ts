import { routeResources } from '../../lib/config/config.ts';
import { json } from '../../lib/http/types.ts';
import { OAuthError } from '../../lib/oauth/errors.ts';
import type { OAuthDeps } from './deps.ts';

// RFC 8414 authorization server metadata (and its OpenID alias) and RFC 9728 protected
// resource metadata for every form of every route's URL.

// Readable from any origin: app.ts applies cors.ts to every answer under /.well-known/.
const CACHEABLE = { 'cache-control': 'public, max-age=300' };

export function authorizationServerMetadata({ config }: OAuthDeps): Response {
  const issuer = config.oauth.issuer;
  return json(
    {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      registration_endpoint: `${issuer}/register`,
      revocation_endpoint: `${issuer}/revoke`,
      jwks_uri: `${issuer}/jwks.json`,
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
      scopes_supported: config.oauth.scopes,
      authorization_response_iss_parameter_supported: true,
      client_id_metadata_document_supported: true,
    },
    200,
    CACHEABLE,
  );
}

const PREFIX = '/.well-known/oauth-protected-resource';

export function protectedResourceMetadata({ config }: OAuthDeps, pathname: string): Response {
  const issuer = config.oauth.issuer;
  const resource = `${issuer}${pathname.slice(PREFIX.length)}`;
  const route = config.routes.find((r) => routeResources(issuer, r).includes(resource));
  if (!route) throw new OAuthError('not_found', 404, `no protected resource at ${resource}`);
  return json(
    {
      resource,
      authorization_servers: [issuer],
      scopes_supported: config.oauth.scopes,
      bearer_methods_supported: ['header'],
      resource_name: `MCP route ${route.path}`,
    },
    200,
    CACHEABLE,
  );
}

/** The access-token keys, then the identity-assertion keys (kid "assertion-…") that backends verify with. */
export function jwks({ keys }: OAuthDeps): Response {
  return json({ keys: [...keys.published, ...(keys.assertion?.published ?? [])] }, 200, CACHEABLE);
}

/**
 * GET /routes: the MCP routes of this gateway, for `mcp-front connect --all` (one stdio server,
 * one sign-in, every route). Nothing secret: each route's metadata is public anyway.
 */
export function routeList({ config }: OAuthDeps): Response {
  const issuer = config.oauth.issuer;
  return json({ issuer, routes: config.routes.map((r) => ({ path: r.path, name: r.name, url: `${issuer}${r.path}/mcp` })) }, 200, CACHEABLE);
}
