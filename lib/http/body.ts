import type { Readable } from 'node:stream';

// Request bodies: read once, by the handler that needs them, after it has checked the caller,
// against that handler's own limit. A lying or absent Content-Length can't make us buffer more
// than `limit` bytes, and a caller who is refused before the read can't make us buffer anything.

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

/** The body as UTF-8 text, or undefined when it is (or declares itself) larger than `limit` bytes. */
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
