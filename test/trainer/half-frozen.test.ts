// Frozen weights kept in the checkpoint's half precision (--frozen-precision checkpoint) must change nothing but
// memory: BF16 → float32 is exact, so every loss and every written tensor is bitwise the float32 path's.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { compileTrainStep } from '../../src/graph/train-step.js';
import { paramsOf } from '../../src/graph/params.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from './fixtures.js';

let dir: string;
let base: string;
let data: string;
beforeAll(async () => {
  dir = await tempDir('nt-half-');
  base = await tinyModel(dir, { ...TINY_QWEN2, tieEmbeddings: true, dtype: 'BF16' });
  data = await repeatData(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const FAST: Partial<TuneOptions> = { lr: 1e-2, steps: 6, batchSize: 4, seqLen: 32, schedule: 'constant', warmupSteps: 0 };

async function run(frozenPrecision: TuneOptions['frozenPrecision'], preset: string): Promise<{ losses: number[]; weights: Buffer }> {
  const out = join(dir, `${preset}-${frozenPrecision}`);
  const losses: number[] = [];
  await tune({ ...DEFAULTS, ...FAST, model: base, data, out, frozenPrecision, policy: { preset } }, (e) => {
    if (e.type === 'step') losses.push(e.loss);
  });
  return { losses, weights: await readFile(join(out, 'model.safetensors')) };
}

it.each(['mlp_gate_up', 'sa_proj'])('%s: the same losses and weights, bit for bit, with frozen weights kept in BF16', async (preset) => {
  const plain = await run('float32', preset);
  const half = await run('checkpoint', preset);
  expect(half.losses).toEqual(plain.losses);
  expect(half.losses[half.losses.length - 1]).toBeLessThan(half.losses[0]);
  expect(half.weights.equals(plain.weights)).toBe(true);
});

it('stores frozen matrices as BF16 initializers and trainable ones as float32 inputs', async () => {
  const ckpt = await loadCheckpoint(base);
  const params = paramsOf(ckpt);
  const spec = { config: ckpt.config, params, trainable: ['model.layers.0.mlp.up_proj.weight'], batch: 1, seq: 8, optimizer: { kind: 'sgd', weightDecay: 0 }, clipNorm: null, accumulate: false, update: true } as const;
  const half = compileTrainStep({ ...spec, halfFrozen: true }).model;
  const plain = compileTrainStep(spec).model;
  const bytes = (m: typeof half) => m.externalData.reduce((sum, e) => sum + e.data.byteLength, 0) + m.bytes.byteLength;
  // The embedding and every frozen projection halve; norms (1-D) stay float32.
  expect(bytes(half)).toBeLessThan(0.6 * bytes(plain));
});
