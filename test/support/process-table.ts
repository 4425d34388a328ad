import { readdirSync, readFileSync } from 'node:fs';

// Reads the process table from /proc, to prove no child of the server is left behind.

interface ProcEntry {
  pid: number;
  ppid: number;
  state: string;
  command: string;
}

function readEntry(pid: number): ProcEntry | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command sits in parentheses and may itself contain spaces or parentheses.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    return { pid, ppid: Number(fields[1]), state: fields[0]!, command: stat.slice(stat.indexOf('(') + 1, close) };
  } catch {
    return undefined; // the process ended between listing and reading: not an error here
  }
}

export function processTable(): ProcEntry[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readEntry(Number(name)))
    .filter((e): e is ProcEntry => e !== undefined);
}

/** Every live descendant of `pid` (children, grandchildren, …), zombies included. */
export function descendantsOf(pid: number): ProcEntry[] {
  const table = processTable();
  const found: ProcEntry[] = [];
  let frontier = [pid];
  while (frontier.length > 0) {
    const children = table.filter((e) => frontier.includes(e.ppid));
    found.push(...children);
    frontier = children.map((c) => c.pid);
  }
  return found;
}

/** The given pids that still exist (running or zombie). */
export function stillPresent(pids: readonly number[]): ProcEntry[] {
  return pids.map(readEntry).filter((e): e is ProcEntry => e !== undefined);
}
