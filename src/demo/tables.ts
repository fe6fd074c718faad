// The demo's console tables: every run of the sweep, and every method at the matched learning level.
import { massDelta, points } from './findings.js';
import type { DemoResult } from './result.js';

/** A learning rate as the plans write it: 3e-4, 1e-3. */
export const lrText = (lr: number) => (lr === 0 ? 'base' : lr.toExponential(0).replace('e+', 'e'));

const row = (cells: string[], widths: number[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');

/** Δ learning and Δ held-out forgetting in accuracy points, and number_mass drift, per method and learning rate. */
export function runTable(r: Pick<DemoResult, 'methods'>): string[] {
  const w = [16, 6, 10, 12, 17];
  return [
    row(['method', 'lr', 'Δ learning', 'Δ forgetting', 'number_mass drift'], w),
    ...r.methods.flatMap((m) =>
      m.runs.map((run) => row([m.method, lrText(run.lr), points(run.deltaLearning), points(run.deltaForgetting), massDelta(run.numberMassDrift)], w)),
    ),
  ];
}

/** Each method's curve read at the matched learning level; n/a where it never gets there. */
export function matchedTable(r: Pick<DemoResult, 'methods' | 'matchedLevel' | 'commonReach'>): string[] {
  const w = [16, 13, 12, 17, 13, 16];
  const level = (x: number | null) => (x === null ? 'n/a' : points(x));
  return [
    `At matched learning (${level(r.matchedLevel)} points on the new skills; half of ${level(r.commonReach)}, the most that every method learned):`,
    row(['method', 'best learning', 'Δ forgetting', 'number_mass drift', 'between lrs', `Δ forgetting at ${level(r.commonReach)}`], w),
    ...r.methods.map((m) =>
      row(
        [
          m.method,
          points(m.reach),
          ...(m.matched ? [points(m.matched.forgetting), massDelta(m.matched.drift), m.matched.between.map(lrText).join('–')] : ['n/a', 'n/a', '–']),
          m.atReach ? points(m.atReach.forgetting) : 'n/a',
        ],
        w,
      ),
    ),
  ];
}
