import type { DeployPlan, PlanStep } from './plan.ts';

// The plan as a person reads it (and as the golden files pin it): numbered steps, each with
// the exact command, then every generated file.

const SAFE = /^[A-Za-z0-9_\-.,:/=@%+]+$/;

/** Quotes one argument for a POSIX shell, so a printed step can be pasted as is. */
export function shellQuote(arg: string): string {
  return SAFE.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function commandLine(step: Pick<PlanStep, 'command' | 'stdin'>): string {
  const command = step.command.map(shellQuote).join(' ');
  if (!step.stdin) return command;
  const source = step.stdin.kind === 'new-signing-key' ? 'mcp-front keygen' : step.stdin.kind === 'new-credential-key' ? 'mcp-front keygen --credential-key' : `printf %s "$${step.stdin.variable}"`;
  return `${source} | ${command}`;
}

export function renderPlan(plan: DeployPlan): string {
  const lines = [`# mcp-front deploy plan: project ${plan.project}, https://${plan.domain}`, `# ${plan.steps.length} steps; a step with "unless" is skipped when that check succeeds.`];
  for (const warning of plan.warnings) lines.push(`# warning: ${warning}`);
  lines.push('');
  plan.steps.forEach((step, i) => {
    lines.push(`${i + 1}. ${step.title}`);
    if (step.check) lines.push(`   unless: ${step.check.map(shellQuote).join(' ')}${step.checkOutputContains ? ` | grep -F ${shellQuote(step.checkOutputContains)}` : ''}`);
    lines.push(`   ${commandLine(step)}`);
    if (step.update) lines.push(`   with --update-secrets: ${commandLine({ ...step, command: step.update })}`);
  });
  for (const [dir, context] of Object.entries(plan.contexts)) {
    lines.push('', `# === ${dir}/ (staged build context): copied ${context.copy.join(' ')}; generated ${Object.keys(context.files).join(' ')}`);
    for (const [name, content] of Object.entries(context.files)) if (name !== 'package.json') lines.push(`# --- ${dir}/${name}`, content.trimEnd());
  }
  for (const [path, content] of Object.entries(plan.files)) lines.push('', `# --- ${path}`, content.trimEnd());
  return `${lines.join('\n')}\n`;
}
