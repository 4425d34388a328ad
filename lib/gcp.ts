import { GoogleAuth, type IdTokenClient } from 'google-auth-library';

// The one module that talks to Google's auth: ID tokens for private Cloud Run backends. On
// Cloud Run the metadata server mints them for the service's own account; tests point
// GCE_METADATA_HOST at a loopback stand-in.

const clients = new Map<string, Promise<IdTokenClient>>();
const auth = new GoogleAuth();

/** An `Authorization` header value carrying a Google-signed ID token for `audience` (cached and refreshed by the library). */
export async function googleIdTokenHeader(audience: string): Promise<string> {
  let client = clients.get(audience);
  if (!client) {
    client = auth.getIdTokenClient(audience);
    clients.set(audience, client);
    client.catch(() => clients.delete(audience));
  }
  const headers = await (await client).getRequestHeaders();
  const value = headers.get('authorization');
  if (!value) throw new Error(`no ID token for ${audience}`);
  return value;
}

/** Google's OAuth 2.0 / OpenID client, for the google and oidc sign-in providers. */
export { OAuth2Client } from 'google-auth-library';
