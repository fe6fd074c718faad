// The on-disk image-feature cache: a second run reads features from disk instead of running the vision graph and
// gets the same bits; a truncated, edited or foreign file is recomputed; other weights or precision use another file;
// under a memory budget a table reads its features back from disk.
import { readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/eval/evaluate.js';
import { datasetImageFeatures, ImageFeatureCache, readPreprocessing, visionWeightsHash, type ImageFeatureSettings } from '../../src/eval/image-features.js';
import { paramTensor } from '../../src/graph/params.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { partOf } from '../../src/model/llava-names.js';
import { loadModel } from '../../src/model/load-model.js';
import { DEFAULTS } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { tempDir } from '../trainer/fixtures.js';

let dir: string;
let model: string;
let settings: ImageFeatureSettings;
let other: ImageFeatureSettings;
const image = (n: number) => join(dir, `sq${n}.png`);

/** `n` red squares on a white 40×32 image (anyres: a base tile and a 2-tile grid). */
async function squares(file: string, n: number): Promise<void> {
  const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } }).png().toBuffer();
  const composite = Array.from({ length: n }, (_, k) => ({ input: red, left: 2 + ((k * 13) % 30), top: 2 + ((k * 11) % 22) }));
  await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(composite).png().toFile(file);
}

async function settingsOf(modelDir: string, cacheDir: string): Promise<ImageFeatureSettings> {
  const ckpt = await loadModel(modelDir);
  const llava = ckpt.llava!.config;
  const vision = new Map([...ckpt.tensors].filter(([n]) => partOf(n) !== 'language').map(([n, t]) => [n, paramTensor(t)]));
  return { llava, vision, weightsHash: visionWeightsHash(ckpt.tensors), pre: await readPreprocessing(modelDir, llava), device: 'cpu', precision: 'float32', threads: null, dir: cacheDir };
}

/** The features of `paths` from a fresh cache over `s` (a new run), with its counters. */
async function run(s: ImageFeatureSettings, paths: string[]) {
  const cache = new ImageFeatureCache(s);
  try {
    const features = [];
    for (const p of paths) features.push(Float32Array.from(await cache.features(p)));
    return { features, computed: cache.computed, diskReads: cache.diskReads, files: paths.map((p) => cache.fileOf(p)!) };
  } finally {
    await cache.release();
  }
}

beforeAll(async () => {
  dir = await tempDir('nt-feature-cache-');
  model = join(dir, 'model');
  await initLlavaModel({ arch: 'llava-onevision', out: model, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 5 });
  // The same shapes with other weights.
  await initLlavaModel({ arch: 'llava-onevision', out: join(dir, 'other'), hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 6 });
  for (const n of [1, 2, 3]) await squares(image(n), n);
  settings = await settingsOf(model, join(dir, 'cache'));
  other = await settingsOf(join(dir, 'other'), join(dir, 'cache'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('on-disk image-feature cache', () => {
  it('a second run reads every image from disk, bit for bit, without running the vision graph', async () => {
    const memoryOnly = await run({ ...settings, dir: null }, [image(1), image(2)]);
    const first = await run(settings, [image(1), image(2)]);
    expect([first.computed, first.diskReads]).toEqual([2, 0]);
    expect((await readdir(settings.dir!)).sort()).toEqual(first.files.map((f) => f.slice(settings.dir!.length + 1)).sort());
    const second = await run(settings, [image(1), image(2)]);
    expect([second.computed, second.diskReads]).toEqual([0, 2]);
    for (const k of [0, 1]) {
      expect(Buffer.from(second.features[k].buffer).equals(Buffer.from(first.features[k].buffer))).toBe(true);
      expect(Buffer.from(first.features[k].buffer).equals(Buffer.from(memoryOnly.features[k].buffer))).toBe(true);
    }
  });

  it('recomputes a truncated, edited or foreign file, and rewrites it', async () => {
    const { files, features } = await run(settings, [image(3)]);
    const file = files[0];
    const good = await readFile(file);
    const damage: [string, () => Promise<void>][] = [
      ['truncated', () => truncate(file, good.length - 4)],
      ['one data byte flipped', () => writeFile(file, Buffer.from(good).fill(good[good.length - 1] ^ 1, good.length - 1))],
      ['another image', async () => writeFile(file, await readFile((await run(settings, [image(1)])).files[0]))],
      ['not a feature file', () => writeFile(file, 'hello')],
    ];
    for (const [what, spoil] of damage) {
      await spoil();
      const again = await run(settings, [image(3)]);
      expect([what, again.computed, again.diskReads]).toEqual([what, 1, 0]);
      expect(Buffer.from(again.features[0].buffer).equals(Buffer.from(features[0].buffer))).toBe(true);
      expect((await readFile(file)).equals(good)).toBe(true);
    }
  });

  it('other tower weights or another precision use another file', async () => {
    const mine = await run(settings, [image(1)]);
    const theirs = await run(other, [image(1)]);
    expect(theirs.files[0]).not.toBe(mine.files[0]);
    expect(theirs.computed).toBe(1);
    const f64 = await run({ ...settings, precision: 'float64' }, [image(1)]);
    expect(f64.files[0]).not.toBe(mine.files[0]);
    expect(f64.computed).toBe(1);
  });

  it('under a memory budget of 0 the table reads each image back from disk when asked', async () => {
    const cache = new ImageFeatureCache({ ...settings, memoryBytes: 0 });
    const images = [image(1), image(2)].map((path) => ({ path, given: path, height: 32, width: 40 }));
    const hidden = settings.llava.text.hiddenSize;
    const table = await datasetImageFeatures({ images, imageLines: [1, 2], examples: [], source: { name: 'x.jsonl', field: 'data' } }, cache, hidden);
    await cache.release();
    expect(cache.bytes).toBe(0);
    const reads = cache.diskReads;
    const again = table.get(1);
    expect(cache.diskReads).toBe(reads + 1);
    const want = (await run(settings, [image(2)])).features[0];
    expect(Buffer.from(Float32Array.from(again).buffer).equals(Buffer.from(want.buffer))).toBe(true);
    await rm(cache.fileOf(image(1))!);
    expect(() => table.get(0)).toThrow(/cached image features changed or vanished during the run/);
  });

  it('evaluate --feature-cache: the second evaluation runs no vision tower and scores the same', async () => {
    const data = join(dir, 'choice.jsonl');
    const lines = [1, 2, 3].map((n) => ({ image: `sq${n}.png`, prompt: '<image>\nHow many squares?', choices: ['1', '2', '3'], answer: String(n) }));
    await writeFile(data, lines.map((l) => JSON.stringify(l)).join('\n'));
    const o = { model, datasets: [{ name: 'count', path: data, kind: 'choice' as const, role: null, maxNewTokens: 1, answerRegex: '' }], batchSize: 3, seqLen: 64, device: 'cpu' as const, featureCache: join(dir, 'eval-cache') };
    const first = await evaluate(o);
    const second = await evaluate(o);
    expect(first.images).toEqual({ files: 3, visionRuns: 3 });
    expect(second.images).toEqual({ files: 3, visionRuns: 0 });
    expect(second.datasets).toEqual(first.datasets);
  });

  it('tune --feature-cache: the second run runs no vision tower and writes the same weights as a run without the cache', async () => {
    const data = join(dir, 'count.jsonl');
    const lines = [1, 2, 3].map((n) => ({ image: `sq${n}.png`, conversations: [{ from: 'human', value: '<image>\nHow many?' }, { from: 'gpt', value: String(n) }] }));
    await writeFile(data, lines.map((l) => JSON.stringify(l)).join('\n'));
    const o = { ...DEFAULTS, model, data, lr: 1e-2, steps: 3, batchSize: 2, seqLen: 96, warmupSteps: 0 };
    const runs = [];
    for (const [name, featureCache] of [['plain', null], ['first', join(dir, 'tune-cache')], ['second', join(dir, 'tune-cache')]] as const) {
      const out = join(dir, `tuned-${name}`);
      const { receipt } = await tune({ ...o, out, featureCache }, () => {});
      runs.push({ visionRuns: receipt.data_stats.vision_runs, weights: await readFile(join(out, 'model.safetensors')) });
    }
    expect(runs.map((r) => r.visionRuns)).toEqual([3, 3, 0]);
    expect(runs[1].weights.equals(runs[0].weights) && runs[2].weights.equals(runs[0].weights)).toBe(true);
  });
});
