// Typed jobs and events for store tests.
import type { JobCheckpoint, JobSpec, JobStep } from '../../src/store/job-events.js';
import { DEFAULTS } from '../../src/trainer/options.js';

/** A job spec for base model `model`; the store keeps it as given. */
export function spec(model = 'm'): JobSpec {
  return { options: { ...DEFAULTS, model, data: 'train.jsonl' }, request: { trainingData: 'train.jsonl' } };
}

/** A step event whose loss tells it apart. */
export function step(n: number, loss = 1 / n): JobStep {
  return { type: 'step', step: n, totalSteps: 10, loss, learningRate: 1e-4, gradNorm: 0.5, tokensPerSecond: 100, elapsedSeconds: n };
}

export function checkpoint(n: number): JobCheckpoint {
  return { type: 'checkpoint', step: n, path: `/ck/${n}` };
}
