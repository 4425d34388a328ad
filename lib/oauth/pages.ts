import { knownClientName } from './presets.ts';
import escapeHtml from 'escape-html';

// The authorization server's own pages: sign-in (dev provider), consent and errors. Every
// interpolated value is escaped; no scripts at all; a CSP that allows nothing but our forms
// and the one redirect target the form may lead to.

export interface PageOptions {
  readonly title: string;
  readonly body: string;
  readonly status?: number;
  /** Where a form on this page may end up after its redirects (the client's redirect_uri, a service's sign-in). */
  readonly formTarget?: string | readonly string[];
  readonly headers?: Record<string, string>;
  /** A wider layout (the account page's tables). */
  readonly wide?: boolean;
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.4rem}button,input{font:inherit;padding:.5rem .9rem;border-radius:.4rem;border:1px solid #888}
button[value=allow],button[type=submit]{background:#1a56db;color:#fff;border-color:#1a56db}ul{padding-left:1.2rem}
.muted{color:#555;font-size:.9rem}code{background:#f2f2f2;padding:0 .2rem}fieldset{border:1px solid #ccc;border-radius:.4rem;margin:1rem 0}
.error{color:#b00020}table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #ddd}
td form,p form{display:inline}body.wide{max-width:52rem}`;

/** The CSP form-action source for a redirect target: its origin, or its scheme for native apps. */
function formSource(target: string): string {
  const url = new URL(target);
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : url.protocol;
}

export function page(options: PageOptions): Response {
  const targets = options.formTarget === undefined ? [] : typeof options.formTarget === 'string' ? [options.formTarget] : options.formTarget;
  const formAction = [...new Set(["'self'", ...targets.map(formSource)])].join(' ');
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="same-origin">
<title>${escapeHtml(options.title)}</title><style>${STYLE}</style></head><body${options.wide ? ' class="wide"' : ''}>${options.body}</body></html>`;
  return new Response(html, {
    status: options.status ?? 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
      'x-frame-options': 'DENY',
      // same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on our own form posts.
      'referrer-policy': 'same-origin',
      ...options.headers,
    },
  });
}

/** A browser-facing error: shown, never redirected (the redirect_uri may not be the client's). */
export function errorPage(title: string, message: string, status = 400): Response {
  return page({ title, status, body: `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p><p class="muted">You can close this window.</p>` });
}

export function signInPage(options: { requestId: string; csrf: string; clientName: string; error?: string; formTarget: string }): Response {
  return page({
    title: 'Sign in',
    formTarget: options.formTarget,
    status: options.error ? 400 : 200,
    body: `<h1>Sign in to continue to ${escapeHtml(options.clientName)}</h1>
<p class="muted">Local development sign-in: any email address is accepted on this machine.</p>
${options.error ? `<p role="alert">${escapeHtml(options.error)}</p>` : ''}
<form method="post" action="/signin">
<input type="hidden" name="request" value="${escapeHtml(options.requestId)}"><input type="hidden" name="csrf" value="${escapeHtml(options.csrf)}">
<p><label>Email <input name="email" type="email" autocomplete="email" required autofocus></label></p>
<p><button type="submit">Sign in</button></p></form>`,
  });
}

/** A route's request for the user's own credential, as a form field (consent and account pages). */
export interface CredentialField {
  /** The form field's name. */
  readonly name: string;
  readonly route: string;
  readonly label: string;
  readonly instructions: string;
  readonly helpUrl?: string;
  /** Why the last value given was refused (never the value itself). */
  readonly error?: string;
}

/** The input of a credential: never pre-filled, never autocompleted, required unless a button says otherwise (formnovalidate). */
export function credentialInputField(field: CredentialField, maxBytes: number): string {
  return `<p><label>${escapeHtml(field.label)} <input type="password" name="${escapeHtml(field.name)}" autocomplete="off" spellcheck="false" maxlength="${maxBytes}" required></label></p>`;
}

/** Where a credential comes from: the operator's instructions (text, never markup) and help link. */
export function credentialHelp(field: Pick<CredentialField, 'instructions' | 'helpUrl'>): string {
  return `<p>${escapeHtml(field.instructions)}</p>${field.helpUrl ? `<p><a href="${escapeHtml(field.helpUrl)}" rel="noopener noreferrer" target="_blank">Where to find it</a></p>` : ''}`;
}

export function credentialError(error: string | undefined): string {
  return error ? `<p role="alert" class="error">${escapeHtml(error)}</p>` : '';
}

/** Where a redirect URI sends the user back to: its host, or a native app's scheme. */
export function redirectPlace(redirectUri: string): string {
  const redirect = new URL(redirectUri);
  return redirect.protocol === 'http:' || redirect.protocol === 'https:' ? redirect.host : redirect.protocol;
}

/** A route whose service account the user connects after Allow (routes[].user_oauth). */
export interface ServiceConnection {
  readonly route: string;
  readonly label: string;
  /** The service's sign-in, where the browser goes after Allow; undefined when it could not be found now. */
  readonly authorizationEndpoint?: string;
}

export function consentPage(options: { requestId: string; csrf: string; clientName: string; redirectUri: string; routes: readonly string[]; email: string; credentials?: readonly CredentialField[]; services?: readonly ServiceConnection[]; maxCredentialBytes?: number }): Response {
  const where = redirectPlace(options.redirectUri);
  // The name is whatever the client registered; where the code goes is what can be vouched for.
  const known = knownClientName(options.redirectUri);
  const credentials = options.credentials ?? [];
  const fields = credentials
    .map(
      (f) => `<fieldset><legend>Your ${escapeHtml(f.label)} for <code>${escapeHtml(f.route)}</code></legend>
${credentialHelp(f)}${credentialError(f.error)}${credentialInputField(f, options.maxCredentialBytes ?? 4096)}
<p class="muted">Kept sealed; only your own sessions of <code>${escapeHtml(f.route)}</code> receive it. Replace or delete it on your <a href="/account">account page</a>.</p></fieldset>`,
    )
    .join('\n');
  const services = (options.services ?? [])
    .map(
      (c) => `<fieldset><legend>Your ${escapeHtml(c.label)} for <code>${escapeHtml(c.route)}</code></legend>
<p>Not connected yet. After Allow, you sign in to it${c.authorizationEndpoint ? ` at <code>${escapeHtml(new URL(c.authorizationEndpoint).host)}</code>` : ''} and let this gateway use it for you; then you come back here.</p>
<p class="muted">Its tokens are kept sealed; only your own sessions of <code>${escapeHtml(c.route)}</code> receive its access. Disconnect it on your <a href="/account">account page</a>.</p></fieldset>`,
    )
    .join('\n');
  return page({
    title: 'Allow access?',
    formTarget: [options.redirectUri, ...(options.services ?? []).flatMap((c) => (c.authorizationEndpoint ? [c.authorizationEndpoint] : []))],
    status: credentials.some((f) => f.error) ? 400 : 200,
    body: `<h1>Allow ${escapeHtml(options.clientName)} to use your MCP tools?</h1>
<p>Signed in as <strong>${escapeHtml(options.email)}</strong>.</p>
<p><strong>${escapeHtml(options.clientName)}</strong> (returning to <code>${escapeHtml(where)}</code>${known ? `, a known address of <strong>${escapeHtml(known)}</strong>` : ''}) asks to act for you on:</p>
<ul>${options.routes.map((r) => `<li><code>${escapeHtml(r)}</code></li>`).join('')}</ul>
<form method="post" action="/consent">
<input type="hidden" name="request" value="${escapeHtml(options.requestId)}"><input type="hidden" name="csrf" value="${escapeHtml(options.csrf)}">
${fields}${services}
<p><button name="decision" value="allow" type="submit">Allow</button> <button name="decision" value="deny" type="submit" formnovalidate>Deny</button></p></form>
<p class="muted">Only allow clients you trust. You can revoke access later.</p>`,
  });
}
