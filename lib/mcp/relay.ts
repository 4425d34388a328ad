import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { randomToken } from '../random.ts';
import { keepWatching } from '../store/keep-watching.ts';
import type { DocChange, Store } from '../store/store.ts';
import type { JsonRpcMessage } from './jsonrpc.ts';
import { KEEPALIVE } from './sse.ts';
import { cutText, FrameSequence, RELAY_MAX_CHARS, type Frame } from './relay-frames.ts';

// Carries a client's HTTP exchange with a session from the instance that got it (the holder)
// to the instance that runs the session's server (the owner), through the store: the holder
// writes the call as frames addressed to the owner, the owner answers it exactly as it answers
// a call of its own (a Response: JSON, or an event stream) and writes that Response back as
// frames addressed to the holder. Each instance has ONE live query, `mcpRelay where to == me`,
// whatever the number of sessions and streams (Firestore: one real-time listener).
//
// A frame: { to, from, stream, seq, kind, text? }. `stream` (random) names one exchange; `seq`
// orders its frames in each direction (store writes and listener deliveries may be reordered;
// the receiver buffers a gap). A payload larger than a document may hold is cut into several
// frames. Frames are deleted once read and expire anyway (a reader that died).

export type RelayedCall =
  | { readonly kind: 'post'; readonly session: string; readonly messages: JsonRpcMessage[]; readonly batch: boolean; readonly headers: Record<string, string> }
  | { readonly kind: 'get'; readonly session: string; readonly headers: Record<string, string> }
  // Legacy HTTP+SSE (2024-11-05): messages POSTed to /message, handed over at the owner, whose stream carries the answers.
  | { readonly kind: 'legacy'; readonly session: string; readonly messages: JsonRpcMessage[] };

/** What the owner's side makes of a call: the Response it would give a client of its own; undefined when it doesn't hold the session. */
export type RelayServe = (call: RelayedCall, signal: AbortSignal) => Promise<Response | undefined>;

/** The owner said it does not hold the session (any more): find the owner again. */
export class RelayGoneError extends Error {
  override readonly name = 'RelayGoneError';
  readonly code = 'RELAY_GONE';
}

/** Frames nobody read (their reader died) are deleted by the store's TTL after this. */
const FRAME_TTL_MS = 10 * 60_000;

export interface RelayOptions {
  readonly store: Store;
  readonly instanceId: string;
  readonly clock: Clock;
  readonly log: Logger;
  readonly serve: RelayServe;
  /** The holder writes an SSE comment this often on a relayed stream (the owner's keepalives are not relayed). */
  readonly keepaliveMs: number;
}

/** The owner's side of one stream. */
interface Served {
  readonly from: string;
  readonly frames: FrameSequence;
  readonly abort: AbortController;
  seq: number;
}

/** The holder's side of one stream. */
interface Held {
  readonly owner: string;
  readonly frames: FrameSequence;
  seq: number;
  onFrame(frame: Frame): void;
}

export interface Relay {
  /**
   * Hands a client's call to the session's owner; resolves with the owner's Response once its
   * head arrived (a body, JSON or event stream, follows as it comes). `signal` is the client's:
   * when it goes away the owner hears so. A call that needs no answer (only notifications or
   * responses) resolves with 202 once written. Rejects with RelayGoneError when the owner no
   * longer holds the session.
   */
  call(owner: string, call: RelayedCall, signal: AbortSignal, options?: { expectsAnswer?: boolean }): Promise<Response>;
  /** Streams relayed now, both sides (tests: none outlives its exchange). */
  openStreams(): number;
  close(): void;
}

export function startRelay(options: RelayOptions): Relay {
  const { store, instanceId: me, clock, log } = options;
  const served = new Map<string, Served>();
  const held = new Map<string, Held>();

  const write = (frame: Omit<Frame, 'from'>) =>
    store.put('mcpRelay', `${frame.stream}-${frame.kind === 'call' || frame.kind === 'abort' ? 'i' : 'o'}${frame.seq}`, { ...frame, from: me }, { expiresAt: clock.now() + FRAME_TTL_MS });

  /** Writes a payload as one frame or several (`more` on all but the last). */
  const writeText = async (base: Omit<Frame, 'from' | 'seq' | 'text'>, text: string, next: () => number) => {
    const pieces = cutText(text);
    await Promise.all(pieces.map((piece, i) => write({ ...base, seq: next(), text: piece, ...(i < pieces.length - 1 ? { more: true } : {}) })));
  };

  // ---- the owner's side: run a call, write its Response back ----
  const serveCall = async (stream: Served, streamId: string, frame: Frame) => {
    const next = () => stream.seq++;
    const reply = (f: Omit<Frame, 'from' | 'to' | 'stream' | 'seq'>) => write({ ...f, to: stream.from, stream: streamId, seq: next() });
    try {
      const call = JSON.parse(frame.text ?? '') as RelayedCall;
      const response = await options.serve(call, stream.abort.signal);
      if (!response) return void (await reply({ kind: 'gone' }));
      if (frame.quiet) return void (await response.body?.cancel());
      const head = { kind: 'head' as const, status: response.status, contentType: response.headers.get('content-type') ?? '', sessionHeader: response.headers.get('mcp-session-id') ?? '' };
      // A JSON answer is whole before it is sent: one frame carries it (two writes fewer than head, chunk, end).
      if (!head.contentType.includes('text/event-stream')) return void (await writeText({ ...head, to: stream.from, stream: streamId, done: true }, await response.text(), next));
      await reply(head);
      if (response.body) await pipeBody(response.body, stream, (text) => writeText({ kind: 'chunk', to: stream.from, stream: streamId }, text, next));
      await reply({ kind: 'end' });
    } catch (err) {
      log.warn('relayed call failed at its owner', { error: String(err) });
      await reply({ kind: 'end' }).catch(() => undefined);
    } finally {
      served.delete(streamId);
    }
  };

  /** Reads a body and writes it on; what arrives while a write is in flight goes in the next one. */
  const pipeBody = async (body: ReadableStream<Uint8Array>, stream: Served, send: (text: string) => Promise<void>) => {
    const decoder = new TextDecoder();
    const reader = body.getReader();
    let pending = '';
    let writing: Promise<void> = Promise.resolve();
    let inFlight = false;
    let failed: unknown;
    const flush = () => {
      if (inFlight || !pending || failed !== undefined) return;
      const text = pending;
      pending = '';
      inFlight = true;
      writing = send(text)
        .catch((err: unknown) => {
          // The store refused a piece: the holder's stream can't be whole any more; stop reading.
          failed ??= err;
          void reader.cancel().catch(() => undefined);
        })
        .finally(() => {
          inFlight = false;
          if (failed === undefined) flush();
        });
    };
    stream.abort.signal.addEventListener('abort', () => void reader.cancel().catch(() => undefined), { once: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // The holder keeps its client's stream alive itself: a keepalive is not worth a write.
      if (value.length === KEEPALIVE.length && Buffer.from(value).equals(KEEPALIVE)) continue;
      pending += decoder.decode(value, { stream: true });
      flush();
    }
    pending += decoder.decode();
    for (flush(); inFlight || (pending && failed === undefined); flush()) await writing;
    if (failed !== undefined) throw failed;
  };

  // ---- the holder's side ----
  const call: Relay['call'] = async (owner, relayed, signal, callOptions = {}) => {
    const expectsAnswer = callOptions.expectsAnswer ?? true;
    const streamId = randomToken(12);
    const text = JSON.stringify(relayed);
    if (text.length > RELAY_MAX_CHARS) throw new Error(`the call is larger than the relay carries (${RELAY_MAX_CHARS} characters)`);
    let seq = 0;
    if (!expectsAnswer) {
      await writeText({ kind: 'call', to: owner, stream: streamId, quiet: true }, text, () => seq++);
      return new Response(null, { status: 202 });
    }
    return new Promise<Response>((resolve, reject) => {
      const encoder = new TextEncoder();
      let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
      let json: string[] | undefined;
      let head: Frame | undefined;
      let headers: Record<string, string> = {};
      let keepalive: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearInterval(keepalive);
        held.delete(streamId);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        if (finished) return;
        finish();
        void write({ kind: 'abort', to: owner, stream: streamId, seq: state.seq++ }).catch(() => undefined);
        try {
          controller?.close();
        } catch {
          // the client already went away
        }
        reject(new DOMException('the client went away', 'AbortError'));
      };
      const state: Held = {
        owner,
        frames: new FrameSequence(),
        seq,
        onFrame: (frame) => {
          if (frame.kind === 'gone') return void (finish(), reject(new RelayGoneError(`instance ${owner} no longer holds session ${relayed.session}`)));
          if (frame.kind === 'head') {
            head = frame;
            headers = { 'content-type': frame.contentType || 'application/json', ...(frame.sessionHeader ? { 'mcp-session-id': frame.sessionHeader } : {}) };
            if (frame.done) {
              finish();
              return resolve(new Response(frame.text || null, { status: frame.status ?? 200, headers }));
            }
            if (!frame.contentType?.includes('text/event-stream')) return void (json = []);
            const body = new ReadableStream<Uint8Array>({
              start: (c) => {
                controller = c;
              },
              cancel: () => onAbort(),
            });
            keepalive = setInterval(() => controller?.enqueue(KEEPALIVE), options.keepaliveMs).unref();
            return resolve(new Response(body, { status: frame.status ?? 200, headers: { ...headers, 'cache-control': 'no-cache' } }));
          }
          if (frame.kind === 'chunk') {
            if (json) json.push(frame.text ?? '');
            else controller?.enqueue(encoder.encode(frame.text ?? ''));
            return;
          }
          if (frame.kind === 'end') {
            finish();
            if (json) return resolve(new Response(json.join('') || null, { status: head!.status ?? 200, headers }));
            if (!head) return reject(new Error(`instance ${owner} ended the relayed call without an answer`));
            try {
              controller?.close();
            } catch {
              // the client already went away
            }
          }
        },
      };
      held.set(streamId, state);
      signal.addEventListener('abort', onAbort, { once: true });
      writeText({ kind: 'call', to: owner, stream: streamId }, text, () => state.seq++).catch((err: unknown) => {
        finish();
        reject(err);
      });
    });
  };

  // ---- the one listener ----
  const onChanges = (changes: ReadonlyArray<DocChange<Frame>>) => {
    const frames = changes.flatMap((c) => (c.doc ? [{ id: c.id, frame: c.doc }] : []));
    frames.sort((a, b) => a.frame.seq - b.frame.seq);
    for (const { id, frame } of frames) {
      void store.delete('mcpRelay', id).catch((err: unknown) => log.warn('could not delete a relay frame', { error: String(err) }));
      if (frame.kind === 'call' || frame.kind === 'abort') {
        let stream = served.get(frame.stream);
        if (!stream) {
          if (frame.kind === 'abort') continue;
          stream = { from: frame.from, frames: new FrameSequence(), abort: new AbortController(), seq: 0 };
          served.set(frame.stream, stream);
        }
        const ready = stream.frames.accept(frame);
        if (ready === 'broken') {
          stream.abort.abort();
          served.delete(frame.stream);
          continue;
        }
        for (const f of ready) {
          if (f.kind === 'abort') stream.abort.abort();
          else void serveCall(stream, f.stream, f);
        }
        continue;
      }
      const stream = held.get(frame.stream);
      if (!stream) continue; // its client went away
      const ready = stream.frames.accept(frame);
      if (ready === 'broken') {
        stream.onFrame({ ...frame, kind: 'end' });
        continue;
      }
      for (const f of ready) stream.onFrame(f);
    }
  };
  const stop = keepWatching<Frame>(store, { collection: 'mcpRelay', field: 'to', value: me, what: 'relay' }, onChanges, log);

  return {
    call,
    openStreams: () => served.size + held.size,
    close() {
      stop();
      for (const stream of served.values()) stream.abort.abort();
      served.clear();
      held.clear();
    },
  };
}
