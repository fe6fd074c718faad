// The dashboard's event folding (dashboard/src/series.ts), in Node: resumed steps replace the superseded ones,
// repeated sequences are ignored, probes keep their token-class columns aligned.
import { describe, expect, it } from 'vitest';
import { CLASS_PREFIX, JobSeries, LOG_LIMIT, type MetricEvent } from '../../dashboard/src/series.js';

let seq = 0;
const at = (event: MetricEvent) => ({ sequence: ++seq, timeMs: 0, event });
const started = (resumedFromStep: number) => at({ case: 'started', value: { totalSteps: 10, resumedFromStep, provider: 'cpu', trainableParameters: 5n } });
const step = (s: number, loss = 1 / s) => at({ case: 'step', value: { step: s, totalSteps: 10, loss, learningRate: 1e-3, gradNorm: 1, tokensPerSecond: 100 } });
const probe = (s: number, classes: { name: string; delta: number }[] = []) =>
  at({ case: 'probe', value: { step: s, numberMassDelta: 0.01 * s, klToBase: 0.1 * s, top1Agreement: 1 - 0.01 * s, heldoutLossDelta: 0.02 * s, classes } });

describe('JobSeries', () => {
  it('a resume drops the steps after its checkpoint, so each step is drawn once, with the newer values', () => {
    const s = new JobSeries();
    s.apply(started(0));
    for (let i = 1; i <= 7; i++) s.apply(step(i));
    s.apply(probe(4));
    s.apply(probe(6));
    s.apply(at({ case: 'checkpoint', value: { step: 4, path: 'c4' } }));
    s.apply(started(4));
    expect(s.steps.x).toEqual([1, 2, 3, 4]);
    expect(s.probes.x).toEqual([4]);
    for (let i = 5; i <= 10; i++) s.apply(step(i, 9));
    expect(s.steps.x).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(s.steps.column('loss').slice(4)).toEqual([9, 9, 9, 9, 9, 9]);
    expect(s.checkpoints).toEqual([4]);
  });

  it('a step at or before the last one replaces the rows from there on, even without a started event', () => {
    const s = new JobSeries();
    for (const i of [1, 2, 3, 2, 3]) s.apply(step(i, i * 10));
    expect(s.steps.x).toEqual([1, 2, 3]);
    expect(s.steps.column('loss')).toEqual([10, 20, 30]);
  });

  it('ignores an event whose sequence it has seen (a reconnect that repeats one)', () => {
    const s = new JobSeries();
    const e = step(1);
    expect(s.apply(e)).toBe(true);
    expect(s.apply(e)).toBe(false);
    expect(s.steps.x).toEqual([1]);
    expect(s.lastSequence).toBe(e.sequence);
  });

  it('keeps token-class columns aligned with the probe steps, with gaps where a class is missing', () => {
    const s = new JobSeries();
    s.apply(probe(2));
    s.apply(probe(4, [{ name: 'yes_no', delta: 0.5 }]));
    s.apply(probe(6));
    expect(s.probes.column(`${CLASS_PREFIX}yes_no`)).toEqual([null, 0.5, null]);
    expect(s.probes.column('klToBase')).toHaveLength(3);
  });

  it('marks the budget stop, and a later resume clears it', () => {
    const s = new JobSeries();
    s.apply(probe(6));
    s.apply(at({ case: 'budgetExceeded', value: { limit: 'max_kl_to_base', value: 0.6, threshold: 0.5, step: 6, keptStep: 4 } }));
    expect(s.budgetStop).toMatchObject({ step: 6, keptStep: 4 });
    expect(s.log.at(-1)?.text).toBe('drift budget exceeded at step 6: max_kl_to_base 0.6 > 0.5; kept step 4');
    s.apply(started(4));
    expect(s.budgetStop).toBeNull();
  });

  it('bounds the log but not the charts', () => {
    const s = new JobSeries();
    for (let i = 1; i <= LOG_LIMIT * 3; i++) s.apply(step(i));
    expect(s.steps.x).toHaveLength(LOG_LIMIT * 3);
    expect(s.log.length).toBeLessThanOrEqual(LOG_LIMIT * 2);
    expect(s.log.at(-1)?.text).toMatch(new RegExp(`^step ${LOG_LIMIT * 3}/10: loss`));
  });
});
