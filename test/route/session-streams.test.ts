import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/log.ts';
import { McpSession } from '../../lib/mcp/session.ts';

// The bookkeeping of a session's GET stream, which decides whether an idle session may be
// reaped: a stream whose client left must never keep a session busy. And what its events
// look like: ids on the GET stream (it can be resumed), none on the legacy one.

function session(legacy = false) {
  const ended: string[] = [];
  const s = new McpSession({ id: 's1', userSub: 'u', clientId: 'c', log: silentLogger, requestTimeoutMs: 5_000, keepaliveMs: 60_000, streamMaxMs: 3_600_000, legacy, onEnd: () => ended.push('ended') });
  s.backend = { send: async () => undefined, close: async () => undefined };
  return { s, ended };
}

describe('session streams', () => {
  it('a GET stream whose client left before it was opened does not keep the session busy', async () => {
    const { s } = session();
    const gone = new AbortController();
    gone.abort();
    s.openStream(gone.signal, {});
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(s.busy).toBe(false);
  });

  it('a legacy SSE stream whose client left before it was opened ends the session', async () => {
    const { s, ended } = session(true);
    const gone = new AbortController();
    gone.abort();
    s.openLegacyStream(gone.signal, '/demo/message?session=s1', {});
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(ended).toEqual(['ended']);
  });

  it('gives every GET-stream event an id, and the legacy stream (which cannot resume) none', async () => {
    const note = { jsonrpc: '2.0' as const, method: 'notifications/message', params: { level: 'info', data: 'hello' } };
    const firstChunks = async (res: Response, count: number) => {
      const reader = res.body!.getReader();
      let text = '';
      for (let i = 0; i < count; i++) text += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
      return text;
    };
    const { s } = session();
    const get = s.openStream(new AbortController().signal, {}, { protocolVersion: '2025-11-25' });
    s.receive(note);
    // A priming event (an id, empty data), then the message with the next id.
    expect(await firstChunks(get, 2)).toMatch(/^id: (\S+)\.0\.1\nretry: 1000\ndata: \n\nevent: message\nid: \1\.0\.2\ndata: \{/);
    const { s: legacy } = session(true);
    const stream = legacy.openLegacyStream(new AbortController().signal, '/demo/message?session=s1', {});
    legacy.receive(note);
    expect(await firstChunks(stream, 2)).toBe(`event: endpoint\ndata: /demo/message?session=s1\n\nevent: message\ndata: ${JSON.stringify(note)}\n\n`);
  });

  it("a replaced stream's late abort does not close the stream that replaced it", async () => {
    const { s } = session();
    const first = new AbortController();
    s.openStream(first.signal, {});
    s.openStream(new AbortController().signal, {});
    first.abort();
    expect(s.busy).toBe(true);
  });
});
