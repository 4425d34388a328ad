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
