// Training a LLaVA model's language model on image-text data, end to end against an independent float64 PyTorch
// reference (torch_llava_train.py: PIL preprocessing, tower, projector, packing, LLaVA's inputs_embeds, the decoder
// and optimizer of torch_reference.py): the image features of real PNG files, and the losses, gradient norms and
// updates of SGD and AdamW steps, for LLaVA-OneVision (anyres_max_9, image_newline) and LLaVA-1.5 (pad).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IGNORE_INDEX } from '../../src/data/dataset.js';
import { loadImageDataset, type ImageDataset } from '../../src/data/image-dataset.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { paramTensor } from '../../src/graph/params.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import type { LlavaArch, LlavaConfig } from '../../src/model/llava-config.js';
import { partOf } from '../../src/model/llava-names.js';
import { loadModel } from '../../src/model/load-model.js';
import { readSafetensorsFile } from '../../src/model/safetensors-file.js';
import { toFloat32 } from '../../src/model/safetensors.js';
import { resolvePolicy } from '../../src/policy/policy.js';
import { ImageFeatureCache, imageTokens, readPreprocessing, visionWeightsHash } from '../../src/eval/image-features.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { needs, PYTHON } from '../support/system-tools.js';
import { F32_HALF_ULP, referenceOptimizer, TOLERANCE } from './reference-data.js';

const REFERENCE = new URL('./torch_llava_train.py', import.meta.url).pathname;
const SEQ_LEN = 512;
/** Features: relative to max(1, |reference|), as llava-vision.test.ts (float64 tower: measured ≤ 1.7e-15 there). */
const FEATURE_TOLERANCE = 1e-11;

/** Pictures a person can read, of the sizes that exercise the placements (tiles of 32 pixels). */
const IMAGES: Record<string, (file: string) => Promise<unknown>> = {
  // Wider than tall: a 1×2 anyres grid, unpadded in height.
  'squares.png': async (file) => {
    const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } }).png().toBuffer();
    return sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } })
      .composite([{ input: red, left: 4, top: 6 }, { input: red, left: 26, top: 18 }])
      .png()
      .toFile(file);
  },
  // Taller than wide: unpadded in width.
  'tall.png': async (file) => {
    const bar = await sharp({ create: { width: 6, height: 40, channels: 3, background: { r: 20, g: 40, b: 200 } } }).png().toBuffer();
    return sharp({ create: { width: 24, height: 56, channels: 3, background: { r: 250, g: 250, b: 240 } } })
      .composite([{ input: bar, left: 9, top: 8 }])
      .png()
      .toFile(file);
  },
  // A 4×4 grid whose 14×16 unpadded patches exceed anyres_max_9's 9 tiles: LLaVA-OneVision's bilinear downsample.
  'stripes.png': (file) => {
    const [w, h] = [128, 112];
    const px = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 3;
        px[i] = (x * 2) & 255;
        px[i + 1] = Math.floor(y / 8) % 2 ? 230 : 30;
        px[i + 2] = (x + y) % 64 < 32 ? 200 : 60;
      }
    }
    return sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
  },
};

/** Four conversations: one image, two images in one turn, the big grid, an image after the text. */
const DATA = [
  { image: 'squares.png', conversations: [{ from: 'human', value: '<image>\nHow many squares?' }, { from: 'gpt', value: 'Two.' }] },
  { image: ['squares.png', 'tall.png'], conversations: [{ from: 'human', value: '<image>\n<image>\nWhich is taller?' }, { from: 'gpt', value: 'The second.' }] },
  { image: 'stripes.png', conversations: [{ from: 'human', value: '<image>\nWhat do you see?' }, { from: 'gpt', value: 'Stripes.' }] },
  { image: 'tall.png', conversations: [{ from: 'human', value: 'What colour is the bar?\n<image>' }, { from: 'gpt', value: 'Blue.' }] },
];

const SGD: Partial<TuneOptions> = { optimizer: 'sgd', lr: 0.5, steps: 1, batchSize: 4, schedule: 'constant', warmupSteps: 0, clipNorm: null };
// Batch size × accumulation = the dataset: every step sees every example, in any order.
const ADAMW: Partial<TuneOptions> = { optimizer: 'adamw', lr: 1e-2, weightDecay: 0.1, steps: 3, batchSize: 2, gradAccum: 2, schedule: 'cosine', warmupSteps: 1, clipNorm: 0.5 };
const RUNS: { name: string; policy: 'mlp_gate_up' | 'full'; opts: Partial<TuneOptions> }[] = [
  { name: 'mlp_gate_up, one SGD step', policy: 'mlp_gate_up', opts: SGD },
  { name: 'mlp_gate_up, three AdamW steps', policy: 'mlp_gate_up', opts: ADAMW },
  { name: 'full, one SGD step', policy: 'full', opts: SGD },
  { name: 'full, three AdamW steps', policy: 'full', opts: ADAMW },
];
const MODELS: { arch: LlavaArch; label: string }[] = [
  { arch: 'llava-onevision', label: 'LLaVA-OneVision (SigLIP, anyres_max_9, image_newline)' },
  { arch: 'llava', label: 'LLaVA-1.5 (CLIP, pad)' },
];

interface TrainOut {
  losses: number[];
  grad_norms: number[];
  params: Record<string, { shape: number[]; values: number[] }>;
}
interface Reference {
  features: { shape: number[]; values: number[] }[];
  runs: TrainOut[];
}
interface Prepared {
  base: string;
  llava: LlavaConfig;
  dataset: ImageDataset;
  trainable: string[][];
  reference: Reference;
}

let dir: string;
const prepared = new Map<LlavaArch, Prepared>();

function options(base: string, run: (typeof RUNS)[number], out: string): TuneOptions {
  return { ...DEFAULTS, ...run.opts, model: base, data: join(dir, 'data.jsonl'), out, seqLen: SEQ_LEN, precision: 'float64', policy: { preset: run.policy } };
}

/** The trainer's examples, right-padded into one [B][T] micro-batch with the images of each row in order. */
function referenceBatch(dataset: ImageDataset, padId: number) {
  const t = Math.max(...dataset.examples.map((e) => e.inputIds.length));
  const pad = <T>(xs: T[], fill: T) => [...xs, ...Array<T>(t - xs.length).fill(fill)];
  return {
    input_ids: dataset.examples.map((e) => pad(e.inputIds, padId)),
    labels: dataset.examples.map((e) => pad(e.labels, IGNORE_INDEX)),
    images: dataset.examples.map((e) => e.images!.map((p) => p.image)),
  };
}

async function prepare(arch: LlavaArch): Promise<Prepared> {
  const base = join(dir, arch);
  await initLlavaModel({ arch, out: base, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, seed: 5 });
  const model = await loadModel(base);
  const llava = model.llava!.config;
  const tokenizer = await loadTokenizer(base);
  // As the trainer reads the data (setup.ts loadLlavaData).
  const dataset = await loadImageDataset(join(dir, 'data.jsonl'), tokenizer, {
    seqLen: SEQ_LEN,
    imageTokenId: llava.imageTokenIndex,
    tokensFor: (ref) => imageTokens(llava, ref.height, ref.width),
  });
  const language = [...model.tensors.keys()].filter((n) => partOf(n) === 'language');
  const trainable = RUNS.map((r) => resolvePolicy({ preset: r.policy }, language).trainable);
  const batch = referenceBatch(dataset, tokenizer.padId);
  const spec = {
    model_dir: base,
    images: dataset.images.map((r) => r.path),
    runs: RUNS.map((r, k) => {
      const o = options(base, r, '');
      return {
        trainable: trainable[k],
        ...referenceOptimizer(o),
        steps: Array.from({ length: o.steps! }, () => ({ micro_batches: [batch] })),
      };
    }),
  };
  await writeFile(join(dir, `${arch}-spec.json`), JSON.stringify(spec));
  execFileSync(PYTHON, [REFERENCE, join(dir, `${arch}-spec.json`), join(dir, `${arch}-ref.json`)], { stdio: 'pipe' });
  const reference = JSON.parse(await readFile(join(dir, `${arch}-ref.json`), 'utf8')) as Reference;
  return { base, llava, dataset, trainable, reference };
}

/** Largest |ours − reference| over max(1, |reference|). */
function worstRelative(ours: ArrayLike<number>, ref: number[]): number {
  let worst = 0;
  ref.forEach((w, i) => (worst = Math.max(worst, Math.abs(ours[i] - w) / Math.max(1, Math.abs(w)))));
  return worst;
}

function report(line: string): void {
  if (process.env.NT_REPORT) console.log(line);
}

describe('LLaVA language-model training matches a float64 PyTorch reference end to end', needs('torch'), () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nt-llava-train-'));
    for (const [name, draw] of Object.entries(IMAGES)) await draw(join(dir, name));
    await writeFile(join(dir, 'data.jsonl'), `${DATA.map((d) => JSON.stringify(d)).join('\n')}\n`);
    for (const { arch } of MODELS) prepared.set(arch, await prepare(arch));
  }, 60_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const { arch, label } of MODELS) {
    it(`${label}: image features of PNG files, as the trainer computes them`, async () => {
      const { base, llava, dataset, reference } = prepared.get(arch)!;
      // The cache as setup.ts builds it for a float64 run.
      const model = await loadModel(base);
      const vision = new Map([...model.tensors].filter(([n]) => partOf(n) !== 'language').map(([n, t]) => [n, paramTensor(t)]));
      const cache = new ImageFeatureCache({
        llava, vision, weightsHash: visionWeightsHash(model.tensors), pre: await readPreprocessing(base, llava), device: 'cpu', precision: 'float64', kernels: 'portable', threads: null,
      });
      try {
        for (const [i, ref] of dataset.images.entries()) {
          const ours = await cache.features(ref.path);
          const want = reference.features[i];
          expect(want.shape).toEqual([imageTokens(llava, ref.height, ref.width), llava.text.hiddenSize]);
          expect(ours.length).toBe(want.values.length);
          const worst = worstRelative(ours, want.values);
          report(`${arch} features ${ref.given} [${want.shape}] ${worst.toExponential(2)}`);
          expect(worst, ref.given).toBeLessThan(FEATURE_TOLERANCE);
        }
      } finally {
        await cache.release();
      }
      // The image positions hold the image token and are trained on nowhere (the reference ignores them itself too).
      for (const ex of dataset.examples) {
        for (const p of ex.images!) {
          expect(ex.inputIds.slice(p.start, p.start + p.count).every((id) => id === llava.imageTokenIndex)).toBe(true);
          expect(ex.labels.slice(p.start, p.start + p.count).every((l) => l === IGNORE_INDEX)).toBe(true);
        }
      }
      // Three grids: unpadded in height (44 positions), in width (56), and downsampled to nine tiles' worth (159).
      if (arch === 'llava-onevision') expect(dataset.images.map((r) => imageTokens(llava, r.height, r.width))).toEqual([44, 56, 159]);
    });

    RUNS.forEach((run, k) => {
      it(`${label}: ${run.name}`, async () => {
        const p = prepared.get(arch)!;
        const ref = p.reference.runs[k];
        const out = join(dir, `${arch}-${k}`);
        const steps: { loss: number; gradNorm: number }[] = [];
        const { receipt } = await tune(options(p.base, run, out), (e) => e.type === 'step' && steps.push({ loss: e.loss, gradNorm: e.gradNorm }));
        expect([...receipt.trainable].sort()).toEqual([...p.trainable[k]].sort());
        expect(steps).toHaveLength(ref.losses.length);
        steps.forEach((s, i) => {
          const [dl, dg] = [Math.abs(s.loss - ref.losses[i]) / ref.losses[i], Math.abs(s.gradNorm - ref.grad_norms[i]) / ref.grad_norms[i]];
          report(`${arch} ${run.name} step ${i + 1}: loss ${dl.toExponential(2)} grad norm ${dg.toExponential(2)}`);
          expect(dl).toBeLessThan(TOLERANCE);
          expect(dg).toBeLessThan(TOLERANCE);
        });

        const before = (await loadModel(p.base)).tensors;
        const after = (await loadModel(out)).tensors;
        let worstUpdate = 0;
        for (const [name, { values }] of Object.entries(ref.params)) {
          // Updates, not weights: an update is small next to its weight. The checkpoint stores float32, so each
          // written weight may be off by half an ulp whatever precision trained it; that rounding is taken out.
          const p0 = toFloat32(before.get(name)!);
          const p1 = toFloat32(after.get(name)!);
          let worst = 0;
          let scale = 0;
          values.forEach((v, i) => {
            worst = Math.max(worst, Math.abs(p1[i] - v) - Math.abs(v) * F32_HALF_ULP);
            scale = Math.max(scale, Math.abs(v - p0[i]));
          });
          expect(scale, `${name} should move`).toBeGreaterThan(0);
          expect(worst / scale, `${name} update`).toBeLessThan(TOLERANCE);
          worstUpdate = Math.max(worstUpdate, worst / scale);
        }
        report(`${arch} ${run.name}: worst update ${worstUpdate.toExponential(2)} over ${Object.keys(ref.params).length} tensors`);

        // Only the trained tensors' bytes differ: the tower, projector and image_newline come out byte-identical.
        const file = async (d: string) => new Map((await readSafetensorsFile(join(d, 'model.safetensors'))).map((t) => [t.name, Buffer.from(t.data)]));
        const [b, a] = [await file(p.base), await file(out)];
        const changed = [...a].filter(([n, bytes]) => !b.get(n)!.equals(bytes)).map(([n]) => n.replace(/^language_model\./, ''));
        expect(changed.sort()).toEqual([...p.trainable[k]].sort());
        const visionNames = [...a.keys()].filter((n) => !n.startsWith('language_model.'));
        expect(visionNames.length).toBeGreaterThan(0);
        if (arch === 'llava-onevision') expect(visionNames).toContain('image_newline');
      });
    });
  }
});
