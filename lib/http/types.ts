// Web-standard handlers: the Functions Framework adapter, the Cloud Run entrypoint,
// the local server and the tests all call the same `(Request, ctx) => Response`.

export interface RequestContext {
  /** The caller's address as the first trusted proxy saw it (client-ip.ts). */
  readonly clientIp: string;
  /** Cloud Trace id when the LB sent one, for log correlation. */
  readonly trace?: string;
}

export type Handler = (req: Request, ctx: RequestContext) => Promise<Response>;

/**
 * What the route services read of a request. A web Request is one; on Node the adapter passes
 * a lighter one that reads headers and body where Node parsed them (node-request.ts).
 */
export interface HttpRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: { get(name: string): string | null };
  readonly signal: AbortSignal;
  readonly body: ReadableStream<Uint8Array> | null;
}

/** A handler reading only what HttpRequest has: it serves web Requests as well. */
export type HttpHandler = (req: HttpRequest, ctx: RequestContext) => Promise<Response>;

const parsedUrls = new WeakMap<HttpRequest, URL>();

/** A request's URL, parsed once however many handlers look at it. */
export function urlOf(req: HttpRequest): URL {
  let url = parsedUrls.get(req);
  if (!url) parsedUrls.set(req, (url = new URL(req.url)));
  return url;
}

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...Object.fromEntries(new Headers(headers)) },
  });
}

/**
 * A JSON answer whose text is already serialised (an MCP message as it came): a web-standard
 * Response to whoever reads it, but the Response proper (headers object, body stream) is made
 * only when someone does. The Node adapter writes the text as it is (madeAnswer), so on the hot
 * path none is made at all.
 */
class JsonAnswer extends Response {
  readonly made: { readonly text: string; readonly headers: Record<string, string> };
  readonly #status: number;
  #response: Response | undefined;

  constructor(text: string, status: number, headers: Record<string, string>) {
    super();
    this.made = { text, headers };
    this.#status = status;
  }

  /** The Response proper, made the first time anything but the status is asked for. */
  get response(): Response {
    return (this.#response ??= new Response(this.made.text, { status: this.#status, headers: this.made.headers }));
  }

  get answerStatus(): number {
    return this.#status;
  }

  get used(): boolean {
    return this.#response?.bodyUsed ?? false;
  }

  override text(): Promise<string> {
    return this.response.text();
  }
  override json(): Promise<unknown> {
    return this.response.json();
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    return this.response.arrayBuffer();
  }
  override bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return this.response.bytes();
  }
  override blob(): Promise<Blob> {
    return this.response.blob();
  }
  override formData(): Promise<FormData> {
    return this.response.formData();
  }
  override clone(): Response {
    return this.response.clone();
  }
}
// Response declares these as properties (its own are accessors): they are defined the same way here.
for (const name of ['headers', 'body', 'statusText', 'type', 'url', 'redirected'] as const) {
  Object.defineProperty(JsonAnswer.prototype, name, { get(this: JsonAnswer) { return this.response[name]; }, configurable: true });
}
Object.defineProperties(JsonAnswer.prototype, {
  status: { get(this: JsonAnswer) { return this.answerStatus; }, configurable: true },
  ok: { get(this: JsonAnswer) { return this.answerStatus >= 200 && this.answerStatus < 300; }, configurable: true },
  bodyUsed: { get(this: JsonAnswer) { return this.used; }, configurable: true },
});

/** A JSON answer of already serialised text (an MCP message as it came). A web-standard Response all the same. */
export function jsonAnswer(text: string, status: number, headers: Record<string, string>): Response {
  return new JsonAnswer(text, status, { ...headers, 'content-type': 'application/json' });
}

/** A `jsonAnswer` nobody has read yet: its text and headers. */
export function madeAnswer(response: Response): { readonly text: string; readonly headers: Record<string, string> } | undefined {
  return response instanceof JsonAnswer && !response.bodyUsed ? response.made : undefined;
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
