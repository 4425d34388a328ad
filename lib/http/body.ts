// Request bodies with a hard size cap: a lying or absent Content-Length can't make us buffer
// more than `limit` bytes.

/** The body as UTF-8 text, or undefined as soon as it passes `limit` bytes. */
export async function readBodyLimited(req: Request, limit: number): Promise<string | undefined> {
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
