// Image features (vision tower + projector, graph/vision.ts) against an independent float64 PyTorch implementation
// of transformers' SigLIP/CLIP towers and LLaVA projector (test/reference/torch_llava_vision.py), for tiny random
// models read from the same config.json and safetensors, in both precisions and both attention lowerings.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FloatDType, Kernels } from '../../src/graph/graph-builder.js';
import type { ParamTensor } from '../../src/graph/params.js';
import { compileVisionEncoder, tileTokens, VISION_IO } from '../../src/graph/vision.js';
import { parseLlavaConfig, type LlavaConfig } from '../../src/model/llava-config.js';
import { fromFloat32, serializeSafetensors } from '../../src/model/safetensors.js';
import { createSession, floatTensor } from '../../src/runtime/session.js';
import { randomPixels, randomVisionParams, TEXT_HIDDEN, TILE, tinyLlavaJson } from '../graph/vision-fixture.js';
import { needs, PYTHON } from '../support/system-tools.js';

const REFERENCE = new URL('./torch_llava_vision.py', import.meta.url).pathname;

interface Model {
  name: string;
  json: Record<string, unknown>;
}

const MODELS: Model[] = [
  { name: 'SigLIP (LLaVA-OneVision): tanh GELU, feature layer −1, full', json: tinyLlavaJson('llava_onevision') },
  { name: 'CLIP (LLaVA-1.5): quick_gelu, class position, pre_layrnorm, feature layer −2, default', json: tinyLlavaJson('llava') },
  {
    name: 'SigLIP with an erf-GELU tower, a tanh-GELU projector, feature layer 1',
    json: tinyLlavaJson('llava_onevision', { hidden_act: 'gelu' }, { projector_hidden_act: 'gelu_pytorch_tanh', vision_feature_layer: 1 }),
  },
];
const TILES = [1, 2];

/**
 * Relative to max(1, |reference|); measured: float64 ≤ 1.7e-15, float32 ≤ 2.2e-6 (both lowerings alike). The float64
 * bound holds for head widths whose 1/√hd is a float32 number (vision-fixture.ts says why).
 */
const LOWERINGS: { dtype: FloatDType; kernels: Kernels; tolerance: number }[] = [
  { dtype: 'float64', kernels: 'portable', tolerance: 1e-11 },
  { dtype: 'float64', kernels: 'fused', tolerance: 1e-11 },
  { dtype: 'float32', kernels: 'fused', tolerance: 2e-5 },
  { dtype: 'float32', kernels: 'portable', tolerance: 2e-5 },
];

interface Prepared {
  config: LlavaConfig;
  params: Map<string, ParamTensor>;
  pixels: Float64Array[];
  reference: { shape: number[]; values: number[] }[];
}

let dir: string;
const prepared = new Map<string, Prepared>();

async function prepare(model: Model, index: number): Promise<Prepared> {
  const modelDir = join(dir, `model-${index}`);
  await mkdir(modelDir);
  const config = parseLlavaConfig(model.json, join(modelDir, 'config.json'));
  const params = randomVisionParams(config, 11 + index);
  const tensors = [...params].map(([name, p]) => ({ name, dtype: 'F32' as const, shape: p.shape, data: fromFloat32(p.data, 'F32') }));
  await writeFile(join(modelDir, 'config.json'), JSON.stringify(model.json));
  await writeFile(join(modelDir, 'model.safetensors'), serializeSafetensors(tensors));
  const pixels = TILES.map((tiles, k) => randomPixels(tiles, TILE, 100 * index + k));
  const spec = { model_dir: modelDir, pixels: pixels.map((values, k) => ({ shape: [TILES[k], 3, TILE, TILE], values: Array.from(values) })) };
  await writeFile(join(modelDir, 'spec.json'), JSON.stringify(spec));
  execFileSync(PYTHON, [REFERENCE, join(modelDir, 'spec.json'), join(modelDir, 'out.json')], { stdio: 'pipe' });
  const reference = (JSON.parse(await readFile(join(modelDir, 'out.json'), 'utf8')) as { features: Prepared['reference'] }).features;
  return { config, params, pixels, reference };
}

describe('image features match a float64 PyTorch reference', needs('torch'), () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nt-llava-vision-'));
    for (const [i, m] of MODELS.entries()) prepared.set(m.name, await prepare(m, i));
  }, 60_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const model of MODELS) {
    for (const { dtype, kernels, tolerance } of LOWERINGS) {
      it(`${model.name}: ${dtype}, ${kernels} attention`, async () => {
        const { config, params, pixels, reference } = prepared.get(model.name)!;
        for (const [k, tiles] of TILES.entries()) {
          const { session } = await createSession(compileVisionEncoder({ config, params, tiles, dtype, kernels }), 'cpu', { float64: dtype === 'float64' });
          const input = dtype === 'float64' ? pixels[k] : Float32Array.from(pixels[k]);
          const out = (await session.run({ [VISION_IO.pixels]: floatTensor(input, [tiles, 3, TILE, TILE]) }))[VISION_IO.features];
          await session.release();
          const want = reference[k];
          expect(out.dims).toEqual([tiles, tileTokens(config), TEXT_HIDDEN]);
          expect(want.shape).toEqual([...out.dims]);
          const got = out.data as Float32Array | Float64Array;
          let worst = 0;
          want.values.forEach((w, i) => (worst = Math.max(worst, Math.abs(got[i] - w) / Math.max(1, Math.abs(w)))));
          expect(worst).toBeLessThan(tolerance);
        }
      });
    }
  }
});
