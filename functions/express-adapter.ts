import type { Request as ExpressRequest, Response as ExpressResponse } from 'express';
import { requestUrl } from '../lib/http/types.ts';

// The Functions Framework hands us Express objects; our handlers speak web-standard
// Request/Response. The framework has already read the body (rawBody), so it is passed on as is.

export function toWebRequest(req: ExpressRequest): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  const host = req.headers['x-forwarded-host'] ?? req.headers.host;
  // Throws for a Host that is not a host; the Functions entry answers that with a 400.
  const url = requestUrl(Array.isArray(host) ? host[0] : host, req.originalUrl ?? req.url, 'https');
  const raw = (req as ExpressRequest & { rawBody?: Buffer }).rawBody;
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && raw !== undefined;
  return new Request(url, { method: req.method, headers, body: hasBody ? new Uint8Array(raw) : undefined });
}

export async function writeWebResponse(response: Response, res: ExpressResponse): Promise<void> {
  res.status(response.status);
  response.headers.forEach((value, name) => {
    if (name === 'set-cookie') return;
    res.setHeader(name, value);
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) res.setHeader('set-cookie', cookies);
  res.end(Buffer.from(await response.arrayBuffer()));
}
