import type { Clock } from '../clock.ts';
import { isLoopbackHost, routeResources, type Config, type RouteConfig } from '../config/config.ts';
import { randomToken, safeEqual, sha256 } from '../random.ts';
import type { Store } from '../store/store.ts';
import { provenFacts, type ProvenFacts, type SignedInUser } from './grants.ts';

// The state of an authorization in progress (sign-in → consent → code), the AS browser
// session that makes one upstream sign-in serve every route, and remembered consent.

export interface AuthRequestFields {
  clientId: string;
  clientName: string;
  redirectUri: string;
  /** The client left redirect_uri out (it registered one): then /token need not repeat it (RFC 6749 §4.1.3). */
  redirectUriImplied?: boolean;
  state?: string;
  codeChallenge: string;
  resource: string;
  /** More routes granted by the same consent (RFC 8707 allows several resources). */
  extraResources?: string[];
  scope: string;
  /** The form token of the sign-in and consent pages of this request. */
  csrf: string;
  /** Bound at the first page that knows the user; the rest of the flow must be that user. */
  userSub?: string;
  email?: string;
  /** Upstream providers' own state and PKCE verifier for this request. */
  upstream?: Record<string, string>;
  /** Epoch ms: set once at /authorize; every later write keeps it (updateAuthRequest). */
  expiresAt: number;
  /** The account page's: a sign-in for it (no client, no code), or a service account connected from it; either ends back at /account. */
  purpose?: 'account';
  /** The user allowed on the consent page; the code waits for their service accounts to be connected. */
  allowed?: boolean;
  /**
   * The service account being connected (routes[].user_oauth): its state's secret half and PKCE
   * verifier; started from the account page, also the browser session it was started in (browserSessionBinding).
   */
  connect?: { route: string; nonce: string; verifier: string; browser?: string };
}

export type AuthRequest = AuthRequestFields & { [key: string]: unknown };

export const AUTH_REQUEST_TTL_MS = 10 * 60_000;

export async function saveAuthRequest(store: Store, clock: Clock, request: Omit<AuthRequestFields, 'csrf' | 'expiresAt'>): Promise<{ id: string; request: AuthRequest }> {
  const id = randomToken(24);
  const full: AuthRequest = { ...request, csrf: randomToken(24), expiresAt: clock.now() + AUTH_REQUEST_TTL_MS };
  await store.put('authRequests', id, full, { expiresAt: full.expiresAt });
  return { id, request: full };
}

/**
 * The one writer of a request in progress (sign-in, the upstream round trip, consent): a put
 * without the expiry would make the request live for ever, and a new one would let each step
 * extend it. Returns the request as written.
 */
export async function updateAuthRequest(store: Store, id: string, request: AuthRequest, changes: Partial<Omit<AuthRequestFields, 'csrf' | 'expiresAt'>>): Promise<AuthRequest> {
  const updated: AuthRequest = { ...request, ...changes, expiresAt: request.expiresAt };
  await store.put('authRequests', id, updated, { expiresAt: request.expiresAt });
  return updated;
}

/** Keeps only these of the request's resources (the routes its user may use), the first as primary. */
export async function narrowAuthRequest(store: Store, id: string, request: AuthRequest, resources: readonly string[]): Promise<AuthRequest> {
  const { extraResources: _all, ...rest } = request;
  const narrowed: AuthRequest = { ...rest, resource: resources[0]!, ...(resources.length > 1 ? { extraResources: resources.slice(1) } : {}) };
  await store.put('authRequests', id, narrowed, { expiresAt: request.expiresAt });
  return narrowed;
}

/**
 * Takes the service connection in progress off the request, once (a replayed or racing callback
 * finds none): the request as it was, with it, or undefined when it is not this one.
 */
export async function takeServiceConnection(store: Store, id: string, nonce: string): Promise<AuthRequest | undefined> {
  return store.transaction(async (tx) => {
    const request = await tx.get<AuthRequest>('authRequests', id);
    if (!request?.connect || typeof request.expiresAt !== 'number' || !safeEqual(nonce, request.connect.nonce)) return undefined;
    const { connect: _taken, ...rest } = request;
    tx.put('authRequests', id, rest, { expiresAt: request.expiresAt });
    return request;
  });
}

export async function loadAuthRequest(store: Store, id: string | null): Promise<AuthRequest | undefined> {
  if (!id || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) return undefined;
  const request = await store.get<AuthRequest>('authRequests', id);
  // One written before requests carried their expiry may have lost it: start again.
  return typeof request?.expiresAt === 'number' ? request : undefined;
}

/** The route a resource URL names, if any (RFC 8707: every form a client may send). */
export function routeForResource(config: Pick<Config, 'oauth' | 'routes'>, resource: string): RouteConfig | undefined {
  return config.routes.find((route) => routeResources(config.oauth.issuer, route).includes(resource));
}

// --- The AS session cookie -----------------------------------------------------------------

export function sessionCookieName(issuer: string): string {
  // __Host- pins the cookie to this exact origin over https (no Domain, Path=/, Secure).
  return new URL(issuer).protocol === 'https:' ? '__Host-mcp_front_session' : 'mcp_front_session';
}

export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.get('cookie') ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

export async function startBrowserSession(store: Store, clock: Clock, config: Config, user: SignedInUser): Promise<string> {
  const value = randomToken(32);
  const ttl = config.oauth.sessionTtl;
  // The proven facts and the sealed upstream credential ride along: a second route's grant,
  // authorized without a new upstream sign-in, must be re-checkable (and its route's access
  // judged) like the first.
  const session = { userSub: user.sub, email: user.email, ...provenFacts(user), ...(user.upstream ? { upstream: user.upstream } : {}), createdAt: clock.now() };
  await store.put('browserSessions', sha256(value), session, { expiresAt: clock.now() + ttl });
  const issuer = new URL(config.oauth.issuer);
  const secure = issuer.protocol === 'https:' || !isLoopbackHost(issuer.hostname);
  return `${sessionCookieName(config.oauth.issuer)}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${Math.floor(ttl / 1000)}${secure ? '; Secure' : ''}`;
}

export async function browserSessionUser(store: Store, config: Config, req: Request): Promise<SignedInUser | undefined> {
  const value = readCookie(req, sessionCookieName(config.oauth.issuer));
  if (!value || !/^[A-Za-z0-9_-]{20,100}$/.test(value)) return undefined;
  const session = await store.get<{ [key: string]: unknown; userSub: string; email: string; upstream?: string } & ProvenFacts>('browserSessions', sha256(value));
  return session ? { sub: session.userSub, email: session.email, ...provenFacts(session), ...(session.upstream ? { upstream: session.upstream } : {}) } : undefined;
}

/**
 * The CSRF token of the account page's forms: derived from the session cookie's secret value,
 * which only this browser holds (the store keeps only its SHA-256, from which this can't be
 * made). A page from elsewhere can't read it, so can't post it.
 */
export function accountFormToken(req: Request, config: Pick<Config, 'oauth'>): string | undefined {
  return fromSessionCookie(req, config, 'account form');
}

/**
 * What ties a service connection started on the account page to this browser's session, kept
 * in the pending request: derived like the form token but for another purpose, so the store
 * never holds anything a form token can be made from.
 */
export function browserSessionBinding(req: Request, config: Pick<Config, 'oauth'>): string | undefined {
  return fromSessionCookie(req, config, 'service connection');
}

function fromSessionCookie(req: Request, config: Pick<Config, 'oauth'>, purpose: string): string | undefined {
  const value = readCookie(req, sessionCookieName(config.oauth.issuer));
  return value && /^[A-Za-z0-9_-]{20,100}$/.test(value) ? sha256(`${purpose}\n${value}`) : undefined;
}

/** Signs the browser out: the session is deleted, and the answer's cookie header clears it. */
export async function endBrowserSession(store: Store, config: Config, req: Request): Promise<string> {
  const value = readCookie(req, sessionCookieName(config.oauth.issuer));
  if (value && /^[A-Za-z0-9_-]{20,100}$/.test(value)) await store.delete('browserSessions', sha256(value));
  const issuer = new URL(config.oauth.issuer);
  const secure = issuer.protocol === 'https:' || !isLoopbackHost(issuer.hostname);
  return `${sessionCookieName(config.oauth.issuer)}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${secure ? '; Secure' : ''}`;
}

// --- Remembered consent --------------------------------------------------------------------

/** Every resource an authorization request (or grant) covers, the primary one first. */
export const resourcesOf = (r: { resource: string; extraResources?: string[] }): string[] => [r.resource, ...(r.extraResources ?? [])];

const consentId = (userSub: string, clientId: string, resources: string[], scope: string) => sha256(`${userSub}\n${clientId}\n${[...resources].sort().join(' ')}\n${scope}`);

export async function hasConsent(store: Store, userSub: string, request: AuthRequest): Promise<boolean> {
  return (await store.get('consents', consentId(userSub, request.clientId, resourcesOf(request), request.scope))) !== undefined;
}

/** Remembered for consent_ttl from the Allow; a consent used meanwhile is not extended, so the page comes back on schedule. */
export async function rememberConsent(store: Store, clock: Clock, ttlMs: number, userSub: string, request: AuthRequest): Promise<void> {
  const now = clock.now();
  await store.put(
    'consents',
    consentId(userSub, request.clientId, resourcesOf(request), request.scope),
    { userSub, clientId: request.clientId, resource: request.resource, resources: resourcesOf(request), scope: request.scope, createdAt: now },
    { expiresAt: now + ttlMs },
  );
}
