// LoRA against an independent float64 PyTorch implementation (test/reference/torch_lora.py): one SGD step and three
// AdamW steps agree as the full-weight trainer does (test/trainer/torch-reference.test.ts), and an adapter written
// by narrowtune, read the way PEFT reads it, gives the logits of narrowtune's merged model.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/eval/evaluate.js';
import { paramsOf } from '../../src/graph/params.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { initModel, type InitModelOptions } from '../../src/model/init-model.js';
import { parseSafetensors, toFloat32 } from '../../src/model/safetensors.js';
import { resolvePolicy } from '../../src/policy/policy.js';
import { microBatchIndices, padLength } from '../../src/data/batches.js';
import { LORA_IO } from '../../src/graph/lora.js';
import type { ParamTensor } from '../../src/graph/params.js';
import { dropoutMasks, type LoraPlan, planLora } from '../../src/trainer/lora.js';
import { DEFAULTS, type LoraOptions, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { needs, PYTHON } from '../support/system-tools.js';
import { EXAMPLES, EXAMPLES_JSONL, F32_HALF_ULP, referenceBatch, referenceOptimizer, TOLERANCE } from './reference-data.js';

const REFERENCE = new URL('./torch_lora.py', import.meta.url).pathname;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-lora-ref-'));
  await writeFile(join(dir, 'data.jsonl'), EXAMPLES_JSONL);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

interface RefOut {
  losses: number[];
  grad_norms: number[];
  params: Record<string, { shape: number[]; values: number[] }>;
}

function python(mode: 'train' | 'logits', name: string, spec: unknown): Promise<unknown> {
  return (async () => {
    await writeFile(join(dir, `${name}-spec.json`), JSON.stringify(spec));
    execFileSync(PYTHON, [REFERENCE, mode, join(dir, `${name}-spec.json`), join(dir, `${name}-ref.json`)], { stdio: 'pipe' });
    return JSON.parse(await readFile(join(dir, `${name}-ref.json`), 'utf8'));
  })();
}

const float32 = (t: { dtype: 'F32' | 'F16' | 'BF16'; data: Uint8Array; name: string; shape: number[] }) => toFloat32(t);

/**
 * With dropout the masks follow the micro-batches, so the reference takes the trainer's: each micro-batch's rows in
 * the order tune() draws them, and each target's mask cut from the padded [B, S, in] to the reference's [B, T, in].
 */
function droppedBatches(o: TuneOptions, plan: LoraPlan, params: ReadonlyMap<string, ParamTensor>, step: number) {
  const full = referenceBatch();
  const t = full.input_ids[0].length;
  const s = padLength(EXAMPLES.map((e) => ({ inputIds: e.input_ids, labels: e.labels })), o.seqLen);
  return Array.from({ length: o.gradAccum }, (_, k) => {
    const micro = step * o.gradAccum + k;
    const rows = microBatchIndices(EXAMPLES.length, o.batchSize, o.seed, micro);
    const masks = dropoutMasks(plan, params, o.batchSize * s, o.seed, micro, o.precision === 'float64');
    return {
      input_ids: rows.map((r) => full.input_ids[r]),
      targets: rows.map((r) => full.targets[r]),
      masks: Object.fromEntries(
        plan.layout.targets.map((w) => {
          const m = masks.get(LORA_IO.mask(w))!;
          const inp = m.length / (o.batchSize * s);
          const cut = rows.map((_, b) => Array.from({ length: t }, (_, p) => Array.from(m.subarray((b * s + p) * inp, (b * s + p + 1) * inp))));
          return [w.replace(/\.weight$/, ''), cut];
        }),
      ),
    };
  });
}

/** Our trainer and the reference from the same initial A and B (planLora: what tune() starts from). */
async function compare(name: string, model: Omit<InitModelOptions, 'out'>, opts: Partial<TuneOptions>, lora: LoraOptions, updateTolerance = TOLERANCE): Promise<void> {
  const base = join(dir, `${name}-base`);
  const out = join(dir, `${name}-out`);
  await initModel({ ...model, out: base, seed: 3 });
  const o: TuneOptions = { ...DEFAULTS, model: base, data: join(dir, 'data.jsonl'), out, seqLen: 16, lora, ...opts };
  const steps: { loss: number; gradNorm: number }[] = [];
  const { receipt } = await tune(o, (e) => e.type === 'step' && steps.push({ loss: e.loss, gradNorm: e.gradNorm }));
  expect(receipt.frozen_unchanged).toBe(true);

  const params = paramsOf(await loadCheckpoint(base));
  const plan = planLora(lora, o.seed, params, resolvePolicy(o.policy, [...params.keys()]).trainable);
  expect(receipt.trainable).toEqual(plan.trainable);
  const ref = (await python('train', name, {
    model_dir: base,
    trainable: plan.trainable,
    lora: {
      rank: lora.rank,
      alpha: lora.alpha,
      targets: plan.layout.targets,
      init: Object.fromEntries([...plan.init].map(([n, t]) => [n, { shape: t.shape, values: Array.from(t.data) }])),
    },
    ...referenceOptimizer(o),
    steps: Array.from({ length: o.steps! }, (_, s) => ({ micro_batches: lora.dropout > 0 ? droppedBatches(o, plan, params, s) : [referenceBatch()] })),
  })) as RefOut;

  steps.forEach((s, i) => {
    expect(Math.abs(s.loss - ref.losses[i]) / Math.abs(ref.losses[i])).toBeLessThan(TOLERANCE);
    expect(Math.abs(s.gradNorm - ref.grad_norms[i]) / ref.grad_norms[i]).toBeLessThan(TOLERANCE);
  });
  const written = new Map(parseSafetensors(await readFile(join(out, 'adapter_model.safetensors')), 'adapter').map((t) => [t.name.replace(/^base_model\.model\./, ''), float32(t)]));
  expect([...written.keys()].sort()).toEqual(Object.keys(ref.params).sort());
  let moved = 0;
  for (const [param, { values }] of Object.entries(ref.params)) {
    const p0 = plan.init.get(param)!.data;
    const p1 = written.get(param)!;
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < values.length; i++) {
      worst = Math.max(worst, Math.max(0, Math.abs(p1[i] - values[i]) - Math.abs(values[i]) * F32_HALF_ULP));
      scale = Math.max(scale, Math.abs(values[i] - p0[i]));
    }
    if (process.env.NT_REPORT) console.log(`${name} ${param} ${scale === 0 ? 'unmoved' : (worst / scale).toExponential(2)}`);
    if (scale === 0) {
      // B starts at zero, so A's first gradient is zero: unmoved here and in the reference alike.
      expect(worst, `${param} stays`).toBe(0);
      continue;
    }
    moved++;
    expect(worst / scale, `${param} update`).toBeLessThan(updateTolerance);
  }
  expect(moved).toBeGreaterThanOrEqual(Object.keys(ref.params).length / 2);
}

const MODELS: [string, Omit<InitModelOptions, 'out'>][] = [
  ['qwen2 (GQA, qkv bias, tied embeddings)', { arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, tieEmbeddings: true }],
  ['llama (attention bias, one kv head)', { arch: 'llama', hidden: 32, layers: 2, heads: 4, kvHeads: 1, intermediate: 40, attentionBias: true }],
  ['qwen3 (q/k norm, head_dim ≠ hidden/heads)', { arch: 'qwen3', hidden: 24, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 40 }],
];
// Every projection of both layers, rank 4, alpha 8 (scaling 2), as the paper's recipe adapts the MLP at alpha/r < 1 too.
const LORA: LoraOptions = { rank: 4, alpha: 8, dropout: 0, targets: ['_proj'] };
const SGD: Partial<TuneOptions> = { optimizer: 'sgd', lr: 0.5, steps: 1, batchSize: 4, schedule: 'constant', warmupSteps: 0, clipNorm: null };
const ADAMW: Partial<TuneOptions> = { optimizer: 'adamw', lr: 1e-2, weightDecay: 0.1, steps: 3, batchSize: 2, gradAccum: 2, schedule: 'cosine', warmupSteps: 1, clipNorm: 0.5 };

describe('LoRA matches a float64 PyTorch reference', needs('torch'), () => {
  MODELS.forEach(([label, model], i) => {
    it(`${label}: one SGD step`, async () => {
      await compare(`sgd${i}`, model, { ...SGD, precision: 'float64' }, LORA);
    });
    it(`${label}: three AdamW steps with accumulation, clipping, weight decay and cosine schedule`, async () => {
      await compare(`adamw${i}`, model, { ...ADAMW, precision: 'float64' }, LORA);
    });
  });

  it('float32: the MLP preset as targets, within float32 rounding', async () => {
    await compare('adamw-f32', MODELS[0][1], { ...ADAMW, policy: { preset: 'mlp_gate_up' } }, { ...LORA, rank: 2, alpha: 1, targets: [] }, 5e-3);
  });

  it('dropout: one SGD step and three AdamW steps with the trainer’s seeded masks', async () => {
    const dropout = { ...LORA, dropout: 0.25 };
    await compare('sgd-dropout', MODELS[0][1], { ...SGD, precision: 'float64' }, dropout);
    await compare('adamw-dropout', MODELS[0][1], { ...ADAMW, precision: 'float64' }, dropout);
  });

  it('a PEFT adapter written by narrowtune, read as PEFT reads it, gives the logits of the merged model', async () => {
    const base = join(dir, 'peft-base');
    await initModel({ ...MODELS[1][1], out: base, seed: 5 });
    const common = { ...DEFAULTS, ...ADAMW, model: base, data: join(dir, 'data.jsonl'), seqLen: 16, lora: { ...LORA, targets: ['layers\\.1\\.', 'layers\\.0\\.mlp'] } };
    await tune({ ...common, out: join(dir, 'peft-adapter') });
    await tune({ ...common, out: join(dir, 'peft-merged'), mergeAdapter: true });
    const batch = referenceBatch();
    const ref = (await python('logits', 'peft', { adapter_dir: join(dir, 'peft-adapter'), base_dir: base, merged_dir: join(dir, 'peft-merged'), ...batch })) as {
      adapter: number[];
      merged: number[];
      loss: number;
      adapted: string[];
    };
    // target_modules is a regex here (not every layer): PEFT selects exactly the adapted modules.
    expect(ref.adapted).toHaveLength(7 + 3);
    const scale = Math.max(...ref.adapter.map(Math.abs));
    const worst = Math.max(...ref.adapter.map((x, i) => Math.abs(x - ref.merged[i])));
    expect(worst / scale).toBeLessThan(1e-6); // the merged file stores float32 weights
    const ours = await evaluate({ model: join(dir, 'peft-adapter'), datasets: [{ name: 'd', path: join(dir, 'data.jsonl'), kind: 'loss', role: null, maxNewTokens: 1, answerRegex: '' }], batchSize: 4, seqLen: 16, device: 'cpu' });
    expect(Math.abs(ours.datasets[0].loss - ref.loss) / ref.loss).toBeLessThan(TOLERANCE);
  });
});
