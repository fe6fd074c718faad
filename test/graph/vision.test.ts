// The vision graph's structure without PyTorch: tokens per tile, which tensors a feature layer needs, the patch
// embedding against a direct convolution, tiles computed independently, and the float64 erf it relies on.
// Agreement with transformers' maths is test/reference/llava-vision.test.ts.
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { Tape } from '../../src/graph/autodiff.js';
import { GraphBuilder } from '../../src/graph/graph-builder.js';
import { initializerLookup } from '../../src/graph/transformer.js';
import { compileVisionEncoder, tileTokens, towerPositions, VISION_IO, visionFeatures } from '../../src/graph/vision.js';
import type { LlavaConfig } from '../../src/model/llava-config.js';
import { createSession, floatTensor } from '../../src/runtime/session.js';
import { PATCH, randomPixels, randomVisionParams, TEXT_HIDDEN, TILE, tinyLlava } from './vision-fixture.js';

const GRID = TILE / PATCH;

async function run(model: ReturnType<typeof compileVisionEncoder>, pixels: Float64Array, tiles: number): Promise<Float64Array> {
  const { session } = await createSession(model, 'cpu', { float64: true });
  const out = await session.run({ [VISION_IO.pixels]: floatTensor(pixels, [tiles, 3, TILE, TILE]) });
  await session.release();
  return out[VISION_IO.features].data as Float64Array;
}

describe('vision tower graph', () => {
  it('counts the image tokens of a tile as transformers selects them', () => {
    const onevision = tinyLlava('llava_onevision');
    const llava = tinyLlava('llava');
    expect([towerPositions(onevision.vision), tileTokens(onevision)]).toEqual([GRID * GRID, GRID * GRID]);
    expect([towerPositions(llava.vision), tileTokens(llava)]).toEqual([GRID * GRID + 1, GRID * GRID]);
    expect(tileTokens(tinyLlava('llava', {}, { vision_feature_select_strategy: 'full' }))).toBe(GRID * GRID + 1);
    // "default" drops position 0 whatever the tower, as LlavaOnevisionModel does: with SigLIP that is a patch.
    expect(tileTokens(tinyLlava('llava_onevision', {}, { vision_feature_select_strategy: 'default' }))).toBe(GRID * GRID - 1);
  });

  it('reads the layers up to the selected hidden state, never post_layernorm', () => {
    const read = (c: LlavaConfig) => {
      const params = randomVisionParams(c);
      const g = new GraphBuilder('reads');
      const names = new Set<string>();
      const stored = initializerLookup(g, params);
      const lookup = (name: string) => (names.add(name), stored(name));
      visionFeatures(new Tape(g), c, lookup, g.input('px', 'float32', [1, 3, TILE, TILE]));
      return [...names];
    };
    const llava = read(tinyLlava('llava')); // 3 layers, feature layer −2
    expect(llava.filter((n) => n.includes('encoder.layers.1.')).length).toBeGreaterThan(0);
    expect(llava.filter((n) => n.includes('encoder.layers.2.') || n.includes('post_layernorm'))).toEqual([]);
    expect(llava).toContain('vision_tower.vision_model.pre_layrnorm.weight');
    const last = read(tinyLlava('llava', {}, { vision_feature_layer: -1 }));
    expect(last.filter((n) => n.includes('encoder.layers.2.')).length).toBeGreaterThan(0);
    expect(read(tinyLlava('llava_onevision', {}, { vision_feature_layer: 0 })).filter((n) => n.includes('encoder.'))).toEqual([]);
  });

  it('embeds patches as the stride-p convolution, flattened row by row, plus positions', async () => {
    const c = tinyLlava('llava_onevision', {}, { vision_feature_layer: 0 });
    const params = randomVisionParams(c, 5);
    const g = new GraphBuilder('embeddings', 'float64');
    const px = g.input('px', 'float64', [1, 3, TILE, TILE]);
    g.output(visionFeatures(new Tape(g), c, initializerLookup(g, params, new Map(), 'float64'), px), 'h');
    const session = await ort.InferenceSession.create(g.toModel());
    const pixels = randomPixels(1, TILE, 6);
    const got = (await session.run({ px: new ort.Tensor('float64', pixels, [1, 3, TILE, TILE]) })).h.data as Float64Array;
    const e = 'vision_tower.vision_model.embeddings.';
    const w = params.get(`${e}patch_embedding.weight`)!.data; // [H, 3, p, p]
    const b = params.get(`${e}patch_embedding.bias`)!.data;
    const pos = params.get(`${e}position_embedding.weight`)!.data; // [P, H]
    const h = c.vision.hiddenSize;
    let worst = 0;
    for (let row = 0; row < GRID; row++) {
      for (let col = 0; col < GRID; col++) {
        const patch = row * GRID + col;
        for (let o = 0; o < h; o++) {
          let acc = b[o] + pos[patch * h + o];
          for (let ch = 0; ch < 3; ch++) {
            for (let i = 0; i < PATCH; i++) {
              for (let j = 0; j < PATCH; j++) {
                acc += w[((o * 3 + ch) * PATCH + i) * PATCH + j] * pixels[(ch * TILE + row * PATCH + i) * TILE + col * PATCH + j];
              }
            }
          }
          worst = Math.max(worst, Math.abs(got[patch * h + o] - acc));
        }
      }
    }
    expect(worst).toBeLessThan(1e-12);
  });

  it('computes each tile on its own: two tiles at once equal two runs of one', async () => {
    for (const kind of ['llava_onevision', 'llava'] as const) {
      const c = tinyLlava(kind);
      const params = randomVisionParams(c, 2);
      const pair = randomPixels(2, TILE, 3);
      const both = await run(compileVisionEncoder({ config: c, params, tiles: 2, dtype: 'float64' }), pair, 2);
      const one = compileVisionEncoder({ config: c, params, tiles: 1, dtype: 'float64' });
      const half = pair.length / 2;
      const each = [...(await run(one, pair.slice(0, half), 1)), ...(await run(one, pair.slice(half), 1))];
      expect(both.length).toBe(2 * tileTokens(c) * TEXT_HIDDEN);
      expect(Math.max(...each.map((x, i) => Math.abs(x - both[i])))).toBeLessThan(1e-12);
    }
  });

  it('refuses a feature layer outside the hidden states', () => {
    const c = { ...tinyLlava('llava'), featureLayer: -5 }; // 3 layers: hidden states −4..3
    expect(() => compileVisionEncoder({ config: c, params: randomVisionParams(c), tiles: 1 })).toThrow(/vision feature layer -5 is outside -4\.\.3/);
  });
});

describe('GraphBuilder.erf in float64 (onnxruntime has only a float32 Erf)', () => {
  it('agrees with the error function to double precision', async () => {
    // math.erf of Python at these points.
    const points: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [-0.5, -0.5204998778130465],
      [1.5, 0.9661051464753108],
      [-2.75, -0.9998993780778803],
      [4.2, 0.9999999971445058],
      [5.9, 0.9999999999999999],
      [-9, -1],
    ];
    const g = new GraphBuilder('erf', 'float64');
    g.output(g.erf(g.input('x', 'float64', [points.length])), 'y');
    const session = await ort.InferenceSession.create(g.toModel());
    const y = (await session.run({ x: new ort.Tensor('float64', Float64Array.from(points, ([x]) => x), [points.length]) })).y.data as Float64Array;
    points.forEach(([, want], i) => expect(Math.abs(y[i] - want)).toBeLessThan(4e-15));
  });
});
