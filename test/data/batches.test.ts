// Tests for deterministic data order and batch collation (shift, padding, counts).

import { describe, expect, it } from 'vitest';
import { collate, epochOrder, microBatchIndices, padLength } from '../../src/data/batches.js';
import type { Example } from '../../src/data/dataset.js';

const X = -100;

describe('epochOrder', () => {
  it('is a deterministic permutation that changes across epochs and seeds', () => {
    const a = epochOrder(50, 7, 0);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epochOrder(50, 7, 0)).toEqual(a);
    expect(epochOrder(50, 7, 1)).not.toEqual(a);
    expect(epochOrder(50, 8, 0)).not.toEqual(a);
    expect(epochOrder(1, 7, 3)).toEqual([0]);
    expect(epochOrder(0, 7, 0)).toEqual([]);
  });

  it('rejects non-integer arguments', () => {
    expect(() => epochOrder(3, 1.5, 0)).toThrow(/seed/);
    expect(() => epochOrder(-1, 1, 0)).toThrow(/examples/);
  });
});

describe('microBatchIndices', () => {
  /** Reference: walk the endless stream from the start. */
  function simulate(n: number, batchSize: number, seed: number, steps: number): number[][] {
    const stream: number[] = [];
    for (let epoch = 0; stream.length < steps * batchSize; epoch++) stream.push(...epochOrder(n, seed, epoch));
    return Array.from({ length: steps }, (_, k) => stream.slice(k * batchSize, (k + 1) * batchSize));
  }

  it.each([
    [10, 4],
    [7, 3],
    [5, 5],
    [3, 8], // a batch wider than the dataset spans several epochs
  ])('matches a brute-force stream (n=%i, B=%i)', (n, batchSize) => {
    const steps = 12;
    const expected = simulate(n, batchSize, 42, steps);
    for (let k = 0; k < steps; k++) expect(microBatchIndices(n, batchSize, 42, k)).toEqual(expected[k]);
  });

  it('crosses an epoch boundary mid-batch', () => {
    // n=10, B=4: micro-batch 2 is positions 8..11 = the last two of epoch 0, the first two of epoch 1.
    const e0 = epochOrder(10, 3, 0);
    const e1 = epochOrder(10, 3, 1);
    expect(microBatchIndices(10, 4, 3, 2)).toEqual([e0[8], e0[9], e1[0], e1[1]]);
  });

  it('computes a far step directly', () => {
    const n = 1000;
    const k = 10_000_000; // epoch 40000
    const order = epochOrder(n, 1, (k * 2) / n);
    expect(microBatchIndices(n, 2, 1, k)).toEqual([order[0], order[1]]);
  });
});

describe('padLength', () => {
  const ex = (len: number): Example => ({ inputIds: new Array(len).fill(1), labels: new Array(len).fill(1) });
  it('rounds the longest example up to the multiple and caps at seqLen', () => {
    expect(padLength([ex(3), ex(9)], 64)).toBe(16);
    expect(padLength([ex(16)], 64)).toBe(16);
    expect(padLength([ex(60)], 62)).toBe(62);
    expect(padLength([ex(5)], 64, 1)).toBe(5);
    expect(() => padLength([], 64)).toThrow(/no examples/);
  });
});

describe('collate', () => {
  const examples: Example[] = [
    { inputIds: [10, 11, 12, 13], labels: [X, X, 12, 13] },
    { inputIds: [20, 21], labels: [20, 21] },
  ];

  it('shifts labels into targets and right-pads with padId', () => {
    const batch = collate(examples, 5, 3, 0);
    expect(Array.from(batch.inputIds, Number)).toEqual([10, 11, 12, 13, 0, 20, 21, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(batch.targets, Number)).toEqual([X, 12, 13, X, X, 21, X, X, X, X, X, X, X, X, X]);
    expect(batch.validTokens).toBe(3);
    expect(batch.tokens).toBe(6);
  });

  it('fills an exact-length row without a trailing target', () => {
    const batch = collate([examples[0]], 4, 1, 99);
    expect(Array.from(batch.inputIds, Number)).toEqual([10, 11, 12, 13]);
    expect(Array.from(batch.targets, Number)).toEqual([X, 12, 13, X]);
  });

  it('rejects oversize inputs', () => {
    expect(() => collate(examples, 3, 2, 0)).toThrow(/exceeds the batch length 3/);
    expect(() => collate(examples, 8, 1, 0)).toThrow(/do not fit a batch of 1/);
  });
});
