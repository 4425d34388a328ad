import { expect, it } from 'vitest';
import fc from 'fast-check';
import { cutText, FRAME_CHARS, FrameSequence, type Frame } from '../../lib/mcp/relay-frames.ts';

// The relay's guarantees that hold whatever the store does with its frames: a stream's frames
// come out in order however they were delivered (reordered, some twice), a payload cut to fit
// documents comes out whole, and no piece splits a character.

const frame = (seq: number, text: string, more = false): Frame => ({ to: 'o', from: 'h', stream: 's', seq, kind: 'chunk', text, ...(more ? { more: true } : {}) });

it('puts frames delivered in any order, some twice, back in order, each once', () => {
  fc.assert(
    fc.property(fc.array(fc.string(), { minLength: 1, maxLength: 30 }), fc.infiniteStream(fc.nat()), (texts, randoms) => {
      const frames = texts.map((t, i) => frame(i, t));
      const delivered = [...frames, ...frames.filter((_, i) => i % 3 === 0)];
      const it = randoms[Symbol.iterator]();
      delivered.sort(() => (it.next().value as number) % 3 - 1);
      const sequence = new FrameSequence();
      const out: string[] = [];
      for (const f of delivered) {
        const ready = sequence.accept(f);
        if (ready === 'broken') throw new Error('broken');
        out.push(...ready.map((r) => r.text!));
      }
      expect(out).toEqual(texts);
    }),
  );
});

it('cuts a payload into document-sized pieces that join back whole, never between a surrogate pair', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.integer({ min: 2, max: 17 }), (text, max) => {
      const pieces = cutText(text, max);
      expect(pieces.join('')).toBe(text);
      for (const piece of pieces) {
        expect(piece.length).toBeLessThanOrEqual(max);
        expect(/[\uD800-\uDBFF]$/.test(piece) && piece !== pieces.at(-1)).toBe(false);
      }
      const sequence = new FrameSequence();
      const ready = pieces.flatMap((p, i) => sequence.accept(frame(i, p, i < pieces.length - 1)) as Frame[]);
      expect(ready.map((r) => r.text)).toEqual([text]);
    }),
  );
  // A 10 MB answer: 40 frames, each within one Firestore document whatever its characters.
  const big = '✓'.repeat(10 * 1024 * 1024);
  const pieces = cutText(big);
  expect(pieces).toHaveLength(Math.ceil(big.length / FRAME_CHARS));
  expect(Math.max(...pieces.map((p) => Buffer.byteLength(p)))).toBeLessThan(1_000_000);
});
