// WiSE-FT of LLaVA-style models: the language models interpolate, the tower, projector and image_newline must be
// the same bytes in both and are copied; the output keeps the base's layout, config and companion files. Models of
// two layouts, a text and a LLaVA model, or towers that differ are refused, at MergeModels' request check too.
import { copyFile, mkdir, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MergeModelsRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { initModel } from '../../src/model/init-model.js';
import { toCanonical, toFileName } from '../../src/model/llava-names.js';
import { loadModel } from '../../src/model/load-model.js';
import { mergeModels } from '../../src/model/merge.js';
import { adapterConfigJson } from '../../src/model/peft-adapter.js';
import { fromFloat32, toFloat32, type StoredTensor } from '../../src/model/safetensors.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { parseMergeModels } from '../../src/service/merge-request.js';
import { tempDir } from '../trainer/fixtures.js';
import { lmmsLabConfig } from '../support/llava-configs.js';

let dir: string;
let base: string;
let tuned: string;

const isLanguage = (fileName: string) => fileName.startsWith('language_model.');
const GATE = 'language_model.model.layers.0.mlp.gate_proj.weight';
const TOWER_Q = 'vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight';

/** A copy of `src` whose tensors `change` rewrites (by file name), and optionally renamed; other files copied. */
async function variant(name: string, src: string, change: (t: StoredTensor) => StoredTensor, rename = (n: string) => n): Promise<string> {
  const out = join(dir, name);
  await mkdir(out);
  for (const f of await readdir(src)) if (f !== 'model.safetensors') await copyFile(join(src, f), join(out, f));
  const tensors = await readSafetensorsFile(join(src, 'model.safetensors'));
  await writeSafetensorsFile(join(out, 'model.safetensors'), tensors.map((t) => ({ ...change(t), name: rename(t.name) })));
  return out;
}

/** `t` with 0.01·(i mod 7) added to element i. */
function nudge(t: StoredTensor): StoredTensor {
  const x = toFloat32(t);
  for (let i = 0; i < x.length; i++) x[i] += 0.01 * (i % 7);
  return { ...t, data: fromFloat32(x, t.dtype) };
}

const tensorsOf = async (d: string) => new Map((await readSafetensorsFile(join(d, 'model.safetensors'))).map((t) => [t.name, t]));
const same = (a: StoredTensor, b: StoredTensor) => a.dtype === b.dtype && Buffer.from(a.data).equals(Buffer.from(b.data));

beforeAll(async () => {
  dir = await tempDir('nt-llava-merge-');
  base = join(dir, 'base');
  await initLlavaModel({ arch: 'llava-onevision', out: base, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 11 });
  // What tuning does: every language-model tensor moved, the rest untouched.
  tuned = await variant('tuned', base, (t) => (isLanguage(t.name) ? nudge(t) : t));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('merging LLaVA-style models', () => {
  it('alpha 0 gives the base, alpha 1 the tuned language model; tower, projector and image_newline are copied', async () => {
    const [b, t] = [await tensorsOf(base), await tensorsOf(tuned)];
    for (const alpha of [0, 1]) {
      const out = join(dir, `alpha-${alpha}`);
      const { receipt } = await mergeModels({ base, tuned, alpha, out });
      const m = await tensorsOf(out);
      expect([...m.keys()].sort()).toEqual([...b.keys()].sort());
      for (const [name, x] of m) expect(same(x, isLanguage(name) && alpha === 1 ? t.get(name)! : b.get(name)!), name).toBe(true);
      const vision = [...b.keys()].filter((n) => !isLanguage(n)).length;
      expect(receipt).toMatchObject({ alpha, tensors: b.size, interpolated: b.size - vision, llava: { layout: 'hf-legacy', copied: vision } });
      for (const f of ['config.json', 'preprocessor_config.json', 'processor_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
        expect(await readFile(join(out, f), 'utf8'), f).toBe(await readFile(join(base, f), 'utf8'));
      }
      expect((await loadModel(out)).llava?.layout).toBe('hf-legacy');
    }

    // In between: (1 − α)·base + α·tuned in float64, rounded once.
    await mergeModels({ base, tuned, alpha: 0.25, out: join(dir, 'quarter') });
    const q = toFloat32((await tensorsOf(join(dir, 'quarter'))).get(GATE)!);
    const [x, y] = [toFloat32(b.get(GATE)!), toFloat32(t.get(GATE)!)];
    expect(Array.from(q)).toEqual(Array.from(x, (v, i) => Math.fround(v + 0.25 * (y[i] - v))));
  });

  it('keeps the lmms-lab layout and its names', async () => {
    const rename = (n: string) => toFileName('lmms-lab', toCanonical('hf-legacy', n)!);
    const lmmsBase = await variant('lmms-base', base, (t) => t, rename);
    const lmmsTuned = await variant('lmms-tuned', base, (t) => (isLanguage(t.name) ? nudge(t) : t), rename);
    const hf = JSON.parse(await readFile(join(base, 'config.json'), 'utf8')) as Record<string, unknown>;
    const lmmsConfig = JSON.stringify(lmmsLabConfig(hf, '/checkpoints/siglip-tiny', true));
    for (const d of [lmmsBase, lmmsTuned]) await writeFile(join(d, 'config.json'), lmmsConfig);
    const out = join(dir, 'lmms-merged');
    const { receipt } = await mergeModels({ base: lmmsBase, tuned: lmmsTuned, alpha: 1, out });
    expect(receipt.llava?.layout).toBe('lmms-lab');
    const [m, t] = [await tensorsOf(out), await tensorsOf(lmmsTuned)];
    expect([...m.keys()].sort()).toEqual([...t.keys()].sort());
    expect(m.has('model.mm_projector.0.weight')).toBe(true);
    for (const [name, x] of m) expect(same(x, t.get(name)!), name).toBe(true);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))).toEqual(JSON.parse(lmmsConfig));

    // Another layout than the base's is refused, here and at MergeModels' request check.
    await expect(mergeModels({ base, tuned: lmmsTuned, alpha: 0.5, out: join(dir, 'mixed') })).rejects.toThrow(/stores its tensors in the lmms-lab layout where the base uses hf-legacy/);
  });

  it('refuses towers, projectors or image_newlines that differ, naming the first such tensor', async () => {
    const tower = await variant('tower-moved', tuned, (t) => (t.name === TOWER_Q ? nudge(t) : t));
    await expect(mergeModels({ base, tuned: tower, alpha: 0.5, out: join(dir, 'refused') })).rejects.toThrow(
      new RegExp(`differs from the base in ${TOWER_Q.replace(/\./g, '\\.')}; merging LLaVA-style models interpolates their language models only`),
    );
    const newline = await variant('newline-moved', tuned, (t) => (t.name === 'image_newline' ? nudge(t) : t));
    await expect(mergeModels({ base, tuned: newline, alpha: 0.5, out: join(dir, 'refused') })).rejects.toThrow(/differs from the base in image_newline;/);
    const text = join(dir, 'text');
    await initModel({ arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, out: text });
    await expect(mergeModels({ base, tuned: text, alpha: 0.5, out: join(dir, 'refused') })).rejects.toThrow(/is a text-only model where the base is a LLaVA-style one/);
  });

  it('merges a PEFT adapter of the language model (tuned = its base + scaling·B·A); one on the tower is refused', async () => {
    const adapter = async (name: string, module: string): Promise<string> => {
      const d = join(dir, name);
      await mkdir(d);
      await writeFile(join(d, 'adapter_config.json'), JSON.stringify(adapterConfigJson({ rank: 1, alpha: 2, dropout: 0, targetModules: `^${module.replace(/\./g, '\\.')}$`, base: '../base' })));
      const [out, inp] = (await tensorsOf(base)).get(`${module}.weight`)!.shape;
      const a = { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32' as const, shape: [1, inp], data: fromFloat32(Float32Array.from({ length: inp }, (_, i) => 0.01 * i), 'F32') };
      const b = { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32' as const, shape: [out, 1], data: fromFloat32(Float32Array.from({ length: out }, (_, i) => 0.5 - 0.02 * i), 'F32') };
      await writeSafetensorsFile(join(d, 'adapter_model.safetensors'), [a, b]);
      return d;
    };
    const lm = await adapter('adapter-lm', GATE.replace(/\.weight$/, ''));
    const out = join(dir, 'adapter-merged');
    const { receipt } = await mergeModels({ base, tuned: lm, alpha: 1, out });
    expect(receipt).toMatchObject({ interpolated: 1, tuned: { adapter: { rank: 1, alpha: 2 } } });
    const merged = await tensorsOf(out);
    const viaLoad = (await loadModel(lm)).tensors.get('model.layers.0.mlp.gate_proj.weight')!;
    const got = toFloat32(merged.get(GATE)!);
    const want = toFloat32(viaLoad);
    expect(Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i])))).toBeLessThanOrEqual(2 ** -23 * Math.max(...Array.from(want, Math.abs)));
    expect(same(merged.get(GATE)!, (await tensorsOf(base)).get(GATE)!)).toBe(false);

    const onTower = await adapter('adapter-tower', TOWER_Q.replace(/\.weight$/, ''));
    await expect(mergeModels({ base, tuned: onTower, alpha: 0.5, out: join(dir, 'refused') })).rejects.toThrow(/the adapter .*adapter-tower adapts vision_tower\.vision_model\.encoder\.layers\.0\.self_attn\.q_proj\.weight; merging LLaVA-style models/);
  });

  it("MergeModels' request check accepts two LLaVA models of one layout and refuses two layouts", async () => {
    const ctx = { store: { getJob: () => Promise.reject(new Error('no jobs here')) }, modelRoots: [await realpath(dir)], dataRoots: [], checkpointEvery: 0 };
    const path = (value: string) => ({ source: { $case: 'path' as const, value } });
    const ok = await parseMergeModels(MergeModelsRequest.fromPartial({ baseModel: path('base'), tunedModel: path('tuned'), alpha: 0.5, outputPath: 'svc-merged' }), ctx);
    expect(ok).toMatchObject({ base: join(await realpath(dir), 'base'), alpha: 0.5 });
    const err = await parseMergeModels(MergeModelsRequest.fromPartial({ baseModel: path('base'), tunedModel: path('lmms-tuned'), alpha: 0.5, outputPath: 'svc-mixed' }), ctx).catch((e: unknown) => e);
    expect((err as { violations: unknown[] }).violations).toEqual([{ field: 'tuned_model.path', description: expect.stringMatching(/stores its tensors in the lmms-lab layout where the base uses hf-legacy/) }]);
  });
});
