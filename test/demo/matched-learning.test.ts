// Forgetting at matched learning: reading a sweep's learning–forgetting curve at one learning level.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commonReach, MATCHED_SHARE, matchedLevel, ORIGIN, reach, readAt, type SweepPoint, sweepCurve } from '../../src/demo/matched-learning.js';

const p = (lr: number, learning: number, forgetting: number, drift = 0): SweepPoint => ({ lr, learning, forgetting, drift });

describe('readAt', () => {
  const sweep = [p(1e-3, 0.6, -0.5, 0.02), p(1e-4, 0.2, -0.1, 0.004), p(3e-4, 0.4, -0.3, 0.01)];

  it('starts the curve at the base model and orders the runs by learning rate', () => {
    expect(sweepCurve(sweep).map((q) => q.lr)).toEqual([0, 1e-4, 3e-4, 1e-3]);
    expect(sweepCurve(sweep)[0]).toEqual(ORIGIN);
  });

  it('interpolates linearly between the two runs around the level', () => {
    const m = readAt(sweep, 0.5)!;
    expect(m.forgetting).toBeCloseTo(-0.4, 12);
    expect(m.drift).toBeCloseTo(0.015, 12);
    expect(m.between).toEqual([3e-4, 1e-3]);
  });

  it('interpolates from the base model below the smallest learning rate', () => {
    const m = readAt(sweep, 0.1)!;
    expect(m.forgetting).toBeCloseTo(-0.05, 12);
    expect(m.between).toEqual([0, 1e-4]);
  });

  it('gives the run itself at a run\'s learning, and the base model at level 0', () => {
    expect(readAt(sweep, 0.4)!.forgetting).toBeCloseTo(-0.3, 12);
    expect(readAt(sweep, 0)).toEqual({ learning: 0, forgetting: 0, drift: 0, between: [0, 1e-4] });
  });

  it('never extrapolates: a level above every run is null', () => {
    expect(readAt(sweep, 0.61)).toBeNull();
    expect(readAt([], 0.1)).toBeNull();
    expect(readAt([p(1e-3, 0, -0.2)], 0.01)).toBeNull();
  });

  it('takes the first crossing in order of learning rate when learning falls at a larger rate', () => {
    // 3e-3 learns less than 1e-3 (unstable): the level 0.5 is crossed first between 3e-4 and 1e-3
    const m = readAt([...sweep, p(3e-3, 0.3, -0.9)], 0.5)!;
    expect(m.between).toEqual([3e-4, 1e-3]);
    expect(m.forgetting).toBeCloseTo(-0.4, 12);
  });

  it('refuses a level that is not a finite number ≥ 0', () => {
    for (const bad of [-0.1, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => readAt(sweep, bad)).toThrow(/learning level/);
  });
});

describe('commonReach and matchedLevel', () => {
  it('the common reach is the largest level every method reaches; the matched level is half of it', () => {
    const curves = [[p(1e-3, 0.6, -0.5)], [p(1e-3, 0.45, -0.2), p(3e-3, 0.3, -0.4)]];
    expect(commonReach(curves)).toBeCloseTo(0.45, 12);
    expect(MATCHED_SHARE).toBe(0.5);
    expect(matchedLevel(curves)).toBeCloseTo(0.225, 12);
  });

  it('leaves out a method that learns under a quarter of the best, which then reads n/a', () => {
    const curves = [[p(1e-3, 0.6, -0.5)], [p(1e-3, 0.5, -0.2)], [p(1e-3, 0.1, 0)]];
    expect(commonReach(curves)).toBeCloseTo(0.5, 12);
    expect(readAt(curves[2], commonReach(curves)!)).toBeNull();
  });

  it('is null when no method learned', () => {
    expect(commonReach([[p(1e-3, 0, -0.5)], [p(1e-3, -0.1, 0)]])).toBeNull();
    expect(matchedLevel([[p(1e-3, 0, -0.5)], [p(1e-3, -0.1, 0)]])).toBeNull();
    expect(matchedLevel([])).toBeNull();
  });
});

const unit = fc.double({ min: -1, max: 1, noNaN: true });
const run = fc.record({ lr: fc.double({ min: 1e-6, max: 1, noNaN: true }), learning: fc.double({ min: 0, max: 1, noNaN: true }), forgetting: unit, drift: unit });
const sweepOf = fc.uniqueArray(run, { minLength: 1, maxLength: 6, selector: (r) => r.lr });

describe('properties', () => {
  it('a level is read exactly when the curve reaches it, and between the values of its segment\'s ends', () => {
    fc.assert(
      fc.property(sweepOf, fc.double({ min: 0, max: 1, noNaN: true }), (sweep, level) => {
        const m = readAt(sweep, level);
        expect(m === null).toBe(level > reach(sweep));
        if (m === null) return;
        const c = sweepCurve(sweep);
        const [a, b] = m.between.map((lr) => c.find((q) => q.lr === lr)!);
        expect(m.forgetting).toBeGreaterThanOrEqual(Math.min(a.forgetting, b.forgetting) - 1e-12);
        expect(m.forgetting).toBeLessThanOrEqual(Math.max(a.forgetting, b.forgetting) + 1e-12);
        expect(m.drift).toBeGreaterThanOrEqual(Math.min(a.drift, b.drift) - 1e-12);
        expect(m.drift).toBeLessThanOrEqual(Math.max(a.drift, b.drift) + 1e-12);
      }),
    );
  });

  it('the order in which the runs are listed does not matter', () => {
    fc.assert(
      fc.property(sweepOf, fc.double({ min: 0, max: 1, noNaN: true }), (sweep, level) => {
        expect(readAt([...sweep].reverse(), level)).toEqual(readAt(sweep, level));
      }),
    );
  });

  it('on a curve whose learning grows with the learning rate, reading at a run\'s learning gives that run', () => {
    fc.assert(
      fc.property(sweepOf, (sweep) => {
        const sorted = [...sweep].sort((a, b) => a.lr - b.lr);
        const monotone = sorted.map((q, i) => ({ ...q, learning: (i + 1) / sorted.length }));
        for (const q of monotone) expect(readAt(monotone, q.learning)!.forgetting).toBeCloseTo(q.forgetting, 9);
      }),
    );
  });

  it('every method that takes part is read at the common reach, which one of them just reaches', () => {
    fc.assert(
      fc.property(fc.array(sweepOf, { minLength: 1, maxLength: 8 }), (curves) => {
        const level = commonReach(curves);
        const best = Math.max(...curves.map(reach));
        if (best === 0) return expect(level).toBeNull();
        expect(level).not.toBeNull();
        const taking = curves.filter((c) => reach(c) >= 0.25 * best);
        for (const c of taking) expect(readAt(c, level!)).not.toBeNull();
        expect(taking.some((c) => reach(c) === level)).toBe(true);
      }),
    );
  });
});
