import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { requestUrl, type HttpRequest } from './types.ts';

// A Node request as the route services read it, without building a web Request: a call's
// headers are read where Node parsed them, its body straight from the socket (one read, one
// limit), its signal made only when asked for. The web Request, when a handler needs one
// (the OAuth handlers behind `serve`), is made from it on demand.

/**
 * The headers of which Node keeps only the first field (IncomingMessage.headers), and cookie,
 * which it joins with "; " where a web Headers uses ", ".
 */
const FIRST_ONLY = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent', 'cookie', 'set-cookie']);

export class NodeRequest implements HttpRequest {
  readonly method: string;
  readonly url: string;
  readonly #req: IncomingMessage;
  #controller: AbortController | undefined;
  #aborted = false;
  #body: ReadableStream<Uint8Array> | null | undefined;
  #web: Request | undefined;

  /** Throws on a Host that is not a host (requestUrl), two of them included (RFC 9112 §3.2): the caller answers 400. */
  constructor(req: IncomingMessage) {
    this.#req = req;
    this.method = req.method ?? 'GET';
    const host = this.headers.get('host') ?? undefined;
    // Two Host fields read as "a, b", which is no host: requestUrl refuses it.
    this.url = requestUrl(host, req.url, 'http');
  }

  /**
   * Each header as a web Headers would give it: every field of that name, joined by ", ". Node
   * joins most repeated headers so (its headers object, which it makes for every request
   * anyway); of a few it keeps the first alone, and a repeated Authorization must not pass as
   * its first token: those are read from the raw fields.
   */
  readonly headers = {
    get: (name: string): string | null => {
      const key = name.toLowerCase();
      if (!FIRST_ONLY.has(key)) return (this.#req.headers[key] as string | undefined) ?? null;
      const raw = this.#req.rawHeaders;
      let value: string | null = null;
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === key.length && raw[i]!.toLowerCase() === key) value = value === null ? raw[i + 1]! : `${value}, ${raw[i + 1]!}`;
      return value;
    },
  };

  /** Aborted when the client goes away before the answer is out. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.#aborted) this.#controller.abort();
    return this.#controller.signal;
  }

  /** The client went away: whoever holds the signal stops. */
  abort(): void {
    this.#aborted = true;
    this.#controller?.abort();
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body === undefined) this.#body = this.method === 'GET' || this.method === 'HEAD' ? null : lazyBody(this.#req);
    return this.#body;
  }

  /**
   * The body as UTF-8 text, read from the socket in one pass, or undefined when it is (or
   * declares itself) larger than `limit` bytes; the rest is then discarded, never buffered.
   */
  text(limit: number): Promise<string | undefined> {
    const source = this.#req;
    if (Number(this.headers.get('content-length') ?? 0) > limit) return Promise.resolve(undefined);
    if (source.readableEnded) return Promise.resolve('');
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => source.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size <= limit) return void chunks.push(chunk);
        done();
        source.resume(); // drain, don't keep
        resolve(undefined);
      };
      const onEnd = () => {
        done();
        resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8'));
      };
      const onError = (err: Error) => {
        done();
        reject(err);
      };
      // Closed with neither an end nor an error (the connection cut by the server): nothing more will come.
      const onClose = () => onError(new Error('the request closed before its body ended'));
      source.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
    });
  }

  /** The same request as a web Request, made once, for handlers that need the whole API. */
  toWebRequest(): Request {
    if (this.#web) return this.#web;
    const headers = new Headers();
    const raw = this.#req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    this.#web = new Request(this.url, { method: this.method, headers, signal: this.signal, body: this.body, duplex: 'half' } as RequestInit);
    return this.#web;
  }
}

/** A web Request for any request: itself, or the one a NodeRequest makes. */
export function webRequest(req: HttpRequest): Request {
  if (req instanceof NodeRequest) return req.toWebRequest();
  if (req instanceof Request) return req;
  throw new TypeError('not a request this server made');
}

/**
 * A Node request body as a web stream that reads nothing until it is pulled, a chunk per pull:
 * bytes stay in the socket (TCP pushes back) until a handler asks for them. One never read is
 * discarded by Node when the answer goes out.
 */
export function lazyBody(source: Readable): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      pull: (controller) =>
        new Promise<void>((resolve) => {
          const stopWaiting = () => source.off('readable', step).off('end', step).off('error', fail);
          const fail = (err: Error) => {
            stopWaiting();
            controller.error(err);
            resolve();
          };
          // One chunk if there is one; at the end, close; otherwise wait for either. ('end' can
          // come without another 'readable' once the last chunk was taken.)
          function step() {
            stopWaiting();
            const chunk = source.read() as Buffer | null;
            if (chunk !== null) controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
            else if (source.readableEnded) controller.close();
            else return void source.on('readable', step).on('end', step).on('error', fail);
            resolve();
          }
          step();
        }),
      cancel: () => void source.resume(), // drain, don't keep
    },
    { highWaterMark: 0 },
  );
}
