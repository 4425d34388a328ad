import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { serveHandler, serveHttpHandler } from '../../lib/http/node-server.ts';
import { readBodyLimited } from '../../lib/http/body.ts';
import { silentLogger } from '../../lib/log.ts';

// Shutdown: close() lets requests in flight finish, and does not wait for connections that
// have nothing in flight (a client's spare socket that never sent a request included).

describe('serveHandler close()', () => {
  it('ends a connection that never sent a request at once, instead of holding shutdown for the drain period', async () => {
    const server = await serveHandler(async () => new Response('ok'), { host: '127.0.0.1', port: 0, log: silentLogger, drainMs: 60_000 });
    const spare = connect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => spare.once('connect', resolve));
    const ended = new Promise<void>((resolve) => spare.once('close', () => resolve()));
    await server.close(); // with the spare socket held open until drainMs, this would outlive the test timeout
    await ended;
    expect(spare.destroyed).toBe(true);
  }, 10_000);

  it('lets a request in flight finish before closing', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const server = await serveHandler(async () => {
      await gate;
      return new Response('finished');
    }, { host: '127.0.0.1', port: 0, log: silentLogger, drainMs: 60_000 });
    const answer = fetch(`http://127.0.0.1:${server.port}/`).then((res) => res.text());
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = server.close();
    release();
    expect(await answer).toBe('finished');
    await closing;
  }, 10_000);
});

// The client address for rate limits comes from X-Forwarded-For only as far as proxies we run
// behind wrote it: Google's load balancer appends "<client>, <lb>" to whatever the client sent.
describe('the client address behind trusted proxies', () => {
  const forged = '6.6.6.6, 7.7.7.7';
  it.each([
    ['no proxy trusted: the socket peer, whatever the header says', 0, `${forged}, 203.0.113.7`, '127.0.0.1'],
    ['one hop (Cloud Run): the entry the socket peer appended', 1, `${forged}, 203.0.113.7`, '203.0.113.7'],
    ["two hops (Google's load balancer): the client before the LB's own entry, not the forged first one", 2, `${forged}, 203.0.113.7, 130.211.0.1`, '203.0.113.7'],
    ['more hops trusted than entries: the leftmost one', 5, '203.0.113.7', '203.0.113.7'],
    ['no header: the socket peer', 2, undefined, '127.0.0.1'],
  ])('%s', async (_name, trustedProxies, header, expected) => {
    const server = await serveHandler(async (_req, ctx) => new Response(ctx.clientIp), { host: '127.0.0.1', port: 0, log: silentLogger, trustedProxies });
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/`, { headers: header ? { 'x-forwarded-for': header } : {} });
      expect(await res.text()).toBe(expected);
    } finally {
      await server.close();
    }
  });

  it('reads repeated X-Forwarded-For headers as one list, in order', async () => {
    const server = await serveHandler(async (_req, ctx) => new Response(ctx.clientIp), { host: '127.0.0.1', port: 0, log: silentLogger, trustedProxies: 2 });
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(server.port, '127.0.0.1', () => socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7, 130.211.0.1\r\nConnection: close\r\n\r\n`));
        let text = '';
        socket.setEncoding('utf8').on('data', (t: string) => (text += t)).once('end', () => resolve(text.split('\r\n\r\n')[1]!)).once('error', reject);
      });
      expect(answer).toBe('203.0.113.7');
    } finally {
      await server.close();
    }
  });
});

// The route services get the request as Node parsed it (node-request.ts), no web Request: it
// must read the same as one would, headers, body limit and abort signal alike.
describe('serveHttpHandler: requests as Node parsed them', () => {
  /** One raw HTTP/1.1 exchange, written part by part; the answer's status line and (de-chunked) body. */
  const raw = (port: number, request: string | Array<string | Buffer>) =>
    new Promise<{ status: string; body: string }>((resolve, reject) => {
      // Parts 20 ms apart, so each reaches the server as a chunk of its own.
      const socket = connect(port, '127.0.0.1', async () => {
        for (const part of [request].flat()) {
          socket.write(part);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      });
      let text = '';
      socket.setEncoding('utf8').on('data', (t: string) => (text += t)).once('error', reject).once('end', () => {
        const [head, ...rest] = text.split('\r\n\r\n');
        let body = rest.join('\r\n\r\n');
        if (/transfer-encoding: chunked/i.test(head!)) body = body.replace(/([0-9a-f]+)\r\n([\s\S]*?)\r\n/gi, (_m, _size: string, data: string) => data);
        resolve({ status: head!.split('\r\n')[0]!, body });
      });
    });

  it('reads a repeated header as all its fields joined, as a web Headers would: two Authorization headers are not one token', async () => {
    const server = await serveHttpHandler(async (req) => new Response(String(req.headers.get('authorization'))), { host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const answer = await raw(server.port, 'GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer first\r\nAuthorization: Bearer second\r\nConnection: close\r\n\r\n');
      expect(answer.body).toBe('Bearer first, Bearer second');
    } finally {
      await server.close();
    }
  });

  it('answers 400 to a Host that is not a host, before any handler runs', async () => {
    let ran = false;
    const server = await serveHttpHandler(async () => ((ran = true), new Response('ok')), { host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const answer = await raw(server.port, 'GET / HTTP/1.1\r\nHost: x/../admin\r\nConnection: close\r\n\r\n');
      expect(answer.status).toBe('HTTP/1.1 400 Bad Request');
      expect(JSON.parse(answer.body)).toEqual({ error: 'invalid_request', error_description: 'malformed request line or headers' });
      expect(ran).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('reads a chunked body whole, a character split between chunks included, and refuses one over the limit without a length', async () => {
    const server = await serveHttpHandler(async (req) => {
      const text = await readBodyLimited(req, 16);
      return text === undefined ? new Response('too large', { status: 413 }) : new Response(text);
    }, { host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const euro = Buffer.from('€'); // three bytes, sent as two chunks of the body
      const head = 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
      const split = await raw(server.port, [head, Buffer.concat([Buffer.from('2\r\n'), euro.subarray(0, 2), Buffer.from('\r\n')]), Buffer.concat([Buffer.from('1\r\n'), euro.subarray(2), Buffer.from('\r\n0\r\n\r\n')])]);
      expect(split).toEqual({ status: 'HTTP/1.1 200 OK', body: '€' });
      const big = await raw(server.port, [head, `10\r\n${'a'.repeat(16)}\r\n`, `10\r\n${'b'.repeat(16)}\r\n0\r\n\r\n`]);
      expect(big.status).toBe('HTTP/1.1 413 Payload Too Large');
      const declared = await raw(server.port, `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nConnection: close\r\n\r\n${'c'.repeat(17)}`);
      expect(declared.status).toBe('HTTP/1.1 413 Payload Too Large');
    } finally {
      await server.close();
    }
  });

  it('a body cut off halfway ends the read with an error, not a wait that never ends', async () => {
    let outcome!: (value: string) => void;
    const read = new Promise<string>((resolve) => (outcome = resolve));
    const server = await serveHttpHandler(async (req) => {
      await readBodyLimited(req, 1000).then(() => outcome('read'), (err: Error) => outcome(`failed: ${err.message}`));
      return new Response('done');
    }, { host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const socket = connect(server.port, '127.0.0.1', () => socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"half":'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.destroy();
      expect(await read).toMatch(/^failed: /);
    } finally {
      await server.close();
    }
  });

  it("aborts the request's signal when the client goes away, whether the handler took it before or after", async () => {
    const seen: Array<Promise<'aborted'>> = [];
    let arrived!: () => void;
    const both = new Promise<void>((resolve) => (arrived = resolve));
    let count = 0;
    const server = await serveHttpHandler(async (req) => {
      const early = req.url.endsWith('/early');
      const wait = (signal: AbortSignal) => new Promise<'aborted'>((resolve) => (signal.aborted ? resolve('aborted') : signal.addEventListener('abort', () => resolve('aborted'))));
      if (early) seen.push(wait(req.signal));
      if (++count === 2) arrived();
      await new Promise((resolve) => setTimeout(resolve, 300)); // the client is gone by now
      if (!early) seen.push(wait(req.signal));
      await Promise.all(seen);
      return new Response('late');
    }, { host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const sockets = ['/early', '/late'].map((path) => connect(server.port, '127.0.0.1', function (this: import('node:net').Socket) { this.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`); }));
      await both;
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(await Promise.all(seen)).toEqual(['aborted', 'aborted']);
    } finally {
      await server.close();
    }
  });
});
