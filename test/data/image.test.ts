// Image decoding and preprocessing: tiles bit-identical to PIL + Hugging Face's image processor (reference in
// test/reference/torch_anyres.py), pad and anyres placement on pictures a person can read, and errors that name
// the file.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePlacement, type Placement } from '../../src/data/anyres.js';
import {
  decodeImage,
  expandToSquare,
  ImageError,
  parsePreprocessorConfig,
  preprocessImage,
  type ImagePreprocessing,
} from '../../src/data/image.js';
import { resizeRgb, type RgbImage } from '../../src/data/resample.js';
import { Rng } from '../../src/util/rng.js';
import { needs, PYTHON } from '../support/system-tools.js';

const REFERENCE = new URL('../reference/torch_anyres.py', import.meta.url).pathname;

/** LLaVA-OneVision's preprocessor_config.json (SigLIP), with a small tile so the reference runs fast. */
const ONEVISION = {
  crop_size: { height: 32, width: 32 },
  do_convert_rgb: true,
  do_normalize: true,
  do_pad: true,
  do_rescale: true,
  do_resize: true,
  image_grid_pinpoints: [1, 2, 3].flatMap((i) => [1, 2, 3].map((j) => [32 * i, 32 * j])),
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { height: 32, width: 32 },
};
/** LLaVA-1.5's (CLIP), bilinear instead of bicubic to cover the second filter. */
const CLIP = {
  crop_size: { height: 24, width: 24 },
  do_center_crop: true,
  do_normalize: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 2,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 24 },
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-image-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

function noise(width: number, height: number, channels: number, seed: number): Buffer {
  const rng = new Rng(seed);
  return Buffer.from(Array.from({ length: width * height * channels }, () => rng.nextU32() & 255));
}

async function writeImage(name: string, raw: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4): Promise<string> {
  const file = join(dir, name);
  const image = sharp(raw, { raw: { width, height, channels } });
  await (name.endsWith('.jpg') ? image.jpeg({ quality: 90 }) : image.png()).toFile(file);
  return file;
}

/** White canvas with filled red squares at the given (left, top, side). */
function squares(width: number, height: number, boxes: [number, number, number][]): Buffer {
  const raw = Buffer.alloc(width * height * 3, 255);
  for (const [left, top, side] of boxes) {
    for (let y = top; y < top + side; y++) for (let x = left; x < left + side; x++) raw.set([220, 20, 20], (y * width + x) * 3);
  }
  return raw;
}

/** 4-connected regions of pixels that are clearly red (R high, G low) in channel-first tile `t`. */
function redRegions(pixels: Float32Array, tile: number, S: number): number {
  const plane = S * S;
  const red = (p: number) => pixels[tile * 3 * plane + p] > 0.4 && pixels[tile * 3 * plane + plane + p] < -0.4;
  const seen = new Uint8Array(plane);
  let regions = 0;
  for (let p = 0; p < plane; p++) {
    if (seen[p] || !red(p)) continue;
    regions++;
    const stack = [p];
    seen[p] = 1;
    while (stack.length) {
      const q = stack.pop()!;
      const [y, x] = [Math.floor(q / S), q % S];
      for (const [ny, nx] of [[y - 1, x], [y + 1, x], [y, x - 1], [y, x + 1]]) {
        const n = ny * S + nx;
        if (ny >= 0 && ny < S && nx >= 0 && nx < S && !seen[n] && red(n)) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
  }
  return regions;
}

describe('preprocessor_config.json', () => {
  it('reads LLaVA-OneVision and LLaVA-1.5 settings', () => {
    const ov = parsePreprocessorConfig({ ...ONEVISION, size: { height: 384, width: 384 } }, 'p.json');
    expect(ov).toMatchObject({ size: 384, resample: 'bicubic', mean: [0.5, 0.5, 0.5], padColour: [127, 127, 127], alpha: 'white' });
    expect(ov.pinpoints).toHaveLength(9);
    const clip = parsePreprocessorConfig(CLIP, 'p.json');
    expect(clip).toMatchObject({ size: 24, resample: 'bilinear', padColour: [122, 116, 104], pinpoints: null });
    expect(parsePreprocessorConfig({ ...CLIP, do_normalize: false, do_convert_rgb: false }, 'p.json')).toMatchObject({
      mean: [0, 0, 0],
      std: [1, 1, 1],
      alpha: 'drop',
    });
  });

  it('names the file and the setting it cannot honour', () => {
    expect(() => parsePreprocessorConfig({ ...CLIP, resample: 1 }, 'm/preprocessor_config.json')).toThrow(
      'm/preprocessor_config.json: resample 1 is not supported (2 = bilinear, 3 = bicubic)',
    );
    expect(() => parsePreprocessorConfig({ ...CLIP, crop_size: { height: 20, width: 20 } }, 'p.json')).toThrow(/crop_size differs/);
    expect(() => parsePreprocessorConfig({ ...CLIP, image_std: [1, 1] }, 'p.json')).toThrow(/image_std must be three numbers/);
  });
});

describe('decodeImage', () => {
  it('reads PNG and JPEG; composites alpha on white or drops it; spreads grey to three channels', async () => {
    const rgba = Buffer.from([10, 20, 30, 255, 10, 20, 30, 0, 200, 100, 50, 128]);
    const file = await writeImage('rgba.png', rgba, 3, 1, 4);
    expect([...(await decodeImage(file, 'white')).data]).toEqual([10, 20, 30, 255, 255, 255, 227, 177, 152]);
    expect([...(await decodeImage(file, 'drop')).data]).toEqual([10, 20, 30, 10, 20, 30, 200, 100, 50]);
    const grey = await decodeImage(await writeImage('grey.png', Buffer.from([0, 77, 255]), 3, 1, 1), 'white');
    expect([...grey.data]).toEqual([0, 0, 0, 77, 77, 77, 255, 255, 255]);
    const jpeg = await decodeImage(await writeImage('red.jpg', squares(16, 8, [[0, 0, 8]]), 16, 8, 3), 'white');
    expect([jpeg.width, jpeg.height]).toEqual([16, 8]);
  });

  it('fails naming the file: missing, empty, not an image, not PNG or JPEG, truncated', async () => {
    const png = await readFile(await writeImage('n.png', noise(20, 20, 3, 1), 20, 20, 3));
    const cases: [string, Buffer | null, RegExp][] = [
      ['missing.png', null, /missing\.png: no such file/],
      ['empty.png', Buffer.alloc(0), /empty\.png: empty file/],
      ['text.png', Buffer.from('not an image'), /text\.png: cannot decode/],
      ['a.webp', await sharp(png).webp().toBuffer(), /a\.webp: a webp image; only PNG and JPEG are read/],
      ['cut.png', png.subarray(0, png.length >> 1), /cut\.png: cannot decode/],
    ];
    for (const [name, bytes, message] of cases) {
      if (bytes) await writeFile(join(dir, name), bytes);
      const err = await decodeImage(join(dir, name), 'white').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageError);
      expect((err as ImageError).message).toMatch(message);
      expect((err as ImageError).path).toBe(join(dir, name));
    }
  });
});

describe('placement on pictures', () => {
  const pre = parsePreprocessorConfig(ONEVISION, 'p.json');

  it('pad squares a wide picture with the mean colour and keeps its three squares', async () => {
    const image = await decodeImage(await writeImage('three.png', squares(96, 48, [[8, 16, 16], [40, 16, 16], [72, 16, 16]]), 96, 48, 3), 'white');
    const square = expandToSquare(image, pre.padColour);
    expect([square.width, square.height]).toEqual([96, 96]);
    expect([...square.data.subarray(0, 3)]).toEqual([127, 127, 127]);
    const { plan, pixels } = preprocessImage(image, pre, { kind: 'pad' });
    expect(plan.tiles).toBe(1);
    expect(pixels).toHaveLength(3 * 32 * 32);
    // The band above the picture is the mean colour, i.e. about zero after normalising.
    expect(pixels[0]).toBeCloseTo(127 / 255 / 0.5 - 1, 6);
    expect(redRegions(pixels, 0, 32)).toBe(3);
  });

  it('anyres keeps the whole picture first, then the grid by rows', async () => {
    // 64×32: two squares, one per half; the pinpoint [32, 64] fits it exactly (two tiles side by side).
    const image = await decodeImage(await writeImage('two.png', squares(64, 32, [[8, 8, 16], [40, 8, 16]]), 64, 32, 3), 'white');
    const placement = parsePlacement('anyres_max_9', pre.pinpoints);
    const { plan, pixels } = preprocessImage(image, pre, placement);
    expect(plan.anyres).toEqual({ best: [32, 64], resized: [32, 64], offset: [0, 0], grid: [1, 2] });
    expect([0, 1, 2].map((t) => redRegions(pixels, t, 32))).toEqual([2, 1, 1]);
  });
});

describe('resizeRgb', () => {
  it('keeps a constant image constant and copies at the same size', () => {
    const flat: RgbImage = { width: 37, height: 23, data: new Uint8Array(37 * 23 * 3).fill(201) };
    for (const r of ['bicubic', 'bilinear'] as const) {
      expect(resizeRgb(flat, 11, 50, r).data.every((v) => v === 201)).toBe(true);
      const same = resizeRgb(flat, 37, 23, r);
      expect(same.data).toEqual(flat.data);
      expect(same.data).not.toBe(flat.data);
    }
  });
});

describe('against PIL and the Hugging Face image processor', { ...needs('torch') }, () => {
  interface Case {
    name: string;
    file: string;
    pre: ImagePreprocessing;
    placement: Placement;
    alpha?: 'white' | 'drop';
  }

  it('gives bit-identical tiles (pad and anyres, bicubic and bilinear, PNG with and without alpha, JPEG)', async () => {
    const ov = parsePreprocessorConfig(ONEVISION, 'p.json');
    const clip = parsePreprocessorConfig(CLIP, 'p.json');
    const anyres = parsePlacement('anyres_max_9', ov.pinpoints);
    const files = {
      wide: await writeImage('wide.png', noise(61, 45, 3, 2), 61, 45, 3),
      tall: await writeImage('tall.png', noise(17, 70, 3, 3), 17, 70, 3),
      alpha: await writeImage('alpha.png', noise(40, 30, 4, 4), 40, 30, 4),
      big: await writeImage('big.png', noise(200, 130, 3, 5), 200, 130, 3),
      photo: await writeImage('photo.jpg', squares(50, 40, [[5, 5, 12], [30, 20, 9]]), 50, 40, 3),
      grey: await writeImage('grey.png', noise(33, 9, 1, 6), 33, 9, 1),
    };
    const cases: Case[] = [
      { name: 'wide-pad', file: files.wide, pre: ov, placement: { kind: 'pad' } },
      { name: 'wide-anyres', file: files.wide, pre: ov, placement: anyres },
      { name: 'tall-anyres', file: files.tall, pre: ov, placement: anyres },
      { name: 'big-anyres', file: files.big, pre: ov, placement: anyres },
      { name: 'alpha-white', file: files.alpha, pre: ov, placement: anyres },
      { name: 'alpha-drop', file: files.alpha, pre: { ...ov, alpha: 'drop' }, placement: { kind: 'pad' } },
      { name: 'photo-anyres', file: files.photo, pre: ov, placement: anyres },
      { name: 'grey-clip-pad', file: files.grey, pre: clip, placement: { kind: 'pad' } },
      { name: 'tall-clip-pad', file: files.tall, pre: clip, placement: { kind: 'pad' } },
    ];
    const spec = {
      pixels: cases.map(({ name, file, pre, placement }) => ({
        name,
        file,
        alpha: pre.alpha,
        size: pre.size,
        resample: pre.resample,
        rescale: pre.rescaleFactor,
        mean: pre.mean,
        std: pre.std,
        pad_colour: pre.padColour,
        placement: placement.kind,
        pinpoints: placement.kind === 'anyres' ? placement.pinpoints : null,
      })),
    };
    await writeFile(join(dir, 'spec.json'), JSON.stringify(spec));
    execFileSync(PYTHON, [REFERENCE, join(dir, 'spec.json'), dir], { stdio: 'pipe' });
    for (const c of cases) {
      const ours = preprocessImage(await decodeImage(c.file, c.pre.alpha), c.pre, c.placement).pixels;
      const ref = new Float32Array((await readFile(join(dir, `${c.name}.f32`))).buffer.slice(0));
      expect(ours.length, c.name).toBe(ref.length);
      let differ = 0;
      for (let i = 0; i < ref.length; i++) if (ours[i] !== ref[i]) differ++;
      expect(differ, `${c.name}: values that differ from PIL + HF`).toBe(0);
    }
  });
});
