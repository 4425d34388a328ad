// A local stdio route whose command is `docker run …` (or `podman run …`). The container is
// the engine's child, not the CLI's: ending the session's process group (how every other stdio
// session ends) ends the CLI, and the container runs on. So each session's container is made
// removable: `--rm` (gone when it exits), `--init` (a PID 1 that acts on the SIGTERM the CLI
// forwards, which a server running as PID 1 ignores unless it handles it) and a name of its
// own, which `rm -f` uses when the session ends however it ends. Route images on Cloud Run
// never get here: the deploy plan refuses a docker command (infra/names.ts).

export interface SessionContainer {
  /** The container's name: `mcp-front-` and the start of the session id. */
  readonly name: string;
  /** The route's command with `--rm`, `--init` and `--name` right after `run`. */
  readonly command: readonly string[];
  /** Forces the container out, whatever state it is in: `<engine> rm -f <name>`. */
  readonly removeCommand: readonly string[];
}

interface ContainerRun {
  /** Index in the command of the first token after `run`. */
  readonly optionsStart: number;
  /** The `run` options the route gives, up to the image. */
  readonly options: readonly string[];
}

// `docker run` and `podman run` flags that take no value, so the scan for the image does not
// mistake the token after one of them for its value.
const NO_VALUE_FLAGS = new Set([
  '--rm', '--init', '--interactive', '--tty', '--detach', '--publish-all', '--quiet', '--privileged', '--read-only',
  '--oom-kill-disable', '--no-healthcheck', '--sig-proxy', '--disable-content-trust', '--help', '--use-api-socket',
  '--replace', '--rmi', '--no-hosts', '--env-host', '--http-proxy', '--read-only-tmpfs', '--tls-verify', '--passwd',
]);
const NO_VALUE_SHORT = new Set(['i', 't', 'd', 'P', 'q']);

const ENGINE = /(^|\/)(docker|podman)$/;

/** The `run` options of a `docker run`/`podman run` (or `… container run`) command; undefined for any other command. */
export function parseContainerRun(command: readonly string[]): ContainerRun | undefined {
  if (!command[0] || !ENGINE.test(command[0])) return undefined;
  const optionsStart = command[1] === 'run' ? 2 : command[1] === 'container' && command[2] === 'run' ? 3 : undefined;
  if (optionsStart === undefined) return undefined;
  let i = optionsStart;
  while (i < command.length) {
    const token = command[i]!;
    if (token === '--' || !token.startsWith('-') || token === '-') break;
    if (token.startsWith('--')) i += token.includes('=') || NO_VALUE_FLAGS.has(token) ? 1 : 2;
    else {
      // `-it`: switches only; `-eKEY=v`, `-p8080:80`: the value is attached; `-e KEY=v`: it is the next token.
      const letters = [...token.slice(1)];
      const attached = letters.length > 1 && !NO_VALUE_SHORT.has(letters[0]!);
      i += attached || letters.every((c) => NO_VALUE_SHORT.has(c)) ? 1 : 2;
    }
  }
  return { optionsStart, options: command.slice(optionsStart, Math.min(i, command.length)) };
}

const gives = (options: readonly string[], flag: string) => options.some((o) => o === flag || o.startsWith(`${flag}=`));

/** Whether a container run names its container, which one-container-per-session forbids. */
export function namesItsContainer(command: readonly string[]): boolean {
  const run = parseContainerRun(command);
  return run !== undefined && gives(run.options, '--name');
}

/** The session's own container, when the command is a container run; undefined otherwise. */
export function sessionContainer(command: readonly string[], sessionId: string): SessionContainer | undefined {
  const run = parseContainerRun(command);
  if (!run) return undefined;
  // Container names allow [a-zA-Z0-9][a-zA-Z0-9_.-]; session ids are base64url, whose `_` and
  // `-` are allowed too. 16 characters (96 bits) keep concurrent sessions apart.
  const name = `mcp-front-${sessionId.slice(0, 16)}`;
  const added = [...(gives(run.options, '--rm') ? [] : ['--rm']), ...(gives(run.options, '--init') ? [] : ['--init']), '--name', name];
  return {
    name,
    command: [...command.slice(0, run.optionsStart), ...added, ...command.slice(run.optionsStart)],
    removeCommand: [command[0]!, 'rm', '-f', name],
  };
}
