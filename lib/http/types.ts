// Web-standard handlers: the Functions Framework adapter, the Cloud Run entrypoint,
// the local server and the tests all call the same `(Request, ctx) => Response`.

export interface RequestContext {
  /** The caller's address as the edge saw it (first X-Forwarded-For hop behind the LB). */
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
