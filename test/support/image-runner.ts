import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { NODE_IMAGE, OPT } from '../../infra/image.ts';
import { descendantsOf } from './process-table.ts';

// What Google would run, built on loopback without a container engine.
//
// uploadSet(): a directory's upload exactly as gcloud computes it (`gcloud meta
// list-files-for-upload`), copied to a fresh directory. installProduction(): the dependencies a
// build installs (`npm ci --omit=dev`), cached per lock file. buildImage(): the generated
// Dockerfile executed instruction by instruction into a directory standing for the image's
// filesystem: COPY from the uploaded context, WORKDIR, ENV, and the RUN lines that assemble the
// runtime (tini, Node and its libraries) run for real with one substitution — /opt/mcp-front
// lives under the directory. The apt line is checked against the machine's Debian package (the
// same tini the image installs). The final stage's ENTRYPOINT/CMD is what runImage() starts, as
// PID 1 of its own PID namespace (unshare), as Cloud Run does. `mounts` stand for `docker run -v`:
// those image paths are host directories, in RUN lines too, where the image's `node` user is
// whoever runs the rehearsal (runImage does not switch users).

export function uploadSet(source: string): string {
  const listed = execFileSync('gcloud', ['meta', 'list-files-for-upload', source], { encoding: 'utf8', env: { ...process.env, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' } })
    .split('\n')
    .filter(Boolean);
  const target = mkdtempSync(join(tmpdir(), 'mcp-front-upload-'));
  for (const file of listed) {
    mkdirSync(dirname(join(target, file)), { recursive: true });
    cpSync(join(source, file), join(target, file));
  }
  return target;
}

/** `npm ci --omit=dev` for this package.json + lock, once per machine; `dir/node_modules` links to it. */
export function installProduction(dir: string): void {
  const key = createHash('sha256').update(readFileSync(join(dir, 'package.json'))).update(readFileSync(join(dir, 'package-lock.json'))).digest('hex').slice(0, 16);
  const cache = join(tmpdir(), `mcp-front-prod-deps-${key}`);
  if (!existsSync(join(cache, 'node_modules'))) {
    const work = mkdtempSync(join(tmpdir(), 'mcp-front-prod-install-'));
    cpSync(join(dir, 'package.json'), join(work, 'package.json'));
    cpSync(join(dir, 'package-lock.json'), join(work, 'package-lock.json'));
    execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: work, stdio: 'pipe', env: { ...process.env, NODE_ENV: 'production' } });
    rmSync(cache, { recursive: true, force: true });
    renameSync(work, cache);
  }
  symlinkSync(join(cache, 'node_modules'), join(dir, 'node_modules'));
}

export interface BuiltImage {
  /** Stands for the image's root: /opt/mcp-front is at root + /opt/mcp-front. */
  readonly root: string;
  readonly entrypoint: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly workdir: string;
  /** The final stage's base: the Node image (mcp-front's own), or a stdio server's image. */
  readonly base: string;
  /** Maps a path inside the image to this machine. */
  map(path: string): string;
}

/** Dockerfile lines with continuations joined. */
function instructions(dockerfile: string): string[] {
  return dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

export function buildImage(
  context: string,
  dockerfile: string,
  options: { node: string; imageCommand?: { entrypoint: string[] | null; cmd: string[] | null }; mounts?: Readonly<Record<string, string>> },
): BuiltImage {
  const root = mkdtempSync(join(tmpdir(), 'mcp-front-image-'));
  const mounts = Object.entries(options.mounts ?? {});
  const map = (path: string) => {
    if (path.startsWith(OPT)) return root + path;
    if (path === '/usr/local/bin/node') return options.node;
    const mount = mounts.find(([at]) => path === at || path.startsWith(`${at}/`));
    return mount ? mount[1] + path.slice(mount[0].length) : path;
  };
  const user = `${process.getuid!()}:${process.getgid!()}`;
  const substitute = (text: string) =>
    mounts
      .reduce((out, [at, host]) => out.replace(new RegExp(`(?<=^|\\s)${at}(?=$|[\\s/])`, 'g'), host), text)
      .replaceAll(OPT, root + OPT)
      .replaceAll('/usr/local/bin/node', options.node)
      .replace(/\bnode:node\b/g, user);
  let workdir = '/';
  let env: Record<string, string> = {};
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  let base = '';
  for (const line of instructions(dockerfile)) {
    const [keyword, ...rest] = line.split(' ');
    const args = rest.join(' ');
    switch (keyword) {
      case 'FROM':
        base = rest[0]!;
        env = {};
        workdir = '/';
        break;
      case 'WORKDIR':
        workdir = args;
        mkdirSync(map(workdir), { recursive: true });
        break;
      case 'COPY': {
        if (rest[0]!.startsWith('--from=')) break; // the bridge stage's /opt/mcp-front is already in place
        const sources = rest.slice(0, -1);
        const dst = rest.at(-1)!;
        const to = map(posix.resolve(workdir, dst));
        if (sources[0] === 'image-command.json' && options.imageCommand) {
          // What the build's `docker inspect` step writes: the server image's entrypoint and cmd.
          mkdirSync(dirname(to), { recursive: true });
          execFileSync('sh', ['-c', 'cat > "$1"', 'sh', to], { input: JSON.stringify(options.imageCommand) });
          break;
        }
        for (const item of sources) cpSync(join(context, item), dst.endsWith('/') ? join(to, item) : to, { recursive: true });
        break;
      }
      case 'RUN':
        if (args.startsWith('apt-get')) {
          if (!existsSync('/usr/bin/tini-static')) throw new Error('the image installs Debian\'s tini: apt-get install tini');
        } else if (args.startsWith('npm ci')) {
          installProduction(map(workdir));
        } else {
          execFileSync('bash', ['-c', substitute(args)], { cwd: map(workdir), stdio: 'pipe' });
        }
        break;
      case 'ENV':
        for (const pair of rest) {
          const at = pair.indexOf('=');
          env[pair.slice(0, at)] = pair.slice(at + 1);
        }
        break;
      case 'ENTRYPOINT':
        entrypoint = JSON.parse(args) as string[];
        break;
      case 'CMD':
        cmd = JSON.parse(args) as string[];
        break;
      case 'USER':
      case 'EXPOSE': // documentation for `docker run -p`
      case 'VOLUME': // the test mounts what it needs (options.mounts)
        break;
      default:
        throw new Error(`the rehearsal does not know the Dockerfile instruction ${keyword}`);
    }
  }
  return { root, entrypoint: [...entrypoint, ...cmd], env, workdir, base, map };
}

export interface RunningImage {
  readonly process: ChildProcess;
  /** Host pid of the image's PID 1 (tini). */
  pid1(): number | undefined;
  output(): string;
  /** SIGTERM to PID 1, as Cloud Run stops an instance; resolves with the namespace's exit code. */
  stop(): Promise<number | null>;
}

export function isBaseNodeImage(image: BuiltImage): boolean {
  return image.base === NODE_IMAGE;
}

/** Starts the image's entrypoint as PID 1 of a new PID namespace, paths mapped, with `env` on top of the image's ENV. */
export function runImage(image: BuiltImage, env: Record<string, string>): RunningImage {
  const argv = image.entrypoint.map(image.map);
  const fullEnv = { ...Object.fromEntries(Object.entries(image.env).map(([k, v]) => [k, image.map(v)])), ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, image.map(v)])) };
  const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL', ...argv], { cwd: image.map(image.workdir), env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-20_000)));
  child.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pid1 = () => descendantsOf(child.pid!)[0]?.pid;
  return {
    process: child,
    pid1,
    output: () => output,
    async stop() {
      const pid = pid1();
      if (pid && child.exitCode === null) process.kill(pid, 'SIGTERM');
      return exited;
    },
  };
}

export function canUnshare(): boolean {
  try {
    execFileSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
