import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { serveHandler } from '../../lib/http/node-server.ts';
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
