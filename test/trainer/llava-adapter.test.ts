// LoRA on a LLaVA model's language model, written as a PEFT adapter in each of the three layouts: tensor names as
// PEFT gives them when it wraps that layout's model class, a target_modules regex that cannot reach the tower,
// and base + adapter read back equal, bit for bit, to the same run written with --merge-adapter.
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { llavaTargetModules } from '../../src/model/llava-adapter.js';
import { toCanonical, toFileName, type LlavaLayout } from '../../src/model/llava-names.js';
import { inspectModel, loadModel } from '../../src/model/load-model.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { tempDir } from './fixtures.js';
import { lmmsLabConfig } from '../support/llava-configs.js';

let dir: string;
let data: string;
const bases = new Map<LlavaLayout, string>();

/** A copy of `src` (hf-legacy) with its tensors renamed to `layout`, and for lmms-lab LLaVA-NeXT's config form. */
async function relayout(src: string, layout: LlavaLayout): Promise<string> {
  const out = join(dir, `base-${layout}`);
  await mkdir(out);
  for (const f of await readdir(src)) if (!['model.safetensors', 'config.json', 'narrowtune.json'].includes(f)) await copyFile(join(src, f), join(out, f));
  const tensors = await readSafetensorsFile(join(src, 'model.safetensors'));
  await writeSafetensorsFile(join(out, 'model.safetensors'), tensors.map((t) => ({ ...t, name: toFileName(layout, toCanonical('hf-legacy', t.name)!) })));
  const hf = JSON.parse(await readFile(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  const config = layout === 'lmms-lab' ? lmmsLabConfig(hf, '/checkpoints/siglip-tiny', true) : hf;
  await writeFile(join(out, 'config.json'), JSON.stringify(config));
  return out;
}

beforeAll(async () => {
  dir = await tempDir('nt-llava-adapter-');
  const legacy = join(dir, 'base-hf-legacy');
  await initLlavaModel({ arch: 'llava-onevision', out: legacy, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 5 });
  bases.set('hf-legacy', legacy);
  bases.set('hf', await relayout(legacy, 'hf'));
  bases.set('lmms-lab', await relayout(legacy, 'lmms-lab'));
  const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } }).png().toBuffer();
  const lines: string[] = [];
  for (let n = 1; n <= 3; n++) {
    const composite = Array.from({ length: n }, (_, k) => ({ input: red, left: 2 + k * 12, top: 4 + k * 6 }));
    await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(composite).png().toFile(join(dir, `sq${n}.png`));
    lines.push(JSON.stringify({ image: `sq${n}.png`, conversations: [{ from: 'human', value: 'How many squares? <image>' }, { from: 'gpt', value: ['One', 'Two', 'Three'][n - 1] }] }));
  }
  data = join(dir, 'count.jsonl');
  await writeFile(data, `${[...lines, ...lines].join('\n')}\n`);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const PREFIX: Record<LlavaLayout, string> = { 'hf-legacy': 'language_model.model.', hf: 'model.language_model.', 'lmms-lab': 'model.' };
// Attention projections: SigLIP's layers have q_proj and v_proj too, which the adapter must not reach.
const LORA = { rank: 2, alpha: 4, dropout: 0, targets: ['self_attn\\.(q|v)_proj'] };
const FAST: Partial<TuneOptions> = { lr: 2e-2, steps: 3, batchSize: 3, seqLen: 128, schedule: 'constant', warmupSteps: 0, seed: 7 };

const json = async <T>(path: string) => JSON.parse(await readFile(path, 'utf8')) as T;
const bytes = (tensors: Iterable<{ name: string; dtype: string; data: Uint8Array }>) => new Map([...tensors].map((t) => [t.name, `${t.dtype}:${Buffer.from(t.data).toString('base64')}`]));

describe('PEFT LoRA adapters of LLaVA models', () => {
  for (const layout of ['hf-legacy', 'hf', 'lmms-lab'] as const) {
    it(`${layout}: PEFT's names for the layout, a regex target, and base + adapter equal to --merge-adapter bit for bit`, async () => {
      const base = bases.get(layout)!;
      const out = join(dir, `adapter-${layout}`);
      const merged = join(dir, `merged-${layout}`);
      const o: TuneOptions = { ...DEFAULTS, ...FAST, model: base, data, out, lora: LORA };
      const { receipt } = await tune(o);
      await tune({ ...o, out: merged, mergeAdapter: true });

      const names = (await readSafetensorsFile(join(out, 'adapter_model.safetensors'))).map((t) => t.name).sort();
      expect(names).toEqual([0, 1].flatMap((l) => ['q', 'v'].flatMap((p) => ['A', 'B'].map((ab) => `base_model.model.${PREFIX[layout]}layers.${l}.self_attn.${p}_proj.lora_${ab}.weight`))).sort());

      const config = await json<Record<string, unknown>>(join(out, 'adapter_config.json'));
      expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 2, lora_alpha: 4, base_model_name_or_path: `../base-${layout}` });
      // PEFT full-matches a string target against every module path of the wrapped model.
      const target = new RegExp(config.target_modules as string);
      const modules = (await readSafetensorsFile(join(base, 'model.safetensors'))).map((t) => t.name.replace(/\.(weight|bias)$/, ''));
      const adapted = [...new Set(modules.filter((m) => target.test(m)))].sort();
      expect(adapted).toEqual([...new Set(names.map((n) => n.replace(/^base_model\.model\./, '').replace(/\.lora_[AB]\.weight$/, '')))].sort());
      expect(modules.some((m) => /vision_tower\..*self_attn\.q_proj$/.test(m))).toBe(true);
      for (const f of ['tokenizer.json', 'preprocessor_config.json']) expect(await readFile(join(out, f), 'utf8')).toBe(await readFile(join(base, f), 'utf8'));
      expect(await readdir(out)).not.toContain('config.json');

      expect(receipt.adapter).toMatchObject({ merged: false });
      expect(receipt.frozen_unchanged).toBe(true);
      expect(receipt.vision).toMatchObject({ unchanged: true });
      expect(receipt.data_stats).toMatchObject({ examples: 6, images: 3 });

      // Read back: the adapter directory loads as its base with the adapter merged in, in the base's layout.
      const viaAdapter = await loadModel(out);
      const viaMerge = await loadModel(merged);
      expect(viaAdapter.llava?.layout).toBe(layout);
      expect(bytes(viaAdapter.tensors.values())).toEqual(bytes(viaMerge.tensors.values()));
      // ...and the adapter moved the weights it adapts (B starts at zero), so the comparison above has teeth.
      expect(receipt.trainable_changed).toHaveLength(8);
      const q = 'model.layers.1.self_attn.q_proj.weight';
      expect(bytes([viaAdapter.tensors.get(q)!])).not.toEqual(bytes([(await loadModel(base)).tensors.get(q)!]));
      const info = await inspectModel(out);
      expect(info.llava?.layout).toBe(layout);
      expect([...info.tensors.keys()].sort()).toEqual([...viaAdapter.tensors.keys()].sort());
    }, 30_000);
  }

  it('reads an adapter named as transformers 4.52+ names the modules onto a pre-4.52 base, and the reverse', async () => {
    const legacy = join(dir, 'adapter-hf-legacy');
    const renamed = join(dir, 'adapter-renamed');
      await mkdir(renamed);
    for (const f of await readdir(legacy)) if (f !== 'adapter_model.safetensors') await copyFile(join(legacy, f), join(renamed, f));
    const tensors = await readSafetensorsFile(join(legacy, 'adapter_model.safetensors'));
    await writeSafetensorsFile(join(renamed, 'adapter_model.safetensors'), tensors.map((t) => ({ ...t, name: t.name.replace('base_model.model.language_model.model.', 'base_model.model.model.language_model.') })));
    expect(bytes((await loadModel(renamed)).tensors.values())).toEqual(bytes((await loadModel(legacy)).tensors.values()));

    // lmms-lab's modules have one naming only: an hf name there is refused with the expected form.
    const lmms = join(dir, 'adapter-wrong');
    await mkdir(lmms);
    for (const f of await readdir(renamed)) await copyFile(join(renamed, f), join(lmms, f));
    const config = await json<Record<string, unknown>>(join(lmms, 'adapter_config.json'));
    await writeFile(join(lmms, 'adapter_config.json'), JSON.stringify({ ...config, base_model_name_or_path: '../base-lmms-lab' }));
    await expect(loadModel(lmms)).rejects.toThrow(/adapts model\.language_model\.layers\.0\.self_attn\.q_proj\.weight, which has no place in a lmms-lab LLaVA model \(expected names like model\.layers\.0\.mlp\.gate_proj\.weight\)/);
  });

  it('tunes with the adapter directory as the model (its base with the adapter merged in)', async () => {
    const adapter = join(dir, 'adapter-hf');
    const out = join(dir, 'on-adapter');
    const { receipt } = await tune({ ...DEFAULTS, ...FAST, steps: 1, model: adapter, data, out, policy: { preset: 'mlp_gate_up' } });
    expect(receipt.vision).toMatchObject({ unchanged: true });
    const written = await loadModel(out);
    expect(written.llava?.layout).toBe('hf');
    const start = await loadModel(adapter);
    expect(bytes([written.tensors.get('model.layers.0.self_attn.q_proj.weight')!])).toEqual(bytes([start.tensors.get('model.layers.0.self_attn.q_proj.weight')!]));
  }, 20_000);

  it('target_modules: one layer-wide regex per layout when every layer is adapted, the modules listed otherwise', () => {
    const candidates = [0, 1].flatMap((l) => ['self_attn.q_proj', 'mlp.gate_proj', 'mlp.up_proj'].map((p) => `model.layers.${l}.${p}.weight`));
    const gateUp = candidates.filter((c) => /mlp\.(gate|up)/.test(c));
    expect(llavaTargetModules('hf-legacy', gateUp, candidates)).toBe('^language_model\\.model\\.layers\\.\\d+\\.mlp\\.(gate_proj|up_proj)$');
    expect(llavaTargetModules('hf', ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.q_proj.weight'], candidates)).toBe('^model\\.language_model\\.layers\\.\\d+\\.self_attn\\.q_proj$');
    expect(llavaTargetModules('lmms-lab', ['model.layers.1.mlp.up_proj.weight'], candidates)).toBe('^(model\\.layers\\.1\\.mlp\\.up_proj)$');
  });
});
