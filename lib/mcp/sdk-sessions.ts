import { randomToken } from '../random.ts';
import { WebStandardStreamableHTTPServerTransport } from './sdk.ts';

// A Streamable HTTP endpoint in front of SDK servers, one server and transport per session:
// how the demo server and the test fixtures serve their `--http` form.

type TransportOptions = NonNullable<ConstructorParameters<typeof WebStandardStreamableHTTPServerTransport>[0]>;

/**
 * `(req) => Response` for one MCP endpoint. A request without a session id starts a session
 * (`connect` attaches a fresh server to its transport); a request naming an unknown session
 * gets the SDK's 404. `options` is read per new session (a port known only after listening).
 */
export function perSessionEndpoint(
  connect: (transport: WebStandardStreamableHTTPServerTransport) => Promise<void>,
  options: () => Omit<TransportOptions, 'sessionIdGenerator' | 'onsessioninitialized' | 'onsessionclosed'> = () => ({}),
): (req: Request) => Promise<Response> {
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
  return async (req) => {
    const id = req.headers.get('mcp-session-id');
    let transport = id ? sessions.get(id) : undefined;
    if (id && !transport) return Response.json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }, { status: 404 });
    if (!transport) {
      const created = new WebStandardStreamableHTTPServerTransport({
        ...options(),
        sessionIdGenerator: () => randomToken(16),
        onsessioninitialized: (sid) => void sessions.set(sid, created),
        onsessionclosed: (sid) => void sessions.delete(sid),
      });
      await connect(created);
      transport = created;
    }
    return transport.handleRequest(req);
  };
}
