// tune() is setup, optimizer steps and the written result. Run by hand, as the benchmark's profiling rows run
// them, the parts take exactly tune()'s steps, on either optimizer placement and with the tape instrumented.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Emitted } from '../../src/graph/autodiff.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { setup } from '../../src/trainer/setup.js';
import { optimizerStep } from '../../src/trainer/step.js';
import { tune } from '../../src/trainer/trainer.js';
import { repeatData, tempDir, tinyModel } from './fixtures.js';

let dir: string;
let data: string;
let base: string;
beforeAll(async () => {
  dir = await tempDir('nt-setup-step-');
  data = await repeatData(dir);
  base = await tinyModel(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const options = (placement: TuneOptions['optimizerPlacement'], gradAccum: number): TuneOptions => ({
  ...DEFAULTS,
  model: base,
  data,
  out: join(dir, `out-${placement}-${gradAccum}`),
  policy: { preset: 'mlp_gate_up' },
  lr: 1e-2,
  steps: 5,
  batchSize: 4,
  gradAccum,
  seqLen: 32,
  optimizerPlacement: placement,
});

async function byHand(run: Awaited<ReturnType<typeof setup>>): Promise<number[][]> {
  const steps: number[][] = [];
  while (run.state.step < run.totalSteps) {
    const s = await optimizerStep(run);
    steps.push([s.step, s.loss, s.learningRate, s.gradNorm]);
  }
  await run.monitors.release();
  return steps;
}

describe.each([
  ['graph', 1],
  ['host', 1],
  ['graph', 2],
  ['host', 2],
] as const)('optimizer on the %s, %i micro-batch(es) per step', (placement, gradAccum) => {
  it("setup + optimizerStep reproduce tune()'s steps bit for bit, instrumented or not", async () => {
    const o = options(placement, gradAccum);
    const fromTune: number[][] = [];
    await tune(o, (e) => {
      if (e.type === 'step') fromTune.push([e.step, e.loss, e.learningRate, e.gradNorm]);
    });
    expect(fromTune).toHaveLength(5);

    const run = await setup(o);
    expect(run.host).toBe(placement === 'host');
    expect(await byHand(run)).toEqual(fromTune);

    let emitted: Emitted[] = [];
    const compiles: number[] = [];
    const instrumented = await setup(o, {
      onCompile: () => {
        emitted = [];
        compiles.push(1);
        return (e) => emitted.push(e);
      },
    });
    expect(instrumented.sessions.step).not.toBe(run.sessions.step); // instrumented sessions are never the cached ones
    expect(compiles.length).toBe(gradAccum > 1 && placement === 'graph' ? 2 : 1);
    expect(emitted.some((e) => e.op === 'linear' && e.pass === 'forward')).toBe(true);
    expect(emitted.some((e) => e.op === 'linear' && e.pass === 'backward')).toBe(true);
    expect(emitted.every((e) => e.to >= e.from)).toBe(true);
    expect(await byHand(instrumented)).toEqual(fromTune);
  });
});
