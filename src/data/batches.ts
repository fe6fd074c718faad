// Deterministic data order and fixed-shape batch tensors: a step's batch depends only on (seed, step).

import { Rng } from '../util/rng.js';
import { invalidArgument } from '../util/errors.js';
import { IGNORE_INDEX, type Example } from './dataset.js';

export const DEFAULT_PAD_MULTIPLE = 8;
const IGNORE = BigInt(IGNORE_INDEX);

export interface Batch {
  /** [B*T] row-major token ids, right-padded with padId */
  inputIds: BigInt64Array;
  /** [B*T]; targets[b,t] = labels[b,t+1], last position and padding -100, so logits[t] is compared with targets[t] */
  targets: BigInt64Array;
  /** targets that are not -100 */
  validTokens: number;
  /** real (non-pad) input tokens */
  tokens: number;
}

/** A permutation of 0..n-1 for one epoch; a pure function of its arguments, so a resumed run sees the same order. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  checkCount('examples', n, 0);
  checkCount('epoch', epoch, 0);
  if (!Number.isInteger(seed)) throw invalidArgument('seed', `must be an integer, got ${seed}`);
  // Stream 0 is left to other consumers of the seed (init); epoch e uses stream e+1.
  const rng = new Rng(seed, epoch + 1);
  return rng.shuffle(Array.from({ length: n }, (_, i) => i));
}

/**
 * Example indices of micro-batch `microStep` (0-based), viewing the data as an endless stream of epochs
 * (epoch 0's order, then epoch 1's, ...): stream positions [microStep*B, (microStep+1)*B). Computed directly
 * from the positions so resuming at step k costs the same as step 0.
 */
export function microBatchIndices(n: number, batchSize: number, seed: number, microStep: number): number[] {
  checkCount('examples', n, 1);
  checkCount('batch_size', batchSize, 1);
  checkCount('micro_step', microStep, 0);
  const start = microStep * batchSize;
  if (!Number.isSafeInteger(start + batchSize)) throw invalidArgument('micro_step', `${microStep} is too large`);
  const orders = new Map<number, number[]>();
  const out: number[] = [];
  for (let p = start; p < start + batchSize; p++) {
    const epoch = Math.floor(p / n);
    let order = orders.get(epoch);
    if (!order) {
      order = epochOrder(n, seed, epoch);
      orders.set(epoch, order);
    }
    out.push(order[p % n]);
  }
  return out;
}

/**
 * The one sequence length T used for a whole run: the longest example rounded up to `multiple`, capped at
 * seqLen. One shape per run means one compiled graph serves every step.
 */
export function padLength(examples: Example[], seqLen: number, multiple = DEFAULT_PAD_MULTIPLE): number {
  checkCount('seq_len', seqLen, 1);
  checkCount('pad_multiple', multiple, 1);
  if (examples.length === 0) throw invalidArgument('data', 'no examples to size batches for');
  let longest = 0;
  for (const e of examples) longest = Math.max(longest, e.inputIds.length);
  return Math.min(seqLen, Math.ceil(longest / multiple) * multiple);
}

/**
 * Packs examples into [batchSize, T] tensors, right-padded with padId. No attention mask is needed: attention
 * is causal, so real tokens never attend to the padding after them, and pad positions carry no loss. Missing
 * rows (fewer examples than batchSize) are all padding.
 */
export function collate(examples: Example[], T: number, batchSize: number, padId: number): Batch {
  checkCount('seq_len', T, 1);
  checkCount('batch_size', batchSize, 1);
  if (examples.length > batchSize) {
    throw invalidArgument('batch_size', `${examples.length} examples do not fit a batch of ${batchSize}`);
  }
  const inputIds = new BigInt64Array(batchSize * T).fill(BigInt(padId));
  const targets = new BigInt64Array(batchSize * T).fill(IGNORE);
  let validTokens = 0;
  let tokens = 0;
  examples.forEach((example, b) => {
    const { inputIds: ids, labels } = example;
    if (ids.length > T) throw invalidArgument('seq_len', `example of ${ids.length} tokens exceeds the batch length ${T}`);
    if (labels.length !== ids.length) throw invalidArgument('data', `example has ${ids.length} ids but ${labels.length} labels`);
    const row = b * T;
    for (let t = 0; t < ids.length; t++) inputIds[row + t] = BigInt(ids[t]);
    // The HF shift: position t is scored on the token after it.
    for (let t = 0; t + 1 < ids.length; t++) {
      const label = labels[t + 1];
      targets[row + t] = BigInt(label);
      if (label !== IGNORE_INDEX) validTokens++;
    }
    tokens += ids.length;
  });
  return { inputIds, targets, validTokens, tokens };
}

function checkCount(field: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw invalidArgument(field, `must be an integer >= ${min}, got ${value}`);
}
