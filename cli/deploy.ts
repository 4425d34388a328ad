import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../lib/config/config.ts';
import { generateSigningJwk } from '../lib/tokens/keys.ts';
import { generateCredentialKey } from '../lib/tokens/credential-keys.ts';
import { buildDeployPlan, type DeployPlan, type PlanStep } from '../infra/plan.ts';
import { commandLine, renderPlan } from '../infra/render.ts';
import { stageContext } from '../infra/stage.ts';
import { DeployError } from './deploy-error.ts';

// `mcp-front deploy`: print the plan, or apply it step by step, stopping at the first failure
// with the command that failed, its output and what to do next.


export interface DeployOptions {
  readonly config: Config;
  readonly text: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The repository root: the source of the function and http routes, and the build context. */
  readonly root: string;
  readonly outDir: string;
  readonly out: (line: string) => void;
  /** Add a new version to every existing secret from the environment (secrets are otherwise created once). */
  readonly updateSecrets?: boolean;
}

export function planDeploy(options: DeployOptions): DeployPlan {
  const packageJson = readFileSync(join(options.root, 'package.json'), 'utf8');
  return buildDeployPlan({ config: options.config, text: options.text, env: options.env, outDir: options.outDir, packageJson });
}

export function printPlan(options: DeployOptions): void {
  options.out(renderPlan(planDeploy(options)));
}

export async function applyDeploy(options: DeployOptions): Promise<{ ran: number; skipped: number }> {
  const plan = planDeploy(options);
  for (const [path, content] of Object.entries(plan.files)) {
    const file = join(options.root, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  // Each build uploads exactly its staged directory (with its own .gcloudignore).
  for (const [dir, context] of Object.entries(plan.contexts)) stageContext(options.root, join(options.root, dir), context);
  let ran = 0;
  let skipped = 0;
  for (let [i, step] of plan.steps.entries()) {
    const label = `[${i + 1}/${plan.steps.length}] ${step.title}`;
    if (step.check) {
      const check = await run(step.check, { cwd: options.root, env: options.env });
      if (check.code === 0 && (!step.checkOutputContains || check.output.includes(step.checkOutputContains))) {
        if (!(options.updateSecrets && step.update)) {
          options.out(`${label}: already done`);
          skipped++;
          continue;
        }
        step = { ...step, command: step.update };
      }
    }
    options.out(`${label}…`);
    const result = await run(step.command, { cwd: options.root, env: options.env, stdin: await stdinFor(step, options.env) });
    if (result.code !== 0) {
      throw new DeployError(
        `step ${i + 1} failed (exit ${result.code}): ${step.title}\n$ ${commandLine(step)}\n${result.output.trim().split('\n').slice(-15).join('\n')}\n` +
          'Fix the cause above and run `mcp-front deploy --apply` again: finished steps are skipped or converge.',
      );
    }
    ran++;
  }
  options.out(`done: ${ran} steps ran, ${skipped} already done. Add https://${plan.domain}/<route>/mcp to your MCP client.`);
  return { ran, skipped };
}

async function stdinFor(step: PlanStep, env: DeployOptions['env']): Promise<string | undefined> {
  if (!step.stdin) return undefined;
  if (step.stdin.kind === 'new-signing-key') return JSON.stringify(await generateSigningJwk());
  if (step.stdin.kind === 'new-credential-key') return generateCredentialKey();
  const value = env[step.stdin.variable];
  if (!value) throw new DeployError(`step "${step.title}" needs $${step.stdin.variable} set to the secret's value`);
  return value;
}

function run(command: readonly string[], options: { cwd: string; env: DeployOptions['env']; stdin?: string }): Promise<{ code: number; output: string }> {
  // Our own steps (firestore-rules) run on this Node, from this checkout.
  const argv = command[0] === 'mcp-front' ? [process.execPath, join(options.cwd, 'cli/mcp-front.ts'), ...command.slice(1)] : command;
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, env: { ...options.env, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      // The last part is what explains a failure; keep memory bounded for chatty builds.
      output = (output + chunk.toString('utf8')).slice(-64 * 1024);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', (err) => resolve({ code: 127, output: `${argv[0]}: ${err.message}` }));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output }));
    child.stdin.end(options.stdin ?? '');
  });
}
