// One short SGD fine-tune with drift probes, recorded for comparing two ways of running the same training.
import { join } from 'node:path';
import { expect } from 'vitest';
import { readSafetensorsFile } from '../../src/model/safetensors-file.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';

export interface TrainingRun {
  provider: string;
  losses: number[];
  gradNorms: number[];
  probes: { step: number; heldoutLoss: number; klToBase: number; numberMass: number; top1Agreement: number }[];
  tensors: Map<string, Float32Array>;
}

/**
 * SGD, not AdamW: AdamW divides each gradient by its own magnitude, which turns the float32 rounding noise of
 * near-zero gradients (k_proj.bias: softmax ignores it) into visible weight differences. Four SGD updates at
 * lr 0.1 separate a wrong kernel from float32 reassociation by orders of magnitude.
 */
export async function trainingRun(o: Pick<TuneOptions, 'model' | 'data' | 'out' | 'probeData'> & Partial<TuneOptions>): Promise<TrainingRun> {
  const run: TrainingRun = { provider: '', losses: [], gradNorms: [], probes: [], tensors: new Map() };
  await tune({ ...DEFAULTS, steps: 4, batchSize: 4, seqLen: 32, optimizer: 'sgd', lr: 0.1, schedule: 'constant', warmupSteps: 0, probeEvery: 2, ...o }, (e) => {
    if (e.type === 'started') run.provider = e.provider;
    if (e.type === 'step') {
      run.losses.push(e.loss);
      run.gradNorms.push(e.gradNorm);
    }
    if (e.type === 'probe') run.probes.push({ step: e.step, heldoutLoss: e.heldoutLoss, klToBase: e.klToBase, numberMass: e.numberMass, top1Agreement: e.top1Agreement });
  });
  for (const t of await readSafetensorsFile(join(o.out, 'model.safetensors'))) {
    run.tensors.set(t.name, new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)));
  }
  return run;
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/** Same losses, gradient norms, probe figures and weights, up to float32 reassociation. */
export function expectSameTraining(a: TrainingRun, b: TrainingRun): void {
  expect(a.losses).toHaveLength(4);
  expect(b.losses).toHaveLength(4);
  for (let i = 0; i < 4; i++) {
    expect(relErr(a.losses[i], b.losses[i])).toBeLessThan(1e-5);
    expect(relErr(a.gradNorms[i], b.gradNorms[i])).toBeLessThan(1e-4);
  }
  expect(a.probes.map((p) => p.step)).toEqual([2, 4]);
  expect(b.probes.map((p) => p.step)).toEqual([2, 4]);
  a.probes.forEach((p, i) => {
    const q = b.probes[i];
    expect(relErr(p.heldoutLoss, q.heldoutLoss)).toBeLessThan(1e-5);
    expect(p.top1Agreement).toBe(q.top1Agreement);
    for (const k of ['klToBase', 'numberMass'] as const) expect(Math.abs(p[k] - q[k]), k).toBeLessThan(1e-6);
  });
  expect(a.probes.at(-1)!.klToBase).toBeGreaterThan(0); // the probes see the training move the model
  expect([...a.tensors.keys()].sort()).toEqual([...b.tensors.keys()].sort());
  for (const [name, w] of b.tensors) {
    const v = a.tensors.get(name)!;
    let worst = 0;
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(v[i] - w[i]));
    expect(worst, name).toBeLessThan(1e-5);
  }
}
