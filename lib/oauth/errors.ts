import { json } from '../http/types.ts';

// One error type for the authorization server, rendered in one place: RFC 6749 §5.2 JSON for
// API endpoints, a plain page for the browser (see pages.ts), a redirect only once the
// redirect_uri is known to be the client's own.

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'access_denied'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'invalid_token'
  | 'temporarily_unavailable'
  | 'slow_down'
  | 'server_error'
  | 'not_found'
  | 'method_not_allowed';

export class OAuthError extends Error {
  override readonly name = 'OAuthError';
  readonly code: OAuthErrorCode;
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(code: OAuthErrorCode, status: number, description: string, headers: Record<string, string> = {}) {
    super(description);
    this.code = code;
    this.status = status;
    this.headers = headers;
  }
}

export function errorJson(err: OAuthError): Response {
  return json({ error: err.code, error_description: err.message }, err.status, { ...err.headers, 'cache-control': 'no-store' });
}
