// Server-Sent Events: writing MCP messages as events, and reading a backend's event stream
// (multi-line data, comments, ids, any chunking) for the HTTP proxy and `connect`.

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id?: string;
}

const encoder = new TextEncoder();

export function encodeEvent(data: string, options: { event?: string; id?: string } = {}): Uint8Array {
  const lines = data.split('\n').map((line) => `data: ${line}`);
  return encoder.encode(`${options.event ? `event: ${options.event}\n` : ''}${options.id ? `id: ${options.id}\n` : ''}${lines.join('\n')}\n\n`);
}

export const KEEPALIVE = encoder.encode(': keepalive\n\n');

/** Reads events from a byte stream as they complete; `onRetry` hears each `retry` field (a reconnection delay in ms). */
export async function* readEvents(stream: ReadableStream<Uint8Array>, onRetry?: (ms: number) => void): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  // The last line ended in a CR at the end of a chunk: an LF opening the next one is that same
  // line ending (a CR LF cut in two), not an empty line that would end the event early.
  let afterCr = false;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (afterCr && buffer) {
        if (buffer.startsWith('\n')) buffer = buffer.slice(1);
        afterCr = false; // settled by this chunk's first character, whatever is left after it
      }
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
        const line = buffer.slice(0, newline);
        const crlf = buffer.startsWith('\r\n', newline);
        afterCr = !crlf && buffer[newline] === '\r' && newline === buffer.length - 1;
        buffer = buffer.slice(newline + (crlf ? 2 : 1));
        if (line === '') {
          if (data.length) yield { event: event || 'message', data: data.join('\n'), id };
          data = [];
          event = '';
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id' && !value.includes('\0')) id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) onRetry?.(Number(value));
      }
      if (done) break;
    }
  } finally {
    reader.releaseLock();
  }
}
