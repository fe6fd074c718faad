// What /proc says about a row: CPU time of the whole machine and of this process (for contention: how many CPUs
// other processes used during each step), and this process's resident memory and its peak.
import { readFileSync, writeFileSync } from 'node:fs';

/** Other processes using fewer CPUs than this count as a quiet machine. */
export const IDLE_OTHERS_CPUS = 0.25;

/** For contention accounting: wall seconds, this process's CPU seconds, and the whole machine's busy CPU seconds. */
export interface Sample {
  wall: number;
  own: number;
  busy: number;
}

/** USER_HZ: /proc/stat counts in 1/100 s on every Linux that Node supports. */
const CLK_TCK = 100;

/** Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal); NaN off Linux. */
export function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / CLK_TCK;
  } catch {
    return NaN;
  }
}

export function sample(): Sample {
  const u = process.cpuUsage();
  return { wall: performance.now() / 1000, own: (u.user + u.system) / 1e6, busy: machineBusySeconds() };
}

/** CPUs used by other processes between consecutive samples (one value per interval). */
export function othersBetween(samples: Sample[]): number[] {
  return samples.slice(1).map((b, i) => {
    const a = samples[i];
    return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / (b.wall - a.wall));
  });
}

/** Waits until other processes use fewer than IDLE_OTHERS_CPUS CPUs over 2 s, for at most `maxSeconds`. */
export async function waitForIdle(maxSeconds: number): Promise<number> {
  const deadline = performance.now() + maxSeconds * 1000;
  for (;;) {
    const a = sample();
    await new Promise((r) => setTimeout(r, 2000));
    const others = othersBetween([a, sample()])[0];
    if (!(others >= IDLE_OTHERS_CPUS) || performance.now() >= deadline) return others;
  }
}

export function statusKB(field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux
  }
  return field === 'VmHWM' ? process.resourceUsage().maxRSS : process.memoryUsage().rss / 1024;
}

export const vmHwmKB = () => statusKB('VmHWM');

/** Resets the kernel's peak-RSS mark (VmHWM) to the current RSS, so later peaks are the training steps' own. */
export function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
