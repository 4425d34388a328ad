import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request, type RequestOptions } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

// Fetching a URL a stranger gave us (a client's metadata document) without letting them aim
// the gateway at anything inside: https only, no redirects, and every address the name
// resolves to must be public unicast — loopback, private, link-local (the metadata server at
// 169.254.169.254 included), CGNAT, multicast, IPv4-mapped and NAT64 forms are refused. The
// check runs in the socket's own DNS lookup, so the address connected to is the one checked
// (no second resolution to rebind). Size and time are capped. Also the way to a service's own
// OAuth server (routes[].user_oauth): its discovery document and token endpoint.

export class SafeFetchError extends Error {
  override readonly name = 'SafeFetchError';
}

export interface SafeFetchOptions {
  readonly maxBytes: number;
  readonly timeoutMs: number;
  /** Tests only: addresses allowed besides public unicast (a loopback stand-in). */
  readonly allowAddress?: (address: string) => boolean;
  /** Tests only: a CA to trust besides the system's (the stand-in's self-signed certificate). */
  readonly ca?: string;
  /** A POST (an OAuth token request): its form body and headers. GET when absent. */
  readonly post?: { readonly body: string; readonly headers: Readonly<Record<string, string>> };
  /** Resolve with any final status (an OAuth error is a JSON 400), not only 200. Redirects are still refused. */
  readonly anyStatus?: boolean;
}

export interface SafeResponse {
  readonly status: number;
  readonly body: string;
  readonly contentType: string;
  /** Cache-Control max-age in seconds, when the server gave one. */
  readonly maxAge?: number;
}

/** Why this address may not be fetched from; undefined when it may. */
export function addressProblem(address: string, allow?: (address: string) => boolean): string | undefined {
  if (!ipaddr.isValid(address)) return `${address} is not an IP address`;
  if (allow?.(address)) return undefined;
  const range = ipaddr.process(address).range();
  return range === 'unicast' ? undefined : `${address} is a ${range} address`;
}

function checkedLookup(allow?: (address: string) => boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const refused = addresses.map((a) => addressProblem(a.address, allow)).find(Boolean);
      // Any non-public answer refuses the name: a mixed answer is how rebinding starts.
      if (refused || addresses.length === 0) return callback(new SafeFetchError(`${hostname} resolves to a non-public address (${refused ?? 'none'})`), '', 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

export function safeFetch(target: string, options: SafeFetchOptions): Promise<SafeResponse> {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return Promise.reject(new SafeFetchError('not a URL'));
  }
  if (url.protocol !== 'https:') return Promise.reject(new SafeFetchError('only https URLs are fetched'));
  if (url.username || url.password) return Promise.reject(new SafeFetchError('the URL carries credentials'));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // An address literal skips DNS (and so the lookup hook): check it here.
  if (isIP(host)) {
    const problem = addressProblem(host, options.allowAddress);
    if (problem) return Promise.reject(new SafeFetchError(problem));
  }
  return new Promise<SafeResponse>((resolve, reject) => {
    const init: RequestOptions = {
      method: options.post ? 'POST' : 'GET',
      headers: { accept: 'application/json', 'user-agent': 'mcp-front', ...(options.post ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(options.post.body)), ...options.post.headers } : {}) },
      lookup: checkedLookup(options.allowAddress),
      timeout: options.timeoutMs,
      agent: false,
      ...(options.ca ? { ca: options.ca } : {}),
    };
    const req = request(url, init, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) return fail(new SafeFetchError(`answered ${status} (redirects are not followed)`));
      if (status !== 200 && !options.anyStatus) return fail(new SafeFetchError(`answered HTTP ${status}`));
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > options.maxBytes) return fail(new SafeFetchError(`is larger than ${options.maxBytes} bytes`));
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) return fail(new SafeFetchError(`is larger than ${options.maxBytes} bytes`));
        chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(deadline);
        const maxAge = /(?:^|,)\s*max-age=(\d+)/i.exec(String(res.headers['cache-control'] ?? ''))?.[1];
        resolve({ status, body: Buffer.concat(chunks).toString('utf8'), contentType: String(res.headers['content-type'] ?? ''), ...(maxAge ? { maxAge: Number(maxAge) } : {}) });
      });
      res.on('error', fail);
    });
    // The socket timeout covers idle time; this one covers the whole exchange (a slow drip).
    const deadline = setTimeout(() => fail(new SafeFetchError(`took longer than ${options.timeoutMs} ms`)), options.timeoutMs);
    function fail(err: Error) {
      clearTimeout(deadline);
      req.destroy();
      reject(err instanceof SafeFetchError ? err : new SafeFetchError((err as Error).message));
    }
    req.on('timeout', () => fail(new SafeFetchError(`took longer than ${options.timeoutMs} ms`)));
    req.on('error', fail);
    req.end(options.post?.body);
  });
}
