// CORS for the authorization server's public endpoints. Browser-based MCP clients (the MCP
// Inspector's Direct mode, claude.ai's web app) run discovery, registration, token and
// revocation requests with fetch() from their own origin, and send MCP-Protocol-Version,
// Authorization or a JSON Content-Type, which makes the browser ask first (a preflight).
// These endpoints rely on no cookie or other ambient credential: a client proves itself in
// the body or the Authorization header. So any origin may call them and read every answer,
// errors included (a client must read `invalid_grant` to know to sign in again), as the MCP
// SDK's own authorization router does with the `cors` package's defaults. The sign-in,
// consent and callback pages are top-level navigations and get none of this.
//
// itty-router's cors() would fit the handlers, but its corsify() rebuilds the Response from
// an object spread, which turns every status into 200 (itty-router 6.0.0).

/** The methods of each public endpoint; every path under /.well-known/ is a GET. */
const PUBLIC_ENDPOINTS: Readonly<Record<string, string>> = {
  '/token': 'POST',
  '/register': 'POST',
  '/revoke': 'POST',
  '/jwks.json': 'GET',
  '/routes': 'GET',
};

/**
 * What a browser client may send. `*` admits any other header (Fetch: a wildcard holds for
 * requests without credentials) but never Authorization, which must be named.
 */
const ALLOW_HEADERS = 'authorization, content-type, mcp-protocol-version, *';
/** Readable by the page: the Basic challenge of a 401 from /token, the wait of a 429 or 503. */
const EXPOSE_HEADERS = 'www-authenticate, retry-after';
/** One day; browsers cap it lower (Chromium: 2 h). */
const MAX_AGE_SECONDS = '86400';

/** The methods of a public endpoint (OPTIONS aside), or undefined for a same-origin page or an unknown path. */
export function publicEndpointMethods(pathname: string): string | undefined {
  if (pathname.startsWith('/.well-known/')) return 'GET';
  return PUBLIC_ENDPOINTS[pathname];
}

/** The answer to OPTIONS on a public endpoint: a CORS preflight, or a plain OPTIONS (RFC 9110 §9.3.7). */
export function preflightAnswer(methods: string): Response {
  return new Response(null, {
    status: 204,
    headers: {
      allow: `${methods}, OPTIONS`,
      'access-control-allow-origin': '*',
      'access-control-allow-methods': `${methods}, OPTIONS`,
      'access-control-allow-headers': ALLOW_HEADERS,
      'access-control-max-age': MAX_AGE_SECONDS,
    },
  });
}

/** `response`, readable from any origin. */
export function readableFromAnyOrigin(response: Response): Response {
  const headers = new Headers(response.headers);
  headers.set('access-control-allow-origin', '*');
  headers.set('access-control-expose-headers', EXPOSE_HEADERS);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
