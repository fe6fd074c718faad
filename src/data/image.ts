// Images for the vision tower: decode PNG or JPEG, convert to RGB, cut into tiles (pad or anyres), resize with
// Pillow's filters, rescale and normalise to float32 [tiles, 3, size, size], as preprocessor_config.json says.
//
// Decoding is sharp's (libvips, shipped inside npm packages); every pixel operation after it is done here, the
// way Pillow and Hugging Face's image processors do it, so the tiles are bit-identical to theirs.

import { readFile, stat } from 'node:fs/promises';
import type { OutputInfo } from 'sharp';
import { ModelFileError } from '../util/errors.js';
import { planTiles, type Placement, type TilePlan } from './anyres.js';
import { PIL_RESAMPLE, resizeRgb, type Resample, type RgbImage } from './resample.js';

export type { RgbImage } from './resample.js';

/** What the checkpoint's preprocessor_config.json asks for, as plain data. */
export interface ImagePreprocessing {
  /** side of the square tile, in pixels */
  size: number;
  resample: Resample;
  /** pixel value multiplier (1 when do_rescale is false) */
  rescaleFactor: number;
  /** per channel; 0 and 1 when do_normalize is false */
  mean: [number, number, number];
  std: [number, number, number];
  /** pad's fill: LLaVA's tuple(int(x * 255) for x in image_mean) */
  padColour: [number, number, number];
  /**
   * Transparent pixels: `white` composites on white, as Hugging Face's convert_to_rgb (do_convert_rgb) does;
   * `drop` discards alpha, as PIL's convert('RGB') in LLaVA's training code does.
   */
  alpha: 'white' | 'drop';
  /** image_grid_pinpoints, when the file has them (anyres) */
  pinpoints: [number, number][] | null;
}

/** An image that cannot be read or decoded; `path` names it. */
export class ImageError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path}: ${problem}`);
    this.name = 'ImageError';
  }
}

/** [plan.tiles, 3, size, size]: the tower's input for one image. */
export interface PreprocessedImage {
  plan: TilePlan;
  pixels: Float32Array;
}

const FORMATS = new Set(['png', 'jpeg']);
/**
 * sharp (and libvips with it) loads on the first image, so text-only runs, and bundles that leave it out such as
 * bench/gpu-pack.sh's, never need its native parts.
 */
let sharpModule: Promise<typeof import('sharp')> | null = null;
async function loadSharp(): Promise<typeof import('sharp')['default']> {
  sharpModule ??= import('sharp');
  return (await sharpModule).default;
}

// sharp's own default (0x3FFF²): a guard against decompression bombs.
const MAX_PIXELS = 0x3fff * 0x3fff;
const CHANNELS = 3;

/** preprocessor_config.json read into ImagePreprocessing; `file` names it in errors. */
export function parsePreprocessorConfig(json: unknown, file: string): ImagePreprocessing {
  const fail = (problem: string): never => {
    throw new ModelFileError(file, problem);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('expected a JSON object');
  const c = json as Record<string, unknown>;
  if (c.do_resize === false) fail('do_resize is false; the vision tower needs tiles of its own size');
  const size = squareSide(c.size, 'size', fail);
  if (c.do_center_crop === true && c.crop_size !== undefined && squareSide(c.crop_size, 'crop_size', fail) !== size) {
    fail(`crop_size differs from size ${size}; a center crop after resizing is not supported`);
  }
  const resampleCode = c.resample ?? 3;
  const resample = typeof resampleCode === 'number' ? PIL_RESAMPLE[resampleCode] : undefined;
  if (!resample) fail(`resample ${JSON.stringify(resampleCode)} is not supported (2 = bilinear, 3 = bicubic)`);
  const rescaleFactor = c.do_rescale === false ? 1 : (c.rescale_factor ?? 1 / 255);
  if (typeof rescaleFactor !== 'number' || !(rescaleFactor > 0)) fail(`rescale_factor must be a positive number`);
  const mean = triple(c.image_mean, 'image_mean', fail);
  const std = triple(c.image_std, 'image_std', fail);
  if (std.some((s) => s <= 0)) fail('image_std must be positive');
  const normalize = c.do_normalize !== false;
  let pinpoints: [number, number][] | null = null;
  if (c.image_grid_pinpoints !== undefined) {
    const raw = c.image_grid_pinpoints;
    const ok = Array.isArray(raw) && raw.length > 0 && raw.every((p) => Array.isArray(p) && p.length === 2 && p.every((v) => Number.isInteger(v) && v > 0));
    if (!ok) fail('image_grid_pinpoints must be a list of [height, width] pairs of positive integers');
    pinpoints = (raw as [number, number][]).map(([h, w]) => [h, w]);
  }
  return {
    size,
    resample: resample!,
    rescaleFactor: rescaleFactor as number,
    mean: normalize ? mean : [0, 0, 0],
    std: normalize ? std : [1, 1, 1],
    padColour: mean.map((m) => Math.trunc(m * 255)) as [number, number, number],
    alpha: c.do_convert_rgb === false ? 'drop' : 'white',
    pinpoints,
  };
}

function squareSide(value: unknown, key: string, fail: (p: string) => never): number {
  if (Number.isInteger(value) && (value as number) > 0) return value as number;
  const v = (value ?? {}) as Record<string, unknown>;
  const side = v.shortest_edge ?? (v.height === v.width ? v.height : undefined);
  if (!Number.isInteger(side) || (side as number) <= 0) fail(`${key} must be {"height": n, "width": n} or {"shortest_edge": n}, got ${JSON.stringify(value)}`);
  return side as number;
}

function triple(value: unknown, key: string, fail: (p: string) => never): [number, number, number] {
  if (!Array.isArray(value) || value.length !== CHANNELS || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    fail(`${key} must be three numbers, got ${JSON.stringify(value)}`);
  }
  return value as [number, number, number];
}

/** A PNG or JPEG file's stored width and height, from its header (before any EXIF orientation, as PIL). */
export async function readImageSize(path: string): Promise<{ width: number; height: number }> {
  let bytes: number;
  try {
    bytes = (await stat(path)).size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageError(path, code === 'ENOENT' ? 'no such file' : `cannot read: ${(err as Error).message}`);
  }
  if (bytes === 0) throw new ImageError(path, 'empty file');
  let meta: { format?: string; width?: number; height?: number };
  try {
    meta = await (await loadSharp())(path, { limitInputPixels: MAX_PIXELS }).metadata();
  } catch (err) {
    throw new ImageError(path, `cannot decode: ${(err as Error).message}`);
  }
  if (!FORMATS.has(meta.format ?? '')) throw new ImageError(path, `a ${meta.format ?? 'unknown'} image; only PNG and JPEG are read`);
  return { width: meta.width!, height: meta.height! };
}

/** A PNG or JPEG file (or its bytes) as 8-bit RGB; `path` names it in errors. EXIF orientation is not applied (as PIL). */
export async function decodeImage(path: string, alpha: ImagePreprocessing['alpha'], bytes?: Uint8Array): Promise<RgbImage> {
  let input: Uint8Array;
  try {
    input = bytes ?? (await readFile(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageError(path, code === 'ENOENT' ? 'no such file' : `cannot read: ${(err as Error).message}`);
  }
  if (input.length === 0) throw new ImageError(path, 'empty file');
  let raw: { data: Buffer; info: OutputInfo };
  try {
    // ICC profiles are ignored, as PIL ignores them: the tower was trained on the stored values.
    const image = (await loadSharp())(input, { ignoreIcc: true, failOn: 'error', limitInputPixels: MAX_PIXELS });
    const { format } = await image.metadata();
    if (!FORMATS.has(format ?? '')) throw new ImageError(path, `a ${format ?? 'unknown'} image; only PNG and JPEG are read`);
    raw = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(path, `cannot decode: ${(err as Error).message}`);
  }
  return toRgb(raw.data, raw.info.width, raw.info.height, raw.info.channels, alpha);
}

function toRgb(src: Uint8Array, width: number, height: number, channels: number, alpha: ImagePreprocessing['alpha']): RgbImage {
  const n = width * height;
  const data = new Uint8Array(n * CHANNELS);
  const grey = channels <= 2;
  const hasAlpha = channels === 2 || channels === 4;
  for (let i = 0; i < n; i++) {
    const s = i * channels;
    const a = hasAlpha && alpha === 'white' ? src[s + channels - 1] : 255;
    for (let c = 0; c < CHANNELS; c++) data[i * CHANNELS + c] = overWhite(src[s + (grey ? 0 : c)], a);
  }
  return { width, height, data };
}

/** Pillow's alpha_composite of one channel over opaque white (AlphaComposite.c's 7-bit fixed point). */
function overWhite(v: number, a: number): number {
  if (a === 255) return v;
  if (a === 0) return 255;
  const PRECISION = 7;
  const coef1 = a << PRECISION;
  const coef2 = (255 << PRECISION) - coef1;
  const t = v * coef1 + 255 * coef2 + (0x80 << PRECISION);
  return (((t >> 8) + t) >> 8) >> PRECISION;
}

/** The tower's input for one image: its tiles in the plan's order, rescaled and normalised, channels first. */
export function preprocessImage(image: RgbImage, pre: ImagePreprocessing, placement: Placement): PreprocessedImage {
  const plan = planTiles(image.height, image.width, pre.size, placement);
  const S = pre.size;
  const tileValues = CHANNELS * S * S;
  const pixels = new Float32Array(plan.tiles * tileValues);
  const table = normaliseTable(pre);
  if (!plan.anyres) {
    writeTile(resizeRgb(expandToSquare(image, pre.padColour), S, S, pre.resample), 0, 0, S, table, pixels, 0);
    return { plan, pixels };
  }
  writeTile(resizeRgb(image, S, S, pre.resample), 0, 0, S, table, pixels, 0);
  const { best, resized, offset, grid } = plan.anyres;
  const canvas = paste(resizeRgb(image, resized[1], resized[0], pre.resample), best[0], best[1], offset[0], offset[1], [0, 0, 0]);
  for (let r = 0; r < grid[0]; r++) {
    for (let c = 0; c < grid[1]; c++) writeTile(canvas, r * S, c * S, S, table, pixels, (1 + r * grid[1] + c) * tileValues);
  }
  return { plan, pixels };
}

/** LLaVA's expand2square: the image centred on a square of `colour`, the odd pixel of margin after it. */
export function expandToSquare(image: RgbImage, colour: [number, number, number]): RgbImage {
  const { width, height } = image;
  if (width === height) return image;
  const side = Math.max(width, height);
  return paste(image, side, side, Math.floor((side - height) / 2), Math.floor((side - width) / 2), colour);
}

function paste(image: RgbImage, height: number, width: number, top: number, left: number, colour: number[]): RgbImage {
  const data = new Uint8Array(height * width * CHANNELS);
  for (let i = 0; i < height * width; i++) data.set(colour, i * CHANNELS);
  const row = image.width * CHANNELS;
  for (let y = 0; y < image.height; y++) data.set(image.data.subarray(y * row, (y + 1) * row), ((y + top) * width + left) * CHANNELS);
  return { width, height, data };
}

/**
 * Every byte's value per channel, in Hugging Face's float32 steps: rescale (float64 product, stored as float32),
 * then (x - mean) / std in float32.
 */
function normaliseTable(pre: ImagePreprocessing): Float32Array {
  const table = new Float32Array(CHANNELS * 256);
  for (let c = 0; c < CHANNELS; c++) {
    const mean = Math.fround(pre.mean[c]);
    const std = Math.fround(pre.std[c]);
    for (let v = 0; v < 256; v++) table[c * 256 + v] = Math.fround(Math.fround(Math.fround(v * pre.rescaleFactor) - mean) / std);
  }
  return table;
}

/** The S×S square at (top, left) of `image`, channels first, at `out[offset]`. */
function writeTile(image: RgbImage, top: number, left: number, S: number, table: Float32Array, out: Float32Array, offset: number): void {
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const p = ((y + top) * image.width + x + left) * CHANNELS;
      for (let c = 0; c < CHANNELS; c++) out[offset + (c * S + y) * S + x] = table[c * 256 + image.data[p + c]];
    }
  }
}
