// Forgetting at matched learning. A method that learns less also forgets less, so methods are compared at one
// level of learning: each method's learning-rate sweep is a curve that starts at the base model (no learning, no
// forgetting) and visits its runs in order of increasing learning rate, and the curve is read at the level by
// linear interpolation between the two runs around it. A curve that never reaches the level gives null: it is
// never extrapolated.

/** One run of a sweep; learning, forgetting and drift as the demo reports them (fractions, not points). */
export interface SweepPoint {
  lr: number;
  learning: number;
  forgetting: number;
  drift: number;
}

/** A curve read at a learning level, and the learning rates of the two points around it (0 = the base model). */
export interface MatchedPoint {
  learning: number;
  forgetting: number;
  drift: number;
  between: [number, number];
}

/** The base model: the curve's start at learning rate 0. */
export const ORIGIN: SweepPoint = { lr: 0, learning: 0, forgetting: 0, drift: 0 };

/**
 * A method takes part in setting the matched level when its best learning is at least this share of the best
 * method's; one that learns almost nothing would otherwise drag the level down to where every method is unchanged.
 */
export const MIN_REACH_SHARE = 0.25;

/** The curve: the base model, then the runs by increasing learning rate. */
export function sweepCurve(points: readonly SweepPoint[]): SweepPoint[] {
  return [ORIGIN, ...[...points].sort((a, b) => a.lr - b.lr)];
}

/** The most learning along the curve (0 when no run learned anything). */
export function reach(points: readonly SweepPoint[]): number {
  return Math.max(0, ...points.map((p) => p.learning));
}

/**
 * The curve read at `level`: on the first segment, in order of learning rate, whose learning spans the level.
 * null when no segment does (the level is above every run's learning).
 */
export function readAt(points: readonly SweepPoint[], level: number): MatchedPoint | null {
  if (!Number.isFinite(level) || level < 0) throw new RangeError(`learning level must be a finite number ≥ 0, got ${level}`);
  const c = sweepCurve(points);
  for (let i = 0; i + 1 < c.length; i++) {
    const [a, b] = [c[i], c[i + 1]];
    if (level < Math.min(a.learning, b.learning) || level > Math.max(a.learning, b.learning)) continue;
    const t = a.learning === b.learning ? 0 : (level - a.learning) / (b.learning - a.learning);
    const lerp = (x: number, y: number) => x + t * (y - x);
    return { learning: level, forgetting: lerp(a.forgetting, b.forgetting), drift: lerp(a.drift, b.drift), between: [a.lr, b.lr] };
  }
  return null;
}

/**
 * The common reach: the largest learning level that every method taking part reaches, i.e. the smallest of their
 * reaches, where taking part means reaching at least MIN_REACH_SHARE of the best reach. null when no method learned.
 */
export function commonReach(curves: readonly (readonly SweepPoint[])[], minShare = MIN_REACH_SHARE): number | null {
  const reaches = curves.map(reach);
  const best = Math.max(0, ...reaches);
  if (best <= 0) return null;
  return Math.min(...reaches.filter((r) => r >= minShare * best));
}

/**
 * The matched level sits this far up the common reach. At the reach itself the weakest method is read at its
 * largest learning rate, where forgetting often saturates for every method (all near −100 points) and nothing can
 * be compared; halfway up, every curve is read between two measured points.
 */
export const MATCHED_SHARE = 0.5;

/** The learning level at which methods are compared: MATCHED_SHARE of the common reach. */
export function matchedLevel(curves: readonly (readonly SweepPoint[])[], minShare = MIN_REACH_SHARE): number | null {
  const top = commonReach(curves, minShare);
  return top === null ? null : MATCHED_SHARE * top;
}
