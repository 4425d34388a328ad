import { NodeRequest } from './node-request.ts';
import type { HttpRequest } from './types.ts';

// Request bodies: read once, by the handler that needs them, after it has checked the caller,
// against that handler's own limit. A lying or absent Content-Length can't make us buffer more
// than `limit` bytes, and a caller who is refused before the read can't make us buffer anything.

/** The body as UTF-8 text, or undefined when it is (or declares itself) larger than `limit` bytes. */
export async function readBodyLimited(req: HttpRequest, limit: number): Promise<string | undefined> {
  if (req instanceof NodeRequest) return req.text(limit);
  if (Number(req.headers.get('content-length') ?? 0) > limit) return undefined;
  if (!req.body) return '';
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
