import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort } from '../../cli/dev-backend.ts';
import { exitOf } from './stack-process.ts';

// The MCP Inspector (the pinned devDependency) started the way the README says,
// `npx mcp-inspector --transport http --server-url URL`: its web UI and the backend that
// makes its MCP and OAuth requests, on loopback ports of its own. Nothing it does at start
// needs the internet; its page links a Google Fonts stylesheet, which the fenced test
// browser refuses at once.

export interface InspectorProcess {
  /** The URL it prints to open, carrying its per-launch API token. */
  readonly url: string;
  output(): string;
  stop(): Promise<number | null>;
}

const packageJson = createRequire(import.meta.url).resolve('@modelcontextprotocol/inspector/package.json');
/** The launcher behind the package's `mcp-inspector` bin. */
const INSPECTOR_BIN = join(dirname(packageJson), 'clients/launcher/build/index.js');

export async function startInspector(serverUrl: string): Promise<InspectorProcess> {
  const home = mkdtempSync(join(tmpdir(), 'mcp-front-inspector-'));
  const child = spawn(process.execPath, [INSPECTOR_BIN, '--transport', 'http', '--server-url', serverUrl], {
    cwd: home,
    env: {
      PATH: process.env.PATH ?? '',
      // Its catalog and secrets live under HOME; a test must not read or write the user's.
      HOME: home,
      MCP_STORAGE_DIR: home,
      MCP_INSPECTOR_SECRET_STORE: 'memory',
      MCP_AUTO_OPEN_ENABLED: 'false',
      // Its defaults are fixed (6274, 6275, 6278): a second Inspector, or a developer's own,
      // would collide. The UI port must be fixed up front; the other two may be OS-assigned.
      CLIENT_PORT: String(await freePort()),
      MCP_SANDBOX_PORT: '0',
      MCP_APP_ORIGIN_PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (t: string) => (out += t));
  child.stderr!.setEncoding('utf8').on('data', (t: string) => (out += t));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the Inspector did not start within 30 s:\n${out}`));
    }, 30_000);
    const check = () => {
      const banner = /up and running at:\s+(http:\/\/\S+)/.exec(out);
      if (banner) {
        clearTimeout(timer);
        resolve(banner[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the Inspector exited with ${code} before it was up:\n${out}`));
    });
  });
  return {
    url,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      const code = await exitOf(child);
      rmSync(home, { recursive: true, force: true });
      return code;
    },
  };
}
