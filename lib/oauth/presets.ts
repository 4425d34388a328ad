import { isLoopbackHost } from '../config/config.ts';

// The MCP clients people use, by the redirect URIs they register. With DCR open (the default)
// they need nothing from an administrator; with `registration: presets` only these (plus
// loopback redirects for native apps, plus `extra_redirect_uris`) may register, so a company
// can shut out unknown web clients while Claude, ChatGPT, Claude Code and the Inspector still
// connect with no admin step. The consent page names a preset client as verified.

interface KnownClient {
  readonly name: string;
  readonly matches: (uri: URL, raw: string) => boolean;
}

const exact = (...uris: string[]) => (_url: URL, raw: string) => uris.includes(raw);

export const KNOWN_CLIENTS: readonly KnownClient[] = [
  { name: 'Claude', matches: exact('https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback') },
  {
    name: 'ChatGPT',
    matches: (url, raw) => raw === 'https://chatgpt.com/connector_platform_oauth_redirect' || (url.origin === 'https://chatgpt.com' && /^\/connector\/oauth\/[A-Za-z0-9_-]{1,128}$/.test(url.pathname) && !url.search),
  },
  // The Inspector's default port; its "Quick OAuth" and guided ("debug") flows.
  { name: 'MCP Inspector', matches: (url) => url.protocol === 'http:' && isLoopbackHost(url.hostname) && url.port === '6274' && ['/oauth/callback', '/oauth/callback/debug'].includes(url.pathname) },
  // Claude Code (and `mcp-front connect`) listen on a loopback port of their own choosing.
  { name: 'Claude Code or another local app', matches: (url) => url.protocol === 'http:' && isLoopbackHost(url.hostname) && url.pathname === '/callback' },
];

/** The known client a redirect URI belongs to, if any. */
export function knownClientName(redirectUri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(redirectUri);
  } catch {
    return undefined;
  }
  return KNOWN_CLIENTS.find((c) => c.matches(url, redirectUri))?.name;
}

/** Under `registration: presets`: why this redirect URI may not be registered (undefined: it may). */
export function presetProblem(redirectUri: string, extra: readonly string[]): string | undefined {
  if (knownClientName(redirectUri) || extra.includes(redirectUri)) return undefined;
  const url = new URL(redirectUri);
  // RFC 8252 native apps: loopback on any port, or a private-use scheme.
  if ((url.protocol === 'http:' && isLoopbackHost(url.hostname)) || !['http:', 'https:'].includes(url.protocol)) return undefined;
  return `is not the redirect URI of a known client (${KNOWN_CLIENTS.map((c) => c.name).slice(0, 3).join(', ')}, …); an administrator can add it to oauth.extra_redirect_uris`;
}
