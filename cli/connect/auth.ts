import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { ConnectError, checkSafeUrl, discover, fetchJson, type Discovered } from './discovery.ts';
import { GrantFile, type StoredGrant } from './token-store.ts';

// The OAuth life cycle `connect` runs for its stdio client: registration (DCR, or a
// pre-registered client), sign-in in the system browser with PKCE S256, state, iss and
// resource, and tokens refreshed before they expire. Sign-in and refresh run under the grant
// file's lock, so several processes share one sign-in and never race for the token file.

export interface AuthOptions {
  readonly dir: string;
  readonly clientId?: string;
  readonly clientSecret?: string;
  /** Our Client ID Metadata Document (an https URL), used as client_id where the server supports it. */
  readonly clientMetadataUrl?: string;
  /** Fixed loopback callback port (a pre-registered client needs one); ephemeral otherwise. */
  readonly callbackPort?: number;
  /** Hands the (already validated) sign-in URL to a browser; never through a shell. */
  readonly openBrowser?: (url: string) => void;
  readonly log: (line: string) => void;
  readonly signInTimeoutMs?: number;
  /** More resources (routes of the same gateway) to sign in for at once (RFC 8707, `connect --all`). */
  readonly resources?: readonly string[];
}

/**
 * The token endpoint will not give a token for this resource, though the sign-in stands:
 * `invalid_target` (RFC 8707 §2.2) for a resource outside the grant (mcp-front leaves out the
 * routes a user may not use), `invalid_grant` when the grant is over or the resource was
 * withdrawn from it. `code` is the OAuth error code.
 */
export class ResourceRefused extends ConnectError {
  readonly resource: string;
  readonly code: string;
  readonly description: string | undefined;
  constructor(resource: string, code: string, description: string | undefined) {
    super(`no token for ${resource}: ${code}${description ? ` (${description})` : ''}`);
    this.resource = resource;
    this.code = code;
    this.description = description;
  }
}

/** Refresh this long before expiry, so no request goes out with a token about to die. */
const REFRESH_AHEAD_MS = 60_000;

export function systemBrowser(url: string): void {
  const [command, ...args] =
    process.platform === 'darwin' ? ['open', url] : process.platform === 'win32' ? ['rundll32', 'url.dll,FileProtocolHandler', url] : ['xdg-open', url];
  // No shell: the URL is one argument, whatever it contains (CVE-2025-6514 was a shell).
  spawn(command!, args, { stdio: 'ignore', detached: true, shell: false }).on('error', () => undefined).unref();
}

/**
 * A "browser" for automation (MCP_FRONT_BROWSER=follow): follows the authorization server's
 * redirects to the callback without a person. Only works where the server approves without a
 * page (test servers, conformance suites); a real sign-in needs a real browser.
 */
export function followRedirects(url: string): void {
  void (async () => {
    let next = url;
    for (let hop = 0; hop < 10; hop++) {
      const res = await fetch(next, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
      await res.body?.cancel();
      const location = res.headers.get('location');
      if (!location) return;
      next = new URL(location, next).toString();
    }
  })().catch(() => undefined);
}

export class Authorizer {
  readonly #server: string;
  readonly #options: AuthOptions;
  #discovered?: Promise<Discovered>;
  #inFlight?: Promise<string>;

  constructor(serverUrl: string, options: AuthOptions) {
    this.#server = serverUrl;
    this.#options = options;
  }

  async #context(): Promise<{ discovered: Discovered; file: GrantFile }> {
    this.#discovered ??= discover(this.#server);
    const discovered = await this.#discovered;
    return { discovered, file: new GrantFile(this.#options.dir, discovered.resource) };
  }

  /** A valid access token: cached, refreshed, or from a new sign-in. Single flight in this process. */
  accessToken(): Promise<string> {
    this.#inFlight ??= this.#obtain(undefined).finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  /** After a 401 with `rejected`: a refreshed (or new) token. */
  async renew(rejected: string): Promise<string> {
    this.#inFlight ??= this.#obtain(rejected).finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  /** After a 401 with `rejected` for `resource`: a refreshed token for it (see accessTokenFor). */
  async renewFor(resource: string, rejected: string): Promise<string> {
    const { file } = await this.#context();
    await file.withLock(async () => {
      const grant = file.read();
      if (grant?.perResource?.[resource]?.accessToken !== rejected) return; // renewed meanwhile
      const { [resource]: _dropped, ...others } = grant.perResource;
      file.write({ ...grant, perResource: others });
    });
    return this.accessTokenFor(resource);
  }

  /**
   * `connect --all`: a refresh token for the sign-in, from the grant file or a new sign-in
   * (true: a new one). A sign-in that did not ask for every resource wanted now (a route added
   * since) does not count: a resource left out of its grant would look refused. `again`: the one
   * in the file was refused for every resource; unless another process has signed in meanwhile,
   * sign in anew.
   */
  async ensureSignedIn(options: { again?: boolean } = {}): Promise<boolean> {
    const { discovered, file } = await this.#context();
    const failed = options.again ? file.read()?.refreshToken : undefined;
    const wanted = this.#options.resources ?? [];
    const held = (g: StoredGrant | undefined) => g?.refreshToken !== undefined && g.refreshToken !== failed && wanted.every((r) => g.resources?.includes(r));
    if (held(file.read())) return false;
    return file.withLock(async () => {
      if (held(file.read())) return false;
      await this.#signIn(discovered, file);
      return true;
    });
  }

  /**
   * A token for one of the resources the sign-in covered (`connect --all`): the refresh token is
   * exchanged for one (RFC 8707 §2.2), under the same lock, and kept per resource. Throws
   * ResourceRefused when the server will not give one for this resource.
   */
  async accessTokenFor(resource: string): Promise<string> {
    const { discovered, file } = await this.#context();
    const usable = (g: StoredGrant | undefined) => {
      const t = g?.perResource?.[resource];
      return t && t.expiresAt - Date.now() > Math.min(REFRESH_AHEAD_MS, t.lifetimeMs / 10) ? t.accessToken : undefined;
    };
    const cached = usable(file.read());
    if (cached) return cached;
    await this.ensureSignedIn();
    return file.withLock(async () => {
      const grant = file.read()!;
      const again = usable(grant);
      if (again) return again;
      const refreshed = await this.#tokenRequest(discovered, grant, { grant_type: 'refresh_token', refresh_token: grant.refreshToken!, resource });
      if (!refreshed.ok) {
        if (refreshed.error === 'invalid_target' || refreshed.error === 'invalid_grant') throw new ResourceRefused(resource, refreshed.error, refreshed.description);
        throw new ConnectError(`no token for ${resource}: ${refreshed.error}`);
      }
      const t = refreshed.tokens;
      file.write({ ...grant, refreshToken: t.refreshToken, perResource: { ...grant.perResource, [resource]: { accessToken: t.accessToken, expiresAt: t.expiresAt, lifetimeMs: t.lifetimeMs } } });
      return t.accessToken;
    });
  }

  /** After a 403 insufficient_scope: sign in again asking for `scope` too (a refresh can't widen scope). */
  async stepUp(scope: string): Promise<string> {
    const { discovered, file } = await this.#context();
    const wanted = new Set([...(discovered.scope ?? '').split(' '), ...scope.split(' ')].filter(Boolean));
    this.#scope = [...wanted].join(' ');
    return file.withLock(() => this.#signIn(discovered, file));
  }

  #scope?: string;

  async #obtain(rejected: string | undefined): Promise<string> {
    const { discovered, file } = await this.#context();
    // Refresh ahead: a minute before expiry, or the last tenth of a short-lived token's life.
    const fresh = (g: StoredGrant | undefined) =>
      g?.accessToken && g.accessToken !== rejected && (g.expiresAt ?? 0) - Date.now() > Math.min(REFRESH_AHEAD_MS, (g.lifetimeMs ?? 3_600_000) / 10);
    const cached = file.read();
    if (fresh(cached)) return cached!.accessToken!;
    return file.withLock(async () => {
      const grant = file.read(); // another process may have done it while we waited
      if (fresh(grant)) return grant!.accessToken!;
      if (grant?.refreshToken) {
        const refreshed = await this.#tokenRequest(discovered, grant, { grant_type: 'refresh_token', refresh_token: grant.refreshToken, resource: discovered.resource });
        if (refreshed.ok) {
          file.write({ ...grant, ...refreshed.tokens });
          return refreshed.tokens.accessToken;
        }
        if (refreshed.error !== 'invalid_grant') throw new ConnectError(`refreshing the token failed: ${refreshed.error}`);
        file.forgetTokensIf(grant.refreshToken);
      }
      return this.#signIn(discovered, file);
    });
  }

  async #register(discovered: Discovered, redirectUri: string, existing: StoredGrant | undefined): Promise<Pick<StoredGrant, 'clientId' | 'clientSecret'>> {
    if (this.#options.clientId) return { clientId: this.#options.clientId, clientSecret: this.#options.clientSecret };
    if (this.#options.clientMetadataUrl && (discovered.metadata as { client_id_metadata_document_supported?: boolean }).client_id_metadata_document_supported) {
      return { clientId: checkSafeUrl(this.#options.clientMetadataUrl, 'the client metadata URL').toString() };
    }
    if (existing?.clientId && existing.redirectUri === redirectUri) return existing;
    const endpoint = discovered.metadata.registration_endpoint;
    if (!endpoint) throw new ConnectError('the authorization server offers no dynamic registration: pass --client-id (and --client-secret) of a registered client');
    const res = await fetchJson(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'mcp-front connect', redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' }),
    });
    const body = res.body as { client_id?: unknown; client_secret?: unknown } | undefined;
    if (res.status !== 201 && res.status !== 200) throw new ConnectError(`registration refused (HTTP ${res.status})`);
    if (typeof body?.client_id !== 'string') throw new ConnectError('registration answered without a client_id');
    return { clientId: body.client_id, clientSecret: typeof body.client_secret === 'string' ? body.client_secret : undefined };
  }

  async #signIn(discovered: Discovered, file: GrantFile): Promise<string> {
    const { metadata } = discovered;
    const state = randomBytes(16).toString('base64url');
    const verifier = randomBytes(32).toString('base64url');
    const several = this.#options.resources !== undefined;
    const listener = await loopbackCallback(this.#options.callbackPort ?? 0, state, this.#options.signInTimeoutMs ?? 5 * 60_000);
    try {
      const client = await this.#register(discovered, listener.redirectUri, file.read());
      const url = checkSafeUrl(metadata.authorization_endpoint, 'authorization_endpoint');
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: client.clientId,
        redirect_uri: listener.redirectUri,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
        state,
        resource: discovered.resource,
        ...((this.#scope ?? discovered.scope) ? { scope: (this.#scope ?? discovered.scope)! } : {}),
      }).toString();
      for (const extra of this.#options.resources ?? []) if (extra !== discovered.resource) url.searchParams.append('resource', extra);
      this.#options.log(`mcp-front connect: sign in to ${discovered.resource} in your browser: ${url}`);
      this.#options.openBrowser?.(url.toString());
      // mcp-front answers a request for routes none of which the user may use with a page,
      // never a redirect to us (consent.ts): all we can see is the wait running out.
      const answer = await listener.result.catch((err: unknown) => {
        throw several && err instanceof ConnectError ? new ConnectError(`${err.message}; if your browser shows "No access to this MCP server", you may use none of these routes`) : err;
      });
      if (answer.get('error')) throw new ConnectError(`sign-in refused: ${answer.get('error_description') ?? answer.get('error')}`);
      // RFC 9207: the answer must come from the server we asked (mix-up attacks).
      if (metadata.authorization_response_iss_parameter_supported && answer.get('iss') !== metadata.issuer) throw new ConnectError(`the sign-in answer came from ${answer.get('iss')}, not ${metadata.issuer}`);
      const code = answer.get('code');
      if (!code) throw new ConnectError('the sign-in answer carries no code');
      const base: StoredGrant = { server: this.#server, resource: discovered.resource, ...client, redirectUri: listener.redirectUri };
      // Several resources: the server may have left out of the grant those the user may not
      // use, whichever they are, so the code is exchanged without naming one (RFC 8707 §2.2
      // lets the server choose; it takes the grant's first). That token is not kept: its
      // audience is unknown here. Each resource's own comes from the refresh token, asked for
      // by name (accessTokenFor).
      const exchanged = await this.#tokenRequest(discovered, base, { grant_type: 'authorization_code', code, redirect_uri: listener.redirectUri, code_verifier: verifier, ...(several ? {} : { resource: discovered.resource }) });
      if (!exchanged.ok) throw new ConnectError(`the code exchange failed: ${exchanged.error}`);
      if (several && !exchanged.tokens.refreshToken) throw new ConnectError('the server gave no refresh token, which a sign-in for several routes needs');
      file.write(several ? { ...base, refreshToken: exchanged.tokens.refreshToken, resources: [...this.#options.resources!] } : { ...base, ...exchanged.tokens });
      this.#options.log('mcp-front connect: signed in');
      return exchanged.tokens.accessToken;
    } finally {
      listener.close();
    }
  }

  async #tokenRequest(discovered: Discovered, grant: Pick<StoredGrant, 'clientId' | 'clientSecret' | 'refreshToken'>, params: Record<string, string>) {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const form = new URLSearchParams(params);
    // RFC 6749 §2.3.1: Basic unless the server only takes the secret in the body.
    const methods = discovered.metadata.token_endpoint_auth_methods_supported ?? ['client_secret_basic'];
    if (grant.clientSecret && (methods.includes('client_secret_basic') || !methods.includes('client_secret_post'))) {
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(grant.clientId)}:${encodeURIComponent(grant.clientSecret)}`).toString('base64')}`;
    } else {
      form.set('client_id', grant.clientId);
      if (grant.clientSecret) form.set('client_secret', grant.clientSecret);
    }
    const res = await fetchJson(discovered.metadata.token_endpoint, { method: 'POST', headers, body: form.toString() });
    const body = (res.body ?? {}) as { access_token?: string; refresh_token?: string; expires_in?: number; error?: string; error_description?: string };
    if (res.status !== 200 || !body.access_token) return { ok: false as const, error: body.error ?? `HTTP ${res.status}`, description: typeof body.error_description === 'string' ? body.error_description.replace(/[^\x20-\x7e]/g, '').slice(0, 300) : undefined };
    return {
      ok: true as const,
      tokens: { accessToken: body.access_token, refreshToken: body.refresh_token ?? grant.refreshToken, expiresAt: Date.now() + (body.expires_in ?? 3600) * 1000, lifetimeMs: (body.expires_in ?? 3600) * 1000 },
    };
  }
}

/** Listens on 127.0.0.1 for exactly one GET /callback carrying `state`; everything else is 404. */
async function loopbackCallback(port: number, state: string, timeoutMs: number): Promise<{ redirectUri: string; result: Promise<URLSearchParams>; close(): void }> {
  let settle!: (q: URLSearchParams) => void;
  let fail!: (err: Error) => void;
  const result = new Promise<URLSearchParams>((resolve, reject) => ((settle = resolve), (fail = reject)));
  let answered = false;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (answered || req.method !== 'GET' || url.pathname !== '/callback' || url.searchParams.get('state') !== state) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    answered = true;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'" }).end('<!doctype html><title>Signed in</title><p>Signed in. You can close this window.</p>');
    settle(url.searchParams);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  const timer = setTimeout(() => fail(new ConnectError(`no sign-in within ${timeoutMs / 1000} s`)), timeoutMs);
  return {
    redirectUri: `http://127.0.0.1:${(server.address() as { port: number }).port}/callback`,
    result,
    close: () => {
      clearTimeout(timer);
      server.closeAllConnections();
      server.close();
    },
  };
}
