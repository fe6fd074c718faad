// How busy this process is: the hostile-input tests check that a refused or cancelled request leaves no
// thread spinning (process.cpuUsage counts every thread, workers included).

/** CPU time of this process over `windowMs` of wall time, as a share of one core. */
export async function cpuShare(windowMs = 400): Promise<number> {
  const before = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / (performance.now() - t0);
}

/** Share of a core under which the process counts as idle: timers, gRPC keepalives and GC stay far below. */
export const IDLE_SHARE = 0.3;

/** Resolves with the last share once a window is idle; rejects when none is within `timeoutMs`. */
export async function waitForIdle(timeoutMs = 5_000): Promise<number> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const share = await cpuShare();
    if (share < IDLE_SHARE) return share;
    if (performance.now() > end) throw new Error(`still busy after ${timeoutMs} ms: ${(share * 100).toFixed(0)}% of a core`);
  }
}
