import { describe, expect, it } from 'vitest';
import { authorizeWithDevLogin, formPost, refreshGrant, send } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from './support.ts';

// POST /revoke (RFC 7009). token_type_hint is only a hint (§2.1): a refresh token is revoked
// whatever the hint says, and an access token (a short-lived JWT the routes verify offline)
// leaves the grant alone whatever the hint says. Every answer is 200 (§2.2).

const DEMO = `${ISSUER}/demo/mcp`;
const HINTS = [undefined, 'refresh_token', 'access_token', 'no_such_type'] as const;

async function revoke(as: Awaited<ReturnType<typeof authorizationServer>>, clientId: string, token: string, hint: string | undefined): Promise<Response> {
  return send(as, '/revoke', formPost({ token, client_id: clientId, ...(hint ? { token_type_hint: hint } : {}) }));
}

describe('revoking a token', () => {
  it.each(HINTS)('a refresh token with hint %s ends its grant', async (hint) => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const res = await revoke(as, tokens.clientId, tokens.refreshToken, hint);
    expect(res.status).toBe(200);
    const [grant] = await as.store.find<{ revokedReason?: string }>('grants', 'clientId', tokens.clientId);
    expect(grant?.doc.revokedReason).toBe('revoked by the client');
    const refused = await refreshGrant(as, tokens.clientId, tokens.refreshToken);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it.each(HINTS)('an access token with hint %s is answered 200 and leaves the grant working', async (hint) => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const res = await revoke(as, tokens.clientId, tokens.accessToken, hint);
    expect(res.status).toBe(200);
    const [grant] = await as.store.find<{ revokedAt?: number }>('grants', 'clientId', tokens.clientId);
    expect(grant?.doc.revokedAt).toBeUndefined();
    expect((await refreshGrant(as, tokens.clientId, tokens.refreshToken)).status).toBe(200);
  });

  it.each(HINTS)("another client's refresh token with hint %s is answered 200 and not revoked", async (hint) => {
    const as = await authorizationServer();
    const tokens = await authorizeWithDevLogin(as, { email: 'ada@example.com', resource: DEMO });
    const other = await authorizeWithDevLogin(as, { email: 'bob@example.com', resource: DEMO });
    expect((await revoke(as, other.clientId, tokens.refreshToken, hint)).status).toBe(200);
    expect((await refreshGrant(as, tokens.clientId, tokens.refreshToken)).status).toBe(200);
  });
});
