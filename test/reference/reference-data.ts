// What every float64 PyTorch reference test trains on and how closely it must agree.
import type { TuneOptions } from '../../src/trainer/options.js';
import { learningRate } from '../../src/trainer/schedule.js';

/** Loss and gradient-norm tolerance (relative) against the reference. */
export const TOLERANCE = 1e-4;
export const F32_HALF_ULP = 2 ** -24;

/** Four pre-tokenized examples of different lengths; some labels ignored. */
export const EXAMPLES = [
  { input_ids: [5, 17, 99, 3, 44, 8], labels: [-100, -100, 99, 3, 44, 8] },
  { input_ids: [250, 1, 2, 3], labels: [250, 1, 2, 3] },
  { input_ids: [7, 7, 7, 7, 7, 120, 121, 122, 9], labels: [-100, -100, -100, -100, -100, 120, 121, 122, 9] },
  { input_ids: [60, 61], labels: [-100, 61] },
];

/** The examples as the training data file. */
export const EXAMPLES_JSONL = EXAMPLES.map((e) => JSON.stringify(e)).join('\n');

/** Right-padded [B][T] ids and shifted targets, as the HF loss convention defines them. */
export function referenceBatch() {
  const t = Math.max(...EXAMPLES.map((e) => e.input_ids.length));
  return {
    input_ids: EXAMPLES.map((e) => [...e.input_ids, ...Array(t - e.input_ids.length).fill(0)]),
    targets: EXAMPLES.map((e) => Array.from({ length: t }, (_, i) => e.labels[i + 1] ?? -100)),
  };
}

/** The optimizer part of a reference spec: what tune() will do at each of `o.steps` steps, in the references' names. */
export function referenceOptimizer(o: TuneOptions) {
  const schedule = { kind: o.schedule, lr: o.lr, warmupSteps: o.warmupSteps ?? 0, totalSteps: o.steps! };
  return {
    optimizer: o.optimizer,
    lrs: Array.from({ length: o.steps! }, (_, s) => learningRate(schedule, s)),
    weight_decay: o.weightDecay,
    betas: [o.beta1, o.beta2],
    eps: o.eps,
    clip_norm: o.clipNorm,
  };
}
