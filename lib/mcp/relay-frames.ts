// The relay's frames (lib/mcp/relay.ts): what one store document carries, how a payload is cut
// to fit one, and how a receiver puts a stream's frames back in order and whole.

export type FrameKind = 'call' | 'abort' | 'head' | 'chunk' | 'end' | 'gone';

export interface Frame {
  [key: string]: unknown;
  to: string;
  from: string;
  stream: string;
  seq: number;
  kind: FrameKind;
  /** The call (JSON), or a piece of the answer's body. */
  text?: string;
  /** The text goes on in the next frame (a payload larger than one document). */
  more?: boolean;
  /** A whole answer in one frame (JSON): head, body and end at once. */
  done?: boolean;
  /** A call nobody waits an answer for (notifications, responses): the owner writes nothing back. */
  quiet?: boolean;
  status?: number;
  contentType?: string;
  sessionHeader?: string;
}

/**
 * Firestore holds at most 1 MiB per document: a frame carries at most this many UTF-16 code
 * units (≤ 3 bytes each in UTF-8), so one frame stays under 800 KB whatever the text.
 */
export const FRAME_CHARS = 256 * 1024;
/** An answer (or call) larger than this is not relayed: the holder answers 502. */
export const RELAY_MAX_CHARS = 64 * 1024 * 1024;
/** Frames out of order held back per stream before the stream is given up as broken. */
const MAX_GAP_FRAMES = 256;

/** One direction of one stream: frames put back in order, payloads put back together. */
export class FrameSequence {
  #next = 0;
  readonly #early = new Map<number, Frame>();
  #text = '';

  /** Frames ready in order (a long text joined), or 'broken' when a gap grew too long. */
  accept(frame: Frame): Frame[] | 'broken' {
    if (frame.seq < this.#next) return []; // delivered twice (a listener that reconnected)
    this.#early.set(frame.seq, frame);
    if (this.#early.size > MAX_GAP_FRAMES) return 'broken';
    const ready: Frame[] = [];
    for (let f = this.#early.get(this.#next); f; f = this.#early.get(this.#next)) {
      this.#early.delete(this.#next++);
      if (f.more) {
        this.#text += f.text ?? '';
        if (this.#text.length > RELAY_MAX_CHARS) return 'broken';
        continue;
      }
      ready.push(this.#text ? { ...f, text: this.#text + (f.text ?? '') } : f);
      this.#text = '';
    }
    return ready;
  }
}

/** Cuts text into frame-sized pieces, never between the two halves of a surrogate pair. */
export function cutText(text: string, max = FRAME_CHARS): string[] {
  const pieces: string[] = [];
  for (let at = 0; at < text.length; ) {
    let end = Math.min(text.length, at + max);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    pieces.push(text.slice(at, end));
    at = end;
  }
  return pieces.length ? pieces : [''];
}
