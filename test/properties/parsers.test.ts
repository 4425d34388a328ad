import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineFramer, lineOf, parseMessages, textOf } from '../../lib/mcp/jsonrpc.ts';
import { readEvents } from '../../lib/mcp/sse.ts';
import { redirectUriProblem } from '../../lib/oauth/clients.ts';
import { parseConfig } from '../../lib/config/load.ts';
import { ConfigError } from '../../lib/config/load.ts';
import { checkSafeUrl } from '../../cli/connect/discovery.ts';

// Property-based tests for the parts that read untrusted input: whatever the input and however
// it is cut, they either produce exactly the right thing or refuse cleanly, never throw
// something unexpected.

/** Cuts a buffer at arbitrary points. */
function chunks(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let start = 0;
  for (const p of points) {
    out.push(data.subarray(start, p));
    start = p;
  }
  out.push(data.subarray(start));
  return out;
}

describe('stdio JSON-RPC framing', () => {
  it('yields exactly the lines written, however the bytes are chunked (multi-byte UTF-8 split included)', () => {
    const line = fc.string({ unit: 'grapheme', maxLength: 200 }).map((s) => s.replace(/[\r\n]/g, ' ')).filter((s) => s.length > 0);
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), fc.boolean(), (lines, cuts, crlf) => {
        const data = Buffer.from(lines.map((l) => `${l}${crlf ? '\r\n' : '\n'}`).join(''));
        const framer = new LineFramer();
        const got = chunks(data, cuts).flatMap((c) => framer.push(c));
        expect(got).toEqual(lines);
        expect(framer.buffered).toBe(0);
      }),
    );
  });

  it('has no line-length limit: a 10 MB line arrives whole', () => {
    const big = 'x'.repeat(10 * 1024 * 1024);
    const framer = new LineFramer();
    const data = Buffer.from(`${big}\n`);
    const got = chunks(data, [1, 65536, 5_000_000]).flatMap((c) => framer.push(c));
    expect(got.map((l) => l.length)).toEqual([big.length]);
  });

  it('reads any bytes, invalid UTF-8 included, as the whole input would decode line by line, however chunked', () => {
    // Bytes biased to line ends and to pieces of multi-byte characters, cut or not.
    const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0a, 0x0d, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f));
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 500 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
        const data = Buffer.from(bytes);
        const pieces: Buffer[] = [];
        for (let start = 0, at = data.indexOf(0x0a); at !== -1; start = at + 1, at = data.indexOf(0x0a, start)) pieces.push(data.subarray(start, at));
        const expected = pieces.map((p) => (p[p.length - 1] === 0x0d ? p.subarray(0, -1) : p)).filter((p) => p.length > 0).map((p) => p.toString('utf8'));
        const framer = new LineFramer();
        const got = chunks(data, cuts).flatMap((c) => framer.push(c));
        expect(got).toEqual(expected);
        expect(framer.buffered).toBe(data.length - (data.lastIndexOf(0x0a) + 1));
      }),
    );
  });
});

/** The data of each event readEvents yields from a stream delivered in exactly these chunks. */
async function eventData(chunks: string[]): Promise<string[]> {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(new TextEncoder().encode(c));
      controller.close();
    },
  });
  const got: string[] = [];
  for await (const e of readEvents(stream)) got.push(e.data);
  return got;
}

describe('forwarding a message as the text it came in', () => {
  const message = fc.record({ jsonrpc: fc.constant('2.0' as const), id: fc.oneof(fc.integer(), fc.string({ maxLength: 20 })), method: fc.string({ minLength: 1, maxLength: 30 }), params: fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 })) });
  const indent = fc.constantFrom(undefined, 0, 2, '\t', '\r\n ');

  it('re-sends a single message\'s text as it came, and a line of the stdio transport is always one line of the same JSON', () => {
    fc.assert(
      fc.property(message, indent, (m, space) => {
        const text = typeof space === 'string' && space.includes('\r') ? JSON.stringify(m, null, 1).replaceAll('\n', '\r\n') : JSON.stringify(m, null, space);
        const [parsed] = parseMessages(text).messages;
        expect(textOf(parsed!)).toBe(text);
        const line = lineOf(parsed!);
        expect(line).not.toMatch(/[\r\n]/);
        expect(JSON.parse(line)).toEqual(JSON.parse(text));
      }),
    );
  });

  it('keeps no text for a batch, nor when told not to: those are serialised from what was parsed', () => {
    const text = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}';
    expect(textOf(parseMessages(text, false).messages[0]!)).toBe('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b"}}');
    const batch = parseMessages(`[${text}, {"jsonrpc":"2.0","method":"x"}]`);
    expect(batch.batch).toBe(true);
    expect(batch.messages.map((m) => textOf(m!))).toEqual(['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b"}}', '{"jsonrpc":"2.0","method":"x"}']);
  });
});

describe('SSE parsing', () => {
  it('yields every event\'s data (multi-line included) whatever the line endings (LF, CR, CR LF) and however the stream is chunked', async () => {
    const data = fc.array(fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, '')), { minLength: 1, maxLength: 3 });
    const ending = fc.constantFrom('\n', '\r', '\r\n');
    // Each event: a comment, its type, its data lines, a blank line; every line with its own ending.
    const event = data.chain((lines) => fc.tuple(fc.constant(lines), fc.array(ending, { minLength: lines.length + 3, maxLength: lines.length + 3 })));
    await fc.assert(
      fc.asyncProperty(fc.array(event, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 40 }), async (events, cuts) => {
        let text = '';
        for (const [lines, endings] of events) {
          [': comment', 'event: message', ...lines.map((l) => `data: ${l}`), ''].forEach((line, i) => {
            // A CR then an empty line ended by LF would be one CR LF, not a blank line: the stream
            // a server means by it has the blank line end in CR LF.
            const end = line === '' && text.endsWith('\r') && endings[i] === '\n' ? '\r\n' : endings[i]!;
            text += line + end;
          });
        }
        const parts = chunks(Buffer.from(text), cuts);
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            for (const p of parts) controller.enqueue(new Uint8Array(p));
            controller.close();
          },
        });
        const got: string[] = [];
        for await (const e of readEvents(stream)) got.push(e.data);
        expect(got).toEqual(events.map(([lines]) => lines.join('\n')));
      }),
      { numRuns: 300 },
    );
  });

  it('reads a CR, then an LF alone in its chunk, then an LF, as one line ending and a blank line', async () => {
    // Found by the property above (seed 340650258): the lone LF settled the CR, but the parser
    // still thought the next chunk's LF could be the CR's, and swallowed the blank line.
    expect(await eventData(['data: \r', '\n', '\ndata: two\r\n\r\n'])).toEqual(['', 'two']);
  });

  it('reads a CR LF split across two chunks as one line ending, not as the blank line that ends an event', async () => {
    expect(await eventData(['data: one\r', '\ndata: two\r\n\r\n'])).toEqual(['one\ntwo']);
  });
});

describe('redirect URI and outbound URL checks', () => {
  it('never accept a URI with a fragment, credentials, or a dangerous scheme', () => {
    fc.assert(
      fc.property(fc.webUrl({ withFragments: true, withQueryParameters: true }), fc.constantFrom('javascript:', 'data:', 'file:', 'vbscript:', 'http://evil.example'), (url, bad) => {
        if (url.includes('#')) expect(redirectUriProblem(url)).toBeDefined();
        expect(redirectUriProblem(`${bad}/x`)).toBeDefined();
      }),
    );
  });

  it('accept any https URL without fragment or credentials, and any loopback http URL', () => {
    fc.assert(
      fc.property(fc.webUrl({ validSchemes: ['https'], withQueryParameters: true }), fc.integer({ min: 1, max: 65535 }), (url, port) => {
        const u = new URL(url);
        if (!u.username && !u.password && !url.includes('#') && url.length <= 2048 && !/[\s<>"{}|\\^`]/.test(url)) expect(redirectUriProblem(url)).toBeUndefined();
        expect(redirectUriProblem(`http://127.0.0.1:${port}/callback`)).toBeUndefined();
      }),
    );
  });

  it('checkSafeUrl refuses anything that is not https or loopback http, with no exception but ConnectError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (s) => {
        try {
          const url = checkSafeUrl(s, 'x');
          expect(url.protocol === 'https:' || url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]').toBe(true);
        } catch (err) {
          expect((err as Error).name).toBe('ConnectError');
        }
      }),
    );
  });
});

describe('config loading', () => {
  it('any YAML either loads or fails with a ConfigError, never anything else', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        try {
          parseConfig(text, {}, 'fuzz.yaml');
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('structured garbage in every section fails with a ConfigError naming a path', () => {
    const value = fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }));
    fc.assert(
      fc.property(fc.constantFrom('oauth', 'routes', 'server', 'deploy'), fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }).filter((k) => /^[a-z_]+$/.test(k)), value, { maxKeys: 4 }), (section, junk) => {
        const text = JSON.stringify({ oauth: { issuer: 'http://127.0.0.1:8080', provider: 'dev' }, [section]: junk });
        try {
          parseConfig(text, {}, 'fuzz.yaml');
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          expect((err as Error).message).toContain('fuzz.yaml');
        }
      }),
      { numRuns: 300 },
    );
  });
});
