// Learning without forgetting against a float64 PyTorch reference (test/reference/torch_lwf.py): one SGD step and
// three AdamW steps with CE + L·T²·KL(teacher ‖ model), at several temperatures and weights, with the base model and
// another checkpoint as the teacher. Losses, the CE and KL parts, gradient norms and updates must agree.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initModel, type InitModelOptions } from '../../src/model/init-model.js';
import { parseSafetensors, toFloat32 } from '../../src/model/safetensors.js';
import { DEFAULTS, type LwfOptions, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { needs, PYTHON } from '../support/system-tools.js';
import { EXAMPLES_JSONL, F32_HALF_ULP, referenceBatch, referenceOptimizer, TOLERANCE } from './reference-data.js';

const REFERENCE = new URL('./torch_lwf.py', import.meta.url).pathname;

const MODEL: Omit<InitModelOptions, 'out'> = { arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, tieEmbeddings: true };
const LLAMA: Omit<InitModelOptions, 'out'> = { arch: 'llama', hidden: 32, layers: 2, heads: 4, kvHeads: 1, intermediate: 40, attentionBias: true };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-lwf-'));
  await writeFile(join(dir, 'data.jsonl'), EXAMPLES_JSONL);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

interface RefOut {
  losses: number[];
  ces: number[];
  kls: number[];
  grad_norms: number[];
  kl_grad_norms: number[];
  params: Record<string, { values: number[] }>;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/** Trains with LwF and runs the reference on the same model, teacher and data; returns the worst update error. */
async function compare(name: string, model: Omit<InitModelOptions, 'out'>, lwf: Omit<LwfOptions, 'teacher'> & { teacherSeed?: number }, opts: Partial<TuneOptions>, updateTolerance = TOLERANCE): Promise<RefOut> {
  const base = join(dir, `${name}-base`);
  const out = join(dir, `${name}-out`);
  await initModel({ ...model, out: base, seed: 3 });
  let teacher: string | null = null;
  if (lwf.teacherSeed !== undefined) {
    teacher = join(dir, `${name}-teacher`);
    await initModel({ ...model, out: teacher, seed: lwf.teacherSeed });
  }
  const o: TuneOptions = { ...DEFAULTS, model: base, data: join(dir, 'data.jsonl'), out, seqLen: 16, ...opts, lwf: { weight: lwf.weight, temperature: lwf.temperature, teacher } };
  const steps: { loss: number; ce?: number; kl?: number; gradNorm: number }[] = [];
  const { receipt } = await tune(o, (e) => e.type === 'step' && steps.push({ loss: e.loss, ce: e.crossEntropy, kl: e.lwfKl, gradNorm: e.gradNorm }));

  const spec = {
    model_dir: base,
    trainable: receipt.trainable,
    ...referenceOptimizer(o),
    steps: Array.from({ length: o.steps! }, () => ({ micro_batches: [referenceBatch()] })),
    lwf: { weight: lwf.weight, temperature: lwf.temperature, teacher_dir: teacher },
  };
  await writeFile(join(dir, `${name}-spec.json`), JSON.stringify(spec));
  execFileSync(PYTHON, [REFERENCE, join(dir, `${name}-spec.json`), join(dir, `${name}-ref.json`)], { stdio: 'pipe' });
  const ref = JSON.parse(await readFile(join(dir, `${name}-ref.json`), 'utf8')) as RefOut;

  expect(steps).toHaveLength(ref.losses.length);
  steps.forEach((s, i) => {
    expect(rel(s.loss, ref.losses[i])).toBeLessThan(TOLERANCE);
    expect(rel(s.ce!, ref.ces[i])).toBeLessThan(TOLERANCE);
    // A KL of zero (the first step against the base model itself) is compared absolutely.
    expect(Math.abs(s.kl! - ref.kls[i])).toBeLessThan(TOLERANCE * Math.max(ref.kls[i], 1e-6));
    expect(rel(s.gradNorm, ref.grad_norms[i])).toBeLessThan(TOLERANCE);
  });
  expect(receipt.hyperparameters.lwf).toMatchObject({ weight: lwf.weight, temperature: lwf.temperature });
  expect(receipt.steps.map((s) => s.lwf_kl)).toEqual(steps.map((s) => s.kl));

  const before = new Map(parseSafetensors(await readFile(join(base, 'model.safetensors')), 'base').map((t) => [t.name, toFloat32(t)]));
  const after = new Map(parseSafetensors(await readFile(join(out, 'model.safetensors')), 'out').map((t) => [t.name, toFloat32(t)]));
  expect(Object.keys(ref.params).sort()).toEqual([...receipt.trainable].sort());
  for (const [param, { values }] of Object.entries(ref.params)) {
    const p0 = before.get(param)!;
    const p1 = after.get(param)!;
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < values.length; i++) {
      worst = Math.max(worst, Math.max(0, Math.abs(p1[i] - values[i]) - Math.abs(values[i]) * F32_HALF_ULP));
      scale = Math.max(scale, Math.abs(values[i] - p0[i]));
    }
    if (process.env.NT_REPORT) console.log(`${name} ${param} ${(worst / scale).toExponential(2)}`);
    expect(scale, `${param} should move`).toBeGreaterThan(0);
    expect(worst / scale, `${param} update`).toBeLessThan(updateTolerance);
  }
  return ref;
}

const EVERYTHING = { include: ['.'] };
const SGD: Partial<TuneOptions> = { policy: EVERYTHING, optimizer: 'sgd', lr: 0.5, steps: 1, batchSize: 4, schedule: 'constant', warmupSteps: 0, clipNorm: null };
const ADAMW: Partial<TuneOptions> = {
  policy: EVERYTHING,
  optimizer: 'adamw',
  lr: 1e-2,
  weightDecay: 0.1,
  steps: 3,
  batchSize: 2,
  gradAccum: 2,
  schedule: 'cosine',
  warmupSteps: 1,
  clipNorm: 0.5,
};

describe('LwF matches a float64 PyTorch reference', needs('torch'), () => {
  // Against the base model the first step's KL and its gradient are zero, so one SGD step uses another teacher.
  for (const [weight, temperature] of [[1, 2], [3, 1], [0.5, 4]] as const) {
    it(`one SGD step, teacher another checkpoint, L ${weight}, T ${temperature}`, async () => {
      const ref = await compare(`sgd-${weight}-${temperature}`, MODEL, { weight, temperature, teacherSeed: 11 }, { ...SGD, precision: 'float64' });
      // The term weighs ten times the tolerance at least, so a wrong KL could not pass for a right one.
      expect(ref.kl_grad_norms[0] / ref.grad_norms[0]).toBeGreaterThan(10 * TOLERANCE);
    });
  }

  it('three AdamW steps with accumulation, the base model as teacher, L 1, T 2', async () => {
    const ref = await compare('adamw-base', MODEL, { weight: 1, temperature: 2 }, { ...ADAMW, precision: 'float64' });
    expect(ref.kls[0]).toBe(0);
    expect(ref.kl_grad_norms[2] / ref.grad_norms[2]).toBeGreaterThan(1e-2);
  });

  it('three AdamW steps on llama, teacher another checkpoint, L 2, T 0.7', async () => {
    await compare('adamw-teacher', LLAMA, { weight: 2, temperature: 0.7, teacherSeed: 5 }, { ...ADAMW, precision: 'float64' });
  });

  it('float32 and fused kernels: one SGD step and three AdamW steps within float32 rounding', async () => {
    await compare('sgd-f32', MODEL, { weight: 1, temperature: 2, teacherSeed: 11 }, SGD, 1e-5);
    await compare('adamw-f32', MODEL, { weight: 1, temperature: 2 }, ADAMW, 5e-3);
  });

  // Large models update on the host, from the gradient graph: the LwF term must reach it the same way.
  it('float32 with host-side clipping and optimizer updates', async () => {
    await compare('adamw-host', MODEL, { weight: 1, temperature: 2, teacherSeed: 11 }, { ...ADAMW, optimizerPlacement: 'host' }, 5e-3);
  });
});

describe('LwF with a LoRA adapter', () => {
  it('starts at KL 0 (B is zero, so the adapted model is its teacher) and records both in the receipt', async () => {
    const base = join(dir, 'lora-base');
    await initModel({ ...MODEL, out: base, seed: 3 });
    const kls: number[] = [];
    const o: TuneOptions = {
      ...DEFAULTS,
      model: base,
      data: join(dir, 'data.jsonl'),
      out: join(dir, 'lora-out'),
      seqLen: 16,
      ...ADAMW,
      policy: { preset: 'mlp_gate_up' },
      lora: { rank: 2, alpha: 4, dropout: 0, targets: [] },
      lwf: { weight: 1, temperature: 2, teacher: null },
    };
    const { receipt } = await tune(o, (e) => e.type === 'step' && kls.push(e.lwfKl!));
    expect(kls[0]).toBe(0);
    expect(kls[2]).toBeGreaterThan(0);
    expect(receipt.hyperparameters).toMatchObject({ lora: { rank: 2, alpha: 4 }, lwf: { weight: 1, temperature: 2, teacher_sha256: null } });
  });
});
