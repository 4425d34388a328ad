import { randomToken } from '../random.ts';
import { encodeEvent } from './sse.ts';

// A session's recent SSE events, kept so that a client whose stream broke off can resume it
// with Last-Event-ID and get exactly what it missed (Streamable HTTP, "Resumability and
// Redelivery"). Every event on a session's streams gets an id `<epoch>.<stream>.<seq>`:
//   - epoch: this log's, random. A session carried on by another instance (or after a restart)
//     has a new log; ids of the old one name events it never held.
//   - stream: 0 for the session's GET stream, 1, 2, … for POST answers that became streams.
//     The spec forbids replaying another stream's events on a resumed one.
//   - seq: counts the session's events, all streams together, so ids only grow.
// Events are kept encoded, as written: a replay re-sends the bytes.

/** The log keeps the last this many events of a session, all streams together… */
export const EVENT_LOG_MAX_EVENTS = 1000;
/**
 * …or fewer, up to this many bytes, whichever bound comes first. The newest event is kept
 * whatever its size: a large answer is what a broken connection most often cuts short. Only
 * streamed answers are logged (JSON answers are not), and an http route holds up to 1000
 * sessions in 512 MiB (infra/names.ts): this bounds the worst case to half of that, plus the
 * largest event of each.
 */
export const EVENT_LOG_MAX_BYTES = 256 * 1024;

/** The session's GET stream, for messages not tied to a request. */
export const GET_STREAM = 0;

/** What a Last-Event-ID names. `foreign`: an id of another log (another instance, or before a restart). */
export interface EventPosition {
  readonly stream: number;
  readonly seq: number;
  readonly foreign: boolean;
}

interface LoggedEvent {
  readonly stream: number;
  readonly seq: number;
  readonly bytes: Uint8Array;
}

const ID = /^([A-Za-z0-9_-]{1,64})\.(\d{1,15})\.(\d{1,15})$/;
const encoder = new TextEncoder();

export class EventLog {
  readonly #epoch = randomToken(6);
  #seq = 0;
  #streams = 0;
  readonly #events: LoggedEvent[] = [];
  #bytes = 0;
  /** The seq of the newest event dropped to keep within the bounds. */
  #droppedUpTo = 0;

  /** A new POST answer stream. */
  openStream(): number {
    return ++this.#streams;
  }

  /** Whether `stream` is one this log gave out. */
  issued(stream: number): boolean {
    return stream <= this.#streams;
  }

  /** The seq of the newest event (priming ones included). */
  get last(): number {
    return this.#seq;
  }

  /** Encodes a message as the stream's next event and keeps it; returns the bytes to write. */
  append(stream: number, data: string): Uint8Array {
    const seq = ++this.#seq;
    const bytes = encodeEvent(data, { event: 'message', id: `${this.#epoch}.${stream}.${seq}` });
    this.#events.push({ stream, seq, bytes });
    this.#bytes += bytes.length;
    while (this.#events.length > 1 && (this.#events.length > EVENT_LOG_MAX_EVENTS || this.#bytes > EVENT_LOG_MAX_BYTES)) {
      const dropped = this.#events.shift()!;
      this.#bytes -= dropped.bytes.length;
      this.#droppedUpTo = dropped.seq;
    }
    return bytes;
  }

  /**
   * A priming event (SEP-1699): an id and empty data, so the client holds a place in the stream
   * before any message comes, and the reconnection delay. Not kept: there is nothing to replay.
   */
  prime(stream: number, retryMs: number): Uint8Array {
    return encoder.encode(`id: ${this.#epoch}.${stream}.${++this.#seq}\nretry: ${retryMs}\ndata: \n\n`);
  }

  /** What a Last-Event-ID names; undefined when it is not an id of this format. */
  position(id: string): EventPosition | undefined {
    const match = ID.exec(id);
    if (!match) return undefined;
    return { stream: Number(match[2]), seq: Number(match[3]), foreign: match[1] !== this.#epoch };
  }

  /** The kept events of `stream` after `seq`, oldest first. */
  after(stream: number, seq: number): Uint8Array[] {
    const found: Uint8Array[] = [];
    for (const e of this.#events) if (e.stream === stream && e.seq > seq) found.push(e.bytes);
    return found;
  }

  /** Whether every event after `seq` is still kept: nothing a resume from there needs was dropped. */
  holdsAfter(seq: number): boolean {
    return this.#droppedUpTo <= seq;
  }
}
