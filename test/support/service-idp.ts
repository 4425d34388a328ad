import type { IncomingMessage, ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import Provider from 'oidc-provider';
import { startHttpsStandIn, type HttpsStandIn } from './https-stand-in.ts';

// A service's own OAuth server for routes[].user_oauth: oidc-provider over https on loopback,
// with one confidential client (`gateway` / `svc-secret`) whose redirect URI is the gateway's
// /connect/callback, refresh tokens always issued, the dev login (any password) and token
// revocation (RFC 7009, at /token/revocation, advertised in its discovery metadata).

export interface ServiceIdp extends HttpsStandIn {
  readonly revocationPath: string;
  /** Who the service says a token of its belongs to (its userinfo endpoint): the token is real and that user's own. */
  userOf(serviceToken: string): Promise<string | undefined>;
}

export async function startServiceIdp(options: {
  readonly gatewayCallback: string;
  /** Looked up on every login and token: a test may take an account away. */
  readonly accounts: Record<string, Record<string, unknown>>;
  /** Answers a request instead of the provider when it returns true (a service gone wrong). */
  readonly intercept?: (req: IncomingMessage, res: ServerResponse) => boolean;
}): Promise<ServiceIdp> {
  let serve: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
  const standIn = await startHttpsStandIn((req, res) => (options.intercept?.(req, res) ? undefined : serve(req, res)));
  const { accounts } = options;
  const provider = new Provider(standIn.origin, {
    clients: [{ client_id: 'gateway', client_secret: 'svc-secret', redirect_uris: [options.gatewayCallback], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic' }],
    claims: { openid: ['sub'], email: ['email'] },
    features: { devInteractions: { enabled: true }, revocation: { enabled: true } },
    findAccount: (_ctx: unknown, id: string) => (accounts[id] ? { accountId: id, claims: () => ({ sub: id, ...accounts[id] }) } : undefined),
    issueRefreshToken: () => true,
    ttl: { AccessToken: 3600, RefreshToken: 86_400, Grant: 86_400, Session: 86_400, Interaction: 600, AuthorizationCode: 60 },
    cookies: { keys: ['svc-cookie-key'] },
  } as never);
  serve = provider.callback();
  const userOf = (serviceToken: string) =>
    new Promise<string | undefined>((resolve, reject) => {
      const req = httpsRequest(new URL('/me', standIn.origin), { headers: { authorization: `Bearer ${serviceToken}` }, ca: standIn.cert }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve(r.statusCode === 200 ? (JSON.parse(Buffer.concat(chunks).toString()) as { sub: string }).sub : undefined));
      });
      req.on('error', reject);
      req.end();
    });
  return { ...standIn, revocationPath: '/token/revocation', userOf };
}
