import escapeHtml from 'escape-html';
import { credentialError, credentialHelp, credentialInputField, page, type CredentialField } from './pages.ts';

// The account page's markup: the user's connected clients per route, each with a revoke button,
// their own credentials per route (replace, delete; a service account: connect, reconnect,
// disconnect), and sign out. Forms only, no scripts; every form carries the page's CSRF token;
// everything a client or the config said is escaped.

export interface Connection {
  readonly grantId: string;
  readonly clientName: string;
  /** The known client its redirect URI belongs to (presets.ts), which can be vouched for. */
  readonly knownAs?: string;
  /** Where its codes went: a host, or a native app's scheme. */
  readonly place: string;
  readonly firstUse: number;
  readonly lastUse: number;
  /** Every route the grant covers: revoking it ends them all. */
  readonly routes: readonly string[];
}

export interface CredentialRow extends CredentialField {
  /** When the stored one was last given (a service account: last renewed); undefined: none stored. */
  readonly storedAt?: number;
  /** An account at the route's service (routes[].user_oauth): connected through the service, never typed in here. */
  readonly serviceAccount?: boolean;
  /** A service account this user may connect now (the route's access list admits them). */
  readonly connectable?: boolean;
}

export interface AccountView {
  readonly email: string;
  readonly csrf: string;
  readonly notice?: string;
  /** By route path. */
  readonly connections: ReadonlyMap<string, readonly Connection[]>;
  readonly credentials: readonly CredentialRow[];
  /** The services' authorization endpoints, where Connect and Reconnect lead (the CSP's form-action). */
  readonly serviceSignIns?: readonly string[];
  readonly maxCredentialBytes: number;
  readonly tokenTtlSeconds: number;
}

const when = (ms: number) => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

function form(csrf: string, action: string, fields: Record<string, string>, inner: string): string {
  const hidden = Object.entries({ action, ...fields, csrf })
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('');
  return `<form method="post" action="/account">${hidden}${inner}</form>`;
}

function connectionRows(view: AccountView, route: string, connections: readonly Connection[]): string {
  const rows = connections
    .map((c) => {
      const others = c.routes.filter((r) => r !== route);
      const revoke = form(view.csrf, 'revoke', { grant: c.grantId }, `<button type="submit">Revoke</button>`);
      return `<tr><td>${escapeHtml(c.clientName)}${c.knownAs ? ` <span class="muted">(${escapeHtml(c.knownAs)})</span>` : ''}</td><td><code>${escapeHtml(c.place)}</code></td><td>${when(c.firstUse)}</td><td>${when(c.lastUse)}</td><td>${revoke}${others.length ? ` <span class="muted">also ends ${others.map((r) => `<code>${escapeHtml(r)}</code>`).join(', ')}</span>` : ''}</td></tr>`;
    })
    .join('');
  return `<h3><code>${escapeHtml(route)}</code></h3><table><tr><th>Client</th><th>Returns to</th><th>Connected</th><th>Last used</th><th></th></tr>${rows}</table>`;
}

function serviceAccountSection(view: AccountView, c: CredentialRow): string {
  const connect = c.connectable ? form(view.csrf, 'connect-service', { route: c.route }, `<button type="submit">${c.storedAt ? 'Reconnect' : 'Connect'}</button>`) : '';
  const body = c.storedAt
    ? `<p>Connected; its token last renewed ${when(c.storedAt)}.</p><p>${connect} ${form(view.csrf, 'delete-credential', { route: c.route }, '<button type="submit">Disconnect</button>')}</p>
<p class="muted">Reconnect signs you in to it again (another account there, or after changing what you allowed it); sessions started with the current connection end when their client next refreshes. Disconnect deletes its tokens here and asks the service to revoke this gateway's access.</p>`
    : `<p>Not connected${c.connectable ? `: connect it here, or a client you connect to <code>${escapeHtml(c.route)}</code> sends you to sign in to it.` : '.'}</p>${connect ? `<p>${connect}</p>` : ''}`;
  return `<section><h3>Your ${escapeHtml(c.label)} for <code>${escapeHtml(c.route)}</code></h3>${body}</section>`;
}

function credentialSection(view: AccountView, c: CredentialRow): string {
  if (c.serviceAccount) return serviceAccountSection(view, c);
  const save = form(view.csrf, 'save-credential', { route: c.route }, `${credentialInputField(c, view.maxCredentialBytes)}<p><button type="submit">${c.storedAt ? 'Replace' : 'Save'}</button></p>`);
  const status = c.storedAt ? `<p>Stored, last given ${when(c.storedAt)}.</p>` : `<p>None stored: a client you connect to <code>${escapeHtml(c.route)}</code> asks for it, or give it here.</p>`;
  const remove = c.storedAt ? form(view.csrf, 'delete-credential', { route: c.route }, `<p><button type="submit">Delete</button></p>`) : '';
  return `<section><h3>Your ${escapeHtml(c.label)} for <code>${escapeHtml(c.route)}</code></h3>${status}${credentialHelp(c)}${credentialError(c.error)}${save}${remove}</section>`;
}

export function accountPage(view: AccountView, status = 200): Response {
  const connections = [...view.connections.entries()].sort(([a], [b]) => a.localeCompare(b));
  return page({
    title: 'Your MCP access',
    status,
    wide: true,
    ...(view.serviceSignIns?.length ? { formTarget: view.serviceSignIns } : {}),
    body: `<h1>Your MCP access</h1>
<p>Signed in as <strong>${escapeHtml(view.email)}</strong>.</p>
${view.notice ? `<p role="status"><strong>${escapeHtml(view.notice)}</strong></p>` : ''}
<h2>Connected clients</h2>
${connections.length ? connections.map(([route, list]) => connectionRows(view, route, list)).join('\n') : '<p>No client is connected.</p>'}
<p class="muted">Revoking ends the connection at the client's next refresh; an access token it already holds lasts at most ${Math.round(view.tokenTtlSeconds / 60)} more minutes.</p>
${view.credentials.length ? `<h2>Your credentials</h2>\n${view.credentials.map((c) => credentialSection(view, c)).join('\n')}
<p class="muted">Kept sealed; only your own sessions of each route receive yours. Sessions started with one you replace or delete end when their client next refreshes its token.</p>` : ''}
<h2>Sign out</h2>
${form(view.csrf, 'sign-out', {}, '<p><button type="submit">Sign out of this browser</button></p>')}`,
  });
}
