import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// An https server on loopback with a fresh self-signed certificate (made by the openssl CLI),
// standing in for a client's metadata document host. Tests trust its certificate explicitly.

export interface HttpsStandIn {
  readonly origin: string;
  readonly cert: string;
  close(): Promise<void>;
}

export async function startHttpsStandIn(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<HttpsStandIn> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-front-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  const server: Server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `https://127.0.0.1:${(server.address() as { port: number }).port}`,
    cert,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
