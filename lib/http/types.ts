// Web-standard handlers: the Functions Framework adapter, the Cloud Run entrypoint,
// the local server and the tests all call the same `(Request, ctx) => Response`.

export interface RequestContext {
  /** The caller's address as the first trusted proxy saw it (client-ip.ts). */
  readonly clientIp: string;
  /** Cloud Trace id when the LB sent one, for log correlation. */
  readonly trace?: string;
}

export type Handler = (req: Request, ctx: RequestContext) => Promise<Response>;

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...Object.fromEntries(new Headers(headers)) },
  });
}

/** Answers made by `jsonAnswer`, as made: the Node adapter writes them without reading the Response back. */
const answers = new WeakMap<Response, { readonly text: string; readonly headers: Record<string, string> }>();

/** A JSON answer whose text is already serialised (an MCP message as it came). A web-standard Response all the same. */
export function jsonAnswer(text: string, status: number, headers: Record<string, string>): Response {
  const all = { ...headers, 'content-type': 'application/json' };
  const response = new Response(text, { status, headers: all });
  answers.set(response, { text, headers: all });
  return response;
}

/** A `jsonAnswer` nobody has read yet: its text and headers. */
export function madeAnswer(response: Response): { readonly text: string; readonly headers: Record<string, string> } | undefined {
  return response.bodyUsed ? undefined : answers.get(response);
}

const HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * A request's URL from its Host header and request target: the path and query of the target,
 * in origin or absolute form (RFC 9112 §3.2.2: an absolute form's host is not ours to route
 * by), on the Host's host. A Host that is not a host (a path smuggled into it) throws.
 */
export function requestUrl(host: string | undefined, target: string | undefined, scheme: 'http' | 'https'): string {
  const authority = host ?? 'localhost';
  if (!HOST.test(authority)) throw new Error('malformed Host');
  const path = target ?? '/';
  if (path.startsWith('/')) return `${scheme}://${authority}${path}`;
  const absolute = new URL(path);
  if (absolute.protocol !== 'http:' && absolute.protocol !== 'https:') throw new Error('malformed request target');
  return `${scheme}://${authority}${absolute.pathname}${absolute.search}`;
}
