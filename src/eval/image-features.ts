// LLaVA image features for the language model, in training and evaluation: the tower and projector are frozen and
// outside the gradient path under every language-model-only policy, so an image's features are the same in every step.
// Each distinct image is run through the compiled vision graph once, its features cached under a key of its bytes,
// the preprocessing and the tower's weights; the train, score and generate steps take them as input embeddings at the
// image positions (graph/transformer.ts ImageInputs), which gives exactly the end-to-end loss and gradients.
// With a cache directory the features also go to disk (feature-file.ts), so a later run skips the tower, and memory
// holds only the most recently used ones: a step reads its micro-batch's images back (ImageFeatureTable).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type ort from 'onnxruntime-node';
import { imageTokenCount, parsePlacement, patchesPerSide, type Placement, type TileGeometry } from '../data/anyres.js';
import type { Example } from '../data/dataset.js';
import type { ImageDataset } from '../data/image-dataset.js';
import type { ImageTextData } from '../data/image-text.js';
import { assembleImageFeatures } from '../data/image-features.js';
import { decodeImage, ImageError, parsePreprocessorConfig, preprocessImage, type ImagePreprocessing } from '../data/image.js';
import type { Kernels } from '../graph/graph-builder.js';
import type { ParamTensor } from '../graph/params.js';
import { compileVisionEncoder, tileTokens, VISION_IO } from '../graph/vision.js';
import { readJsonFile } from '../model/checkpoint.js';
import type { LlavaConfig } from '../model/llava-config.js';
import { IMAGE_NEWLINE, partOf } from '../model/llava-names.js';
import type { StoredTensor } from '../model/safetensors.js';
import { createSessionFor, floatTensor, kernelsFor, type Device, type FloatArray, type SessionHandle } from '../runtime/session.js';
import { DataFileError, ModelFileError, NarrowtuneError, quote } from '../util/errors.js';
import { featureFile, readFeatureFile, writeFeatureFile } from './feature-file.js';

export const PREPROCESSOR_FILE = 'preprocessor_config.json';

export function imagePlacement(c: LlavaConfig): Placement {
  return parsePlacement(c.aspect, c.gridPinpoints);
}

export function imageGeometry(c: LlavaConfig): TileGeometry {
  return { tileSize: c.vision.imageSize, patchSize: c.vision.patchSize, newline: c.hasImageNewline };
}

/** Positions an image of height × width takes in the sequence. */
export function imageTokens(c: LlavaConfig, height: number, width: number): number {
  const placement = imagePlacement(c);
  // A lone tile keeps every position the tower gives (CLIP's class position under "full" too); the anyres grid is
  // made of patch positions only.
  if (placement.kind === 'pad') return tileTokens(c) + (c.hasImageNewline ? 1 : 0);
  return imageTokenCount(height, width, imageGeometry(c), placement);
}

/** The checkpoint's preprocessor_config.json, checked against the tower it feeds. */
export async function readPreprocessing(modelDir: string, c: LlavaConfig): Promise<ImagePreprocessing> {
  const file = join(modelDir, PREPROCESSOR_FILE);
  const pre = parsePreprocessorConfig(await readJsonFile(file), file);
  if (pre.size !== c.vision.imageSize) throw new ModelFileError(file, `size ${pre.size} differs from the vision tower's image_size ${c.vision.imageSize}`);
  if (imagePlacement(c).kind === 'anyres' && tileTokens(c) !== patchesPerSide(imageGeometry(c)) ** 2) {
    throw new ModelFileError(file, 'anyres tiling with the class position kept (vision_feature_select_strategy "full" on a CLIP tower) is not supported');
  }
  return pre;
}

/** sha256 over the tower's, the projector's and image_newline's tensors (canonical names, sorted): the cache's weights key. */
export function visionWeightsHash(tensors: ReadonlyMap<string, StoredTensor>): string {
  const h = createHash('sha256');
  for (const name of [...tensors.keys()].filter((n) => partOf(n) !== 'language').sort()) {
    h.update(name).update('\0').update(createHash('sha256').update(tensors.get(name)!.data).digest());
  }
  return h.digest('hex');
}

export interface ImageFeatureSettings {
  llava: LlavaConfig;
  /** Tower, projector and image_newline by canonical name. */
  vision: ReadonlyMap<string, ParamTensor>;
  weightsHash: string;
  pre: ImagePreprocessing;
  device: Device;
  precision: 'float32' | 'float64';
  kernels?: Kernels;
  threads: number | null;
  /** Directory of the on-disk cache; absent or null: memory only, every image's features held for the run. */
  dir?: string | null;
  /** With `dir`: bytes of features kept in memory, most recently used first (default FEATURE_MEMORY_BYTES). */
  memoryBytes?: number;
}

/** With an on-disk cache, features kept in memory besides it; the rest are read back from disk when a batch needs them. */
export const FEATURE_MEMORY_BYTES = 1024 ** 3;

/** Features by image (dataset.images order), [tokens, hidden] each, from memory or the on-disk cache. */
export interface ImageFeatureTable {
  readonly length: number;
  get(image: number): FloatArray;
}

/** A table over features already in memory. */
export function featureTable(features: readonly FloatArray[]): ImageFeatureTable {
  return { length: features.length, get: (i) => features[i] };
}

/**
 * Image features [tokens, text hidden] by image: computed with the vision graph on first request, then served from
 * memory, or from the cache directory, for any image with the same bytes, preprocessing and tower weights.
 */
export class ImageFeatureCache {
  /** Images the vision graph ran for (misses in memory and on disk). */
  computed = 0;
  /** Features read back from the cache directory. */
  diskReads = 0;
  /** Each path's key as last read: identifies the images a run trained on. */
  readonly keys = new Map<string, string>();
  /** In insertion order, oldest use first: what to drop when over the memory budget. */
  private readonly entries = new Map<string, FloatArray>();
  private held = 0;
  /** Keys whose file this cache has read with its checksum, or written. */
  private readonly verified = new Set<string>();
  private session: Promise<SessionHandle> | null = null;
  private readonly settingsKey: string;
  /** What the disk key adds to the memory key: a file may outlive the run, and providers round differently. */
  private readonly runtimeKey: string;

  constructor(private readonly s: ImageFeatureSettings) {
    const c = s.llava;
    const model = { vision: c.vision, projectorAct: c.projectorAct, featureLayer: c.featureLayer, selectStrategy: c.selectStrategy, newline: c.hasImageNewline };
    this.settingsKey = JSON.stringify([s.pre, imagePlacement(c), model, s.precision, s.weightsHash]);
    this.runtimeKey = JSON.stringify([s.device, s.kernels ?? (s.device === 'auto' ? 'auto' : kernelsFor(s.device))]);
  }

  /** Bytes the features held in memory take. */
  get bytes(): number {
    return this.held;
  }

  /** The features of the PNG or JPEG at `path`; an ImageError names it when it cannot be read or decoded. */
  async features(path: string): Promise<FloatArray> {
    return (await this.entry(path)).features;
  }

  /** The file that holds (or would hold) `path`'s features, once `features(path)` has read it; null without a directory. */
  fileOf(path: string): string | null {
    const key = this.keys.get(path);
    return this.s.dir && key !== undefined ? featureFile(this.s.dir, this.diskKey(key)) : null;
  }

  /** A table over the images of `keys` (as `keys` maps their paths): features stay readable after release(). */
  table(keys: readonly string[]): ImageFeatureTable {
    return {
      length: keys.length,
      get: (i) => {
        const f = this.recall(keys[i]);
        if (f) return f;
        throw new NarrowtuneError('failed_precondition', `${featureFile(this.s.dir!, this.diskKey(keys[i]))}: cached image features changed or vanished during the run`);
      },
    };
  }

  private async entry(path: string): Promise<{ key: string; features: FloatArray }> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw new ImageError(path, `cannot read: ${(err as Error).message}`);
    }
    const key = createHash('sha256').update(bytes).update('\0').update(this.settingsKey).digest('hex');
    this.keys.set(path, key);
    const hit = this.recall(key);
    if (hit) return { key, features: hit };
    const features = await this.compute(path, bytes);
    this.computed++;
    if (this.s.dir) {
      try {
        await writeFeatureFile(this.s.dir, this.diskKey(key), features);
        this.verified.add(key);
      } catch (e) {
        throw new NarrowtuneError('failed_precondition', `feature cache ${this.s.dir}: cannot write: ${(e as Error).message}`, [], { cause: e });
      }
    }
    this.remember(key, features);
    return { key, features };
  }

  private diskKey(key: string): string {
    return createHash('sha256').update(key).update('\0').update(this.runtimeKey).digest('hex');
  }

  /** From memory, else from the directory (a file that does not check out is a miss); null when in neither. */
  private recall(key: string): FloatArray | null {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    if (!this.s.dir) return null;
    const stored = readFeatureFile(this.s.dir, this.diskKey(key), this.s.precision, !this.verified.has(key));
    if (!stored) return null;
    this.verified.add(key);
    this.diskReads++;
    this.remember(key, stored);
    return stored;
  }

  private remember(key: string, features: FloatArray): void {
    this.entries.set(key, features);
    this.held += features.byteLength;
    if (!this.s.dir) return;
    // What is on disk can be read back: keep memory under budget, dropping the least recently used.
    const budget = this.s.memoryBytes ?? FEATURE_MEMORY_BYTES;
    for (const [k, f] of this.entries) {
      if (this.held <= budget) break;
      this.entries.delete(k);
      this.held -= f.byteLength;
    }
  }

  async release(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await (await s).session.release();
  }

  private async compute(path: string, bytes: Uint8Array): Promise<FloatArray> {
    const { llava: c, pre } = this.s;
    const f64 = this.s.precision === 'float64';
    const placement = imagePlacement(c);
    const { plan, pixels } = preprocessImage(await decodeImage(path, pre.alpha, bytes), pre, placement);
    const { session } = await (this.session ??= this.open());
    const S = c.vision.imageSize;
    const tileValues = 3 * S * S;
    const D = c.text.hiddenSize;
    const perTile = tileTokens(c) * D;
    const all = f64 ? new Float64Array(plan.tiles * perTile) : new Float32Array(plan.tiles * perTile);
    // One tile per run: one compiled graph serves every image, whatever its tile count.
    for (let k = 0; k < plan.tiles; k++) {
      const tile = pixels.subarray(k * tileValues, (k + 1) * tileValues);
      const out = await session.run({ [VISION_IO.pixels]: floatTensor(f64 ? Float64Array.from(tile) : tile, [1, 3, S, S]) });
      all.set((out[VISION_IO.features] as ort.Tensor).data as FloatArray, k * perTile);
    }
    const nl = this.s.vision.get(IMAGE_NEWLINE);
    const newline = nl ? (f64 ? Float64Array.from(nl.data) : nl.data) : null;
    const tokens = imageTokens(c, plan.height, plan.width);
    if (placement.kind === 'anyres') return assembleImageFeatures(all, D, plan, imageGeometry(c), placement, newline as typeof all | null);
    const out = f64 ? new Float64Array(tokens * D) : new Float32Array(tokens * D);
    out.set(all);
    if (newline) out.set(newline, all.length);
    return out;
  }

  private open(): Promise<SessionHandle> {
    const { llava, vision, device, precision, kernels, threads } = this.s;
    const build = (k: Kernels) => compileVisionEncoder({ config: llava, params: vision, tiles: 1, dtype: precision, kernels: k });
    return createSessionFor(build, device, { float64: precision === 'float64', kernels, ...(threads === null ? {} : { intraOpThreads: threads }) });
  }
}

/** What datasetImageFeatures reads of a dataset: its distinct images, the lines that first use them, its examples. */
export type ImageSet = Pick<ImageDataset, 'images' | 'imageLines' | 'examples'> & { source: Pick<ImageTextData, 'name' | 'field'> };

/**
 * Every distinct image of the dataset through the cache, in order: table.get(i) is dataset.images[i]'s. An image
 * that cannot be read or decoded fails with its path and the data file's line that first uses it.
 */
export async function datasetImageFeatures(dataset: ImageSet, cache: ImageFeatureCache, hidden: number): Promise<ImageFeatureTable> {
  const keys: string[] = [];
  const lengths: number[] = [];
  for (const [i, ref] of dataset.images.entries()) {
    try {
      // Only the key and length are kept here: with a cache directory the features need not all fit in memory.
      lengths.push((await cache.features(ref.path)).length);
    } catch (err) {
      if (!(err instanceof ImageError)) throw err;
      const where = ref.path === ref.given ? '' : ` (${ref.path})`;
      throw new DataFileError(dataset.source.name, dataset.imageLines[i], `image ${quote(ref.given)}${where}: ${err.problem}`, dataset.source.field);
    }
    keys.push(cache.keys.get(ref.path)!);
  }
  // The counts were planned from the images' headers; a decoded image of another size would misplace features.
  for (const ex of dataset.examples) {
    for (const p of ex.images ?? []) {
      if (lengths[p.image] !== p.count * hidden) throw new Error(`image ${dataset.images[p.image].path}: ${lengths[p.image] / hidden} features for ${p.count} positions`);
    }
  }
  return cache.table(keys);
}

/** The image inputs of one micro-batch laid out as collate lays out its tokens: [B·T, H] features and [B·T, 1] mask. */
export function imageFeeds(examples: readonly Example[], features: ImageFeatureTable, seq: number, batchSize: number, hidden: number, f64: boolean): Record<'embeds' | 'mask', ort.Tensor> {
  const n = batchSize * seq;
  const embeds = f64 ? new Float64Array(n * hidden) : new Float32Array(n * hidden);
  const mask = f64 ? new Float64Array(n) : new Float32Array(n);
  examples.forEach((ex, b) => {
    for (const p of ex.images ?? []) {
      const row = b * seq + p.start;
      // A truncated example keeps an image only whole (image-dataset.ts), so count positions fit.
      embeds.set(features.get(p.image).subarray(0, p.count * hidden), row * hidden);
      mask.fill(1, row, row + p.count);
    }
  });
  return { embeds: floatTensor(embeds, [n, hidden]), mask: floatTensor(mask, [n, 1]) };
}
