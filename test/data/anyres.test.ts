// Tiling plans, token counts and the packing of vision features, against LLaVA-OneVision as Hugging Face
// computes them (test/reference/torch_anyres.py: the processor's counts, the model's pack_image_features in
// float64 PyTorch).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expandPinpoints,
  imageTokenCount,
  packedGrid,
  parsePlacement,
  planTiles,
  pyFloorDiv,
  selectBestResolution,
  type Placement,
  type TileGeometry,
} from '../../src/data/anyres.js';
import { assembleImageFeatures, fusedMultiplyAdd } from '../../src/data/image-features.js';
import { Rng } from '../../src/util/rng.js';
import { needs, PYTHON } from '../support/system-tools.js';

const REFERENCE = new URL('../reference/torch_anyres.py', import.meta.url).pathname;

/** LLaVA-OneVision-Qwen2: SigLIP 384/14 (27×27 patches a tile), pinpoints (1x1)…(6x6), anyres_max_9. */
const OV: TileGeometry = { tileSize: 384, patchSize: 14, newline: true };
const OV_PINPOINTS = expandPinpoints('(1x1),...,(6x6)', 384);
const OV_PLACEMENT = parsePlacement('anyres_max_9', OV_PINPOINTS);
/** LLaVA-1.5: CLIP 336/14, pad, no image_newline. */
const LLAVA15: TileGeometry = { tileSize: 336, patchSize: 14, newline: false };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-anyres-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('plans and counts', () => {
  it('expands lmms-lab pinpoint ranges and reads placement names', () => {
    expect(OV_PINPOINTS).toHaveLength(36);
    expect(OV_PINPOINTS.slice(0, 3)).toEqual([[384, 384], [384, 768], [384, 1152]]);
    expect(OV_PLACEMENT).toMatchObject({ kind: 'anyres', maxTiles: 9 });
    expect(parsePlacement('anyres', OV_PINPOINTS)).toMatchObject({ maxTiles: null });
    expect(() => parsePlacement('anyres_max_9', null)).toThrow('image placement anyres_max_9 needs image_grid_pinpoints');
    expect(() => parsePlacement('crop', null)).toThrow(/not one of pad, anyres, anyres_max_N/);
  });

  it('picks the pinpoint that keeps the most resolution, then wastes the least', () => {
    expect(selectBestResolution(384, 384, OV_PINPOINTS)).toEqual([384, 384]);
    expect(selectBestResolution(480, 640, OV_PINPOINTS)).toEqual([768, 768]);
    expect(selectBestResolution(1080, 1920, OV_PINPOINTS)).toEqual([1152, 1920]);
    expect(selectBestResolution(1200, 300, OV_PINPOINTS)).toEqual([1536, 384]);
  });

  it('plans the resize and the centring, the odd pixel of padding after', () => {
    expect(planTiles(480, 640, 384, OV_PLACEMENT)).toEqual({
      height: 480,
      width: 640,
      tiles: 5,
      anyres: { best: [768, 768], resized: [576, 768], offset: [96, 0], grid: [2, 2] },
    });
    expect(planTiles(45, 61, 32, parsePlacement('anyres', [[64, 64]])).anyres).toMatchObject({ resized: [48, 64], offset: [8, 0] });
    expect(planTiles(45, 61, 32, { kind: 'pad' })).toEqual({ height: 45, width: 61, tiles: 1 });
  });

  it('counts the positions of an image from its size', () => {
    // 384² is one grid tile: 729 for the whole image, 27 rows of 27 + a newline each.
    expect(imageTokenCount(384, 384, OV, OV_PLACEMENT)).toBe(729 + 27 * 28);
    // LLaVA-1.5 pads to one tile of 24×24 patches; OneVision's lone tile (several images) adds one newline.
    expect(imageTokenCount(100, 700, LLAVA15, { kind: 'pad' })).toBe(576);
    expect(imageTokenCount(100, 700, OV, { kind: 'pad' })).toBe(730);
  });

  it("uses Python's float floor division, not floor(a / b)", () => {
    expect(pyFloorDiv(1, 0.1)).toBe(9);
    expect(Math.floor(1 / 0.1)).toBe(10);
    expect(pyFloorDiv(54, 1.5)).toBe(36);
    expect(pyFloorDiv(7, 2)).toBe(3);
  });

  it('rounds a fused multiply-add once', () => {
    // 108/70 · 41.5 − 0.5 rounds twice to …425 and once to …43: the bit that decides a bilinear weight.
    expect(108 / 70 * 41.5 - 0.5).toBe(63.528571428571425);
    expect(fusedMultiplyAdd(108 / 70, 41.5, -0.5)).toBe(63.52857142857143);
    expect(fusedMultiplyAdd(0.1, 10, -1)).toBe(5.551115123125783e-17);
    expect([fusedMultiplyAdd(3, 4, 5), fusedMultiplyAdd(-2.5, 2, 0), fusedMultiplyAdd(0, 7, -0.5)]).toEqual([17, -5, -0.5]);
  });

  it('rejects features of the wrong size', () => {
    const plan = planTiles(384, 384, 384, OV_PLACEMENT);
    expect(() => assembleImageFeatures(new Float32Array(10), 4, plan, OV, OV_PLACEMENT, new Float32Array(4))).toThrow(
      'vision features hold 10 values; 2 tiles of 27x27 patches x 4 need 5832',
    );
  });
});

describe('against LLaVA-OneVision in PyTorch', { ...needs('torch') }, () => {
  const HIDDEN = 3;
  // Aspect ratios from square to 1:40, small images that anyres scales up, and large ones that trigger the
  // anyres_max_9 downsample (ratio > 1.1 once the unpadded grid holds over ~11 tiles' worth).
  const SIZES: [number, number][] = [
    [384, 384],
    [480, 640],
    [1200, 300],
    [1080, 1920],
    [1500, 2000],
    [3000, 3000],
    [50, 2000],
    [333, 500],
    [17, 23],
  ];

  interface Spec {
    name: string;
    height: number;
    width: number;
    geometry: TileGeometry;
    placement: Placement;
  }
  const pad: Spec[] = [
    { name: 'pad-ov', height: 100, width: 700, geometry: OV, placement: { kind: 'pad' } },
    { name: 'pad-llava15', height: 100, width: 700, geometry: LLAVA15, placement: { kind: 'pad' } },
  ];
  const specs: Spec[] = [
    ...SIZES.map(([height, width]) => ({ name: `ov-${height}x${width}`, height, width, geometry: OV, placement: OV_PLACEMENT })),
    { name: 'anyres-plain', height: 1500, width: 2000, geometry: OV, placement: parsePlacement('anyres', OV_PINPOINTS) },
    ...pad,
  ];
  const caseOf = (s: Spec) => ({
    height: s.height,
    width: s.width,
    tile_size: s.geometry.tileSize,
    patch_size: s.geometry.patchSize,
    newline: s.geometry.newline,
    placement: s.placement.kind,
    pinpoints: s.placement.kind === 'anyres' ? s.placement.pinpoints : null,
    max_tiles: s.placement.kind === 'anyres' ? s.placement.maxTiles : null,
  });

  it('packs features as pack_image_features does, to float64, and counts as the processor does, exactly', async () => {
    const rng = new Rng(7);
    const inputs = new Map<string, { features: Float64Array; newline: Float64Array | null }>();
    const featureCases = [];
    for (const s of specs) {
      const plan = planTiles(s.height, s.width, s.geometry.tileSize, s.placement);
      const side = Math.floor(s.geometry.tileSize / s.geometry.patchSize);
      const features = Float64Array.from({ length: plan.tiles * side * side * HIDDEN }, () => rng.next() * 2 - 1);
      const newline = s.geometry.newline ? Float64Array.from({ length: HIDDEN }, () => rng.next() * 2 - 1) : null;
      inputs.set(s.name, { features, newline });
      await writeFile(join(dir, `${s.name}.in`), features);
      if (newline) await writeFile(join(dir, `${s.name}.nl`), newline);
      featureCases.push({
        ...caseOf(s),
        name: s.name,
        tiles: plan.tiles,
        hidden: HIDDEN,
        features: join(dir, `${s.name}.in`),
        newline: newline ? join(dir, `${s.name}.nl`) : null,
      });
    }
    // Counts over a spread of sizes: every aspect ratio band and both sides of the 1.1 threshold.
    const countRng = new Rng(11);
    const countSpecs = Array.from({ length: 400 }, () => ({
      height: 1 + Math.floor(countRng.next() ** 2 * 4000),
      width: 1 + Math.floor(countRng.next() ** 2 * 4000),
      geometry: OV,
      placement: OV_PLACEMENT,
    }));
    await writeFile(join(dir, 'spec.json'), JSON.stringify({ features: featureCases, counts: countSpecs.map((s) => caseOf({ ...s, name: '' })) }));
    execFileSync(PYTHON, [REFERENCE, join(dir, 'spec.json'), dir], { stdio: 'pipe' });

    const downsampled: string[] = [];
    for (const s of specs) {
      const { features, newline } = inputs.get(s.name)!;
      const plan = planTiles(s.height, s.width, s.geometry.tileSize, s.placement);
      const ours = assembleImageFeatures(features, HIDDEN, plan, s.geometry, s.placement, newline);
      const ref = new Float64Array((await readFile(join(dir, `${s.name}.f64`))).buffer.slice(0));
      expect(ours.length, s.name).toBe(ref.length);
      expect(ours.length / HIDDEN, `${s.name}: imageTokenCount`).toBe(imageTokenCount(s.height, s.width, s.geometry, s.placement));
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i] - ref[i]));
      // Unpadding and newlines copy values. The downsample's indices and weights are PyTorch's to the bit; its
      // kernel then fuses one multiply-add per axis (x0·w0 + x1·w1 rounded once, not twice), so a value of
      // magnitude < 1 may differ by an ulp or two.
      expect(worst, `${s.name}: largest difference`).toBeLessThanOrEqual(2 * Number.EPSILON);
      const grid = packedGrid(plan, s.geometry, s.placement);
      if (grid && grid.packed[0] !== grid.unpadded[0]) downsampled.push(s.name);
    }
    expect(downsampled).toEqual(['ov-1080x1920', 'ov-1500x2000', 'ov-3000x3000']);

    const counts: number[] = JSON.parse(await readFile(join(dir, 'counts.json'), 'utf8'));
    expect(countSpecs.map((s) => imageTokenCount(s.height, s.width, s.geometry, s.placement))).toEqual(counts);
  });
});
