import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { descendantsOf } from '../test/support/process-table.ts';

// CPU time and resident memory of the processes a target runs, read from /proc: the gateway
// processes themselves, and the servers they started (their descendants).

/** Clock ticks per second: the unit of utime and stime in /proc/<pid>/stat (proc(5)). */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** User + system CPU one process has used so far, in µs; undefined once it is gone. */
function cpuMicros(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // ended since it was listed: it used nothing more we can count
  }
  // The command sits in parentheses and may contain spaces; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS_PER_SECOND;
}

/** Every live descendant of the given processes. */
export function descendantPids(pids: readonly number[]): number[] {
  return pids.flatMap((pid) => descendantsOf(pid).map((e) => e.pid));
}

/**
 * Starts counting the CPU of `processes()` (asked again at the end, so a process started in the
 * window counts whole); `end()` gives the µs they used since, or undefined when there were none.
 * A process that ended within the window is lost from the count (not the case on a live session).
 */
export function cpuWindow(processes: () => readonly number[]): { end(): number | undefined } {
  const before = new Map(processes().map((pid) => [pid, cpuMicros(pid)]));
  return {
    end() {
      const pids = processes();
      if (!pids.length) return undefined;
      return pids.reduce((sum, pid) => {
        const now = cpuMicros(pid);
        return now === undefined ? sum : sum + now - (before.get(pid) ?? 0);
      }, 0);
    },
  };
}

/** Resident memory of the given processes together, in KiB (each process's own: children are not included). */
export function rssKiB(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    } catch {
      // ended since it was listed: it holds no memory
    }
  }
  return total;
}
