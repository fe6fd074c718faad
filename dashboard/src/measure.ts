// Draw times, for measuring how long an event takes from the store to the chart: each entry says that every event
// of `job` up to `sequence` was on the canvas at `atMs` (ms since epoch, the clock the store stamps events with).
export interface Draw {
  job: string;
  sequence: number;
  atMs: number;
}

const KEEP = 5000;
const draws: Draw[] = [];
Object.assign(globalThis, { narrowtuneDraws: draws });

export function recordDraw(job: string, sequence: number): void {
  const last = draws.at(-1);
  if (last && last.job === job && last.sequence === sequence) return;
  if (draws.length >= KEEP * 2) draws.splice(0, KEEP);
  draws.push({ job, sequence, atMs: performance.timeOrigin + performance.now() });
}
