// Tests for LLaVA-style model directories: init-model's llava-onevision and llava outputs, reading them in all three
// tensor-name layouts (made here by renaming), validation errors, and writing back in the input's own names.

import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { initModelCommand } from '../../src/cli/init-model-command.js';
import { expectedTensors } from '../../src/model/config.js';
import { initLlavaModel, type InitLlavaOptions } from '../../src/model/init-llava.js';
import { inspectLlavaCheckpoint, loadLlavaCheckpoint, writeLlavaCheckpoint } from '../../src/model/llava-checkpoint.js';
import { detectLayout, toCanonical, toFileName, type LlavaLayout } from '../../src/model/llava-names.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { fromFloat32, serializeSafetensors, type StoredTensor } from '../../src/model/safetensors.js';
import { useTempDirs } from './helpers.js';
import { lmmsLabConfig } from '../support/llava-configs.js';

const tempDir = useTempDirs();

const TINY = { hidden: 32, layers: 2, heads: 4, kvHeads: 2, seed: 3 };

async function init(arch: InitLlavaOptions['arch'], extra: Partial<InitLlavaOptions> = {}): Promise<string> {
  const out = join(await tempDir(), arch);
  await initLlavaModel({ ...TINY, arch, out, ...extra });
  return out;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8'));
}

/** The layouts written out by hand, as transformers' conversion tables and LLaVA-NeXT's modules name them. */
const FROM_HF_LEGACY: Readonly<Record<Exclude<LlavaLayout, 'hf-legacy'>, [RegExp, string][]>> = {
  hf: [
    [/^language_model\.model\./, 'model.language_model.'],
    [/^language_model\.lm_head\./, 'lm_head.'],
    [/^vision_tower\./, 'model.vision_tower.'],
    [/^multi_modal_projector\./, 'model.multi_modal_projector.'],
    [/^image_newline$/, 'model.image_newline'],
  ],
  'lmms-lab': [
    [/^language_model\.model\./, 'model.'],
    [/^language_model\.lm_head\./, 'lm_head.'],
    [/^vision_tower\./, 'model.vision_tower.vision_tower.'],
    [/^multi_modal_projector\.linear_1\./, 'model.mm_projector.0.'],
    [/^multi_modal_projector\.linear_2\./, 'model.mm_projector.2.'],
    [/^image_newline$/, 'model.image_newline'],
  ],
};

function rename(layout: LlavaLayout, name: string): string {
  if (layout === 'hf-legacy') return name;
  for (const [from, to] of FROM_HF_LEGACY[layout]) if (from.test(name)) return name.replace(from, to);
  throw new Error(`no rule for ${name}`);
}

/** A copy of an init-model output in another layout (and, for lmms-lab, the other config form). */
async function relayout(src: string, layout: LlavaLayout, config?: Record<string, unknown>): Promise<string> {
  const dir = join(await tempDir(), layout);
  const tensors = await readSafetensorsFile(join(src, 'model.safetensors'));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir);
  await writeSafetensorsFile(join(dir, 'model.safetensors'), tensors.map((t) => ({ ...t, name: rename(layout, t.name) })));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config ?? (await readJson(join(src, 'config.json')))));
  return dir;
}

function byName(tensors: Iterable<StoredTensor>): Map<string, Uint8Array> {
  return new Map([...tensors].map((t) => [t.name, t.data]));
}

describe('init-model --arch llava-onevision', () => {
  it('writes an HF llava_onevision directory: config, pre-4.52 names, <image> token, image processor config', async () => {
    const dir = await init('llava-onevision');
    expect((await readdir(dir)).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'narrowtune.json',
      'preprocessor_config.json',
      'processor_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const config = await readJson(join(dir, 'config.json'));
    expect(config).toMatchObject({
      architectures: ['LlavaOnevisionForConditionalGeneration'],
      model_type: 'llava_onevision',
      image_token_index: 259,
      video_token_index: 260,
      vision_aspect_ratio: 'anyres_max_9',
      vision_feature_layer: -1,
      vision_feature_select_strategy: 'full',
      text_config: { model_type: 'qwen2', hidden_size: 32, vocab_size: 261 },
      vision_config: { model_type: 'siglip_vision_model', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, image_size: 32, patch_size: 8, intermediate_size: 128, hidden_act: 'gelu_pytorch_tanh', vision_use_head: false },
    });
    expect((config.image_grid_pinpoints as unknown[]).slice(0, 3)).toEqual([[32, 32], [32, 64], [32, 96]]);
    expect(config.image_grid_pinpoints).toHaveLength(36);
    expect(await readJson(join(dir, 'preprocessor_config.json'))).toMatchObject({
      image_processor_type: 'LlavaOnevisionImageProcessor',
      image_mean: [0.5, 0.5, 0.5],
      image_std: [0.5, 0.5, 0.5],
      size: { height: 32, width: 32 },
      resample: 3,
      rescale_factor: 1 / 255,
      do_convert_rgb: true,
      do_pad: true,
      image_grid_pinpoints: config.image_grid_pinpoints,
    });
    expect(await readJson(join(dir, 'processor_config.json'))).toMatchObject({ num_image_tokens: 16, image_token: '<image>' });

    const tokenizer = new Tokenizer(await readJson(join(dir, 'tokenizer.json')), await readJson(join(dir, 'tokenizer_config.json')));
    expect(tokenizer.encode('a<image>\nb').ids).toEqual([97, 259, 10, 98]);

    const names = (await readSafetensorsFile(join(dir, 'model.safetensors'))).map((t) => t.name);
    expect(names).toContain('language_model.model.layers.1.self_attn.q_proj.bias');
    expect(names).toContain('language_model.lm_head.weight');
    expect(names).toContain('vision_tower.vision_model.encoder.layers.1.self_attn.out_proj.weight');
    expect(names).toContain('multi_modal_projector.linear_2.bias');
    expect(names).toContain('image_newline');
  });

  it('is deterministic from the seed, and the seed matters', async () => {
    const bytes = async (seed: number) => readFile(join(await init('llava-onevision', { seed }), 'model.safetensors'));
    const [a, b, c] = await Promise.all([bytes(5), bytes(5), bytes(6)]);
    expect(Buffer.compare(a, b)).toBe(0);
    expect(Buffer.compare(a, c)).not.toBe(0);
  });

  it('loads as canonical tensors: the decoder exactly as a text-only checkpoint names it', async () => {
    const ckpt = await loadLlavaCheckpoint(await init('llava-onevision'));
    expect(ckpt.layout).toBe('hf-legacy');
    expect([...ckpt.language.keys()].sort()).toEqual([...expectedTensors(ckpt.config.text).keys()].sort());
    for (const [name, t] of ckpt.language) expect(t.name).toBe(name);
    expect(ckpt.vision.get('image_newline')?.shape).toEqual([32]);
    expect(ckpt.vision.get('vision_tower.vision_model.embeddings.position_embedding.weight')?.shape).toEqual([16, 32]);
    expect(ckpt.vision.get('multi_modal_projector.linear_1.weight')?.shape).toEqual([32, 32]);
    const post = ckpt.vision.get('vision_tower.vision_model.post_layernorm.weight')!;
    expect(new Float32Array(post.data.slice().buffer)).toEqual(new Float32Array(32).fill(1));
    const info = await inspectLlavaCheckpoint(ckpt.dir);
    expect(info.config).toEqual(ckpt.config);
    expect([...info.vision.keys()]).toEqual([...ckpt.vision.keys()]);
  });

  it('adds <image> and <video> to a --vocab-from tokenizer that lacks them, after its last id', async () => {
    const base = join(await tempDir(), 'text');
    const { initModel } = await import('../../src/model/init-model.js');
    await initModel({ ...TINY, arch: 'qwen2', out: base });
    const dir = await init('llava-onevision', { vocabFrom: base });
    const config = await readJson(join(dir, 'config.json'));
    expect(config).toMatchObject({ image_token_index: 259, video_token_index: 260, text_config: { vocab_size: 261 } });
    const decoder = (await readJson(join(dir, 'tokenizer_config.json'))).added_tokens_decoder as Record<string, { content: string }>;
    expect(decoder['259'].content).toBe('<image>');
    // The source's generation_config.json is carried, not rewritten.
    expect(await readFile(join(dir, 'generation_config.json'), 'utf8')).toBe(await readFile(join(base, 'generation_config.json'), 'utf8'));
  });
});

describe('init-model --arch llava', () => {
  it('writes LLaVA-1.5\'s form: CLIP tower with a class position, Llama decoder, padded square images', async () => {
    const dir = await init('llava', { vision: { layers: 3 } });
    const ckpt = await loadLlavaCheckpoint(dir);
    expect(ckpt.config).toMatchObject({ kind: 'llava', featureLayer: -2, selectStrategy: 'default', aspect: 'pad', hasImageNewline: false, imageTokenIndex: 259 });
    expect(ckpt.config.vision).toMatchObject({ kind: 'clip', hiddenAct: 'quick_gelu', numLayers: 3, layerNormEps: 1e-5 });
    expect(ckpt.config.text.arch).toBe('llama');
    expect(ckpt.vision.get('vision_tower.vision_model.embeddings.position_embedding.weight')?.shape).toEqual([17, 32]);
    expect(ckpt.vision.get('vision_tower.vision_model.embeddings.class_embedding')?.shape).toEqual([32]);
    expect(ckpt.vision.has('vision_tower.vision_model.pre_layrnorm.bias')).toBe(true);
    expect(ckpt.vision.has('image_newline')).toBe(false);
    expect(await readJson(join(dir, 'preprocessor_config.json'))).toMatchObject({
      image_processor_type: 'LlavaImageProcessor',
      do_pad: true,
      image_mean: [0.48145466, 0.4578275, 0.40821073],
      size: { shortest_edge: 32 },
      crop_size: { height: 32, width: 32 },
    });
    expect(await readJson(join(dir, 'config.json'))).toMatchObject({ image_seq_length: 16, vision_config: { model_type: 'clip_vision_model' } });
  });

  it('drops the stored head of a tied decoder', async () => {
    const dir = await init('llava', { tieEmbeddings: true });
    const names = (await readSafetensorsFile(join(dir, 'model.safetensors'))).map((t) => t.name);
    expect(names).not.toContain('language_model.lm_head.weight');
    expect((await loadLlavaCheckpoint(dir)).language.has('lm_head.weight')).toBe(false);
  });
});

describe('LLaVA layouts', () => {
  it('maps names both ways, and tells the layouts apart', () => {
    const pairs: [LlavaLayout, string, string][] = [
      ['hf-legacy', 'language_model.model.norm.weight', 'model.norm.weight'],
      ['hf-legacy', 'vision_tower.vision_model.post_layernorm.bias', 'vision_tower.vision_model.post_layernorm.bias'],
      ['hf', 'model.language_model.embed_tokens.weight', 'model.embed_tokens.weight'],
      ['hf', 'lm_head.weight', 'lm_head.weight'],
      ['hf', 'model.image_newline', 'image_newline'],
      ['lmms-lab', 'model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.up_proj.weight'],
      ['lmms-lab', 'model.mm_projector.2.bias', 'multi_modal_projector.linear_2.bias'],
      ['lmms-lab', 'model.vision_tower.vision_tower.vision_model.encoder.layers.25.mlp.fc2.weight', 'vision_tower.vision_model.encoder.layers.25.mlp.fc2.weight'],
      ['lmms-lab', 'model.image_newline', 'image_newline'],
    ];
    for (const [layout, file, canonical] of pairs) {
      expect(toCanonical(layout, file)).toBe(canonical);
      expect(toFileName(layout, canonical)).toBe(file);
    }
    expect(toCanonical('hf', 'language_model.model.norm.weight')).toBeNull();
    expect(detectLayout(['image_newline', 'language_model.model.norm.weight'], 'f')).toBe('hf-legacy');
    expect(detectLayout(['model.language_model.norm.weight', 'model.vision_tower.vision_model.x'], 'f')).toBe('hf');
    expect(detectLayout(['model.norm.weight', 'model.layers.0.x', 'model.mm_projector.0.weight'], 'f')).toBe('lmms-lab');
    expect(() => detectLayout(['language_model.model.norm.weight', 'model.mm_projector.0.weight'], 'f')).toThrow(/mixes .*hf-legacy, lmms-lab/);
    expect(() => detectLayout(['encoder.weight'], 'f')).toThrow(/has no LLaVA tensor layout/);
  });

  const cases: { layout: LlavaLayout; config?: (hf: Record<string, unknown>) => Record<string, unknown> }[] = [
    { layout: 'hf-legacy' },
    { layout: 'hf' },
    { layout: 'lmms-lab', config: (hf) => lmmsLabConfig(hf, '/checkpoints/siglip-tiny', true) },
  ];
  for (const { layout, config } of cases) {
    it(`round-trips the ${layout} layout: same canonical tensors on load, same bytes on write`, async () => {
      const src = await init('llava-onevision');
      const original = await loadLlavaCheckpoint(src);
      const dir = await relayout(src, layout, config?.(await readJson(join(src, 'config.json'))));
      const ckpt = await loadLlavaCheckpoint(dir);
      expect(ckpt.layout).toBe(layout);
      expect(ckpt.config.form).toBe(layout === 'lmms-lab' ? 'lmms-lab' : 'hf');
      expect(ckpt.config.vision).toEqual(original.config.vision);
      expect({ ...ckpt.config.text, raw: null }).toEqual({ ...original.config.text, raw: null });
      expect(byName(ckpt.language.values())).toEqual(byName(original.language.values()));
      expect(byName(ckpt.vision.values())).toEqual(byName(original.vision.values()));

      const out = join(await tempDir(), 'out');
      await writeLlavaCheckpoint(out, { config: ckpt.config, layout: ckpt.layout, tensors: [...ckpt.language.values(), ...ckpt.vision.values()], copyFrom: src, extraJson: { 'narrowtune.json': {} } });
      expect(Buffer.compare(await readFile(join(out, 'model.safetensors')), await readFile(join(dir, 'model.safetensors')))).toBe(0);
      expect(await readJson(join(out, 'config.json'))).toEqual(await readJson(join(dir, 'config.json')));
      // The image processor and tokenizer files travel with the weights.
      expect(await readFile(join(out, 'preprocessor_config.json'), 'utf8')).toBe(await readFile(join(src, 'preprocessor_config.json'), 'utf8'));
      expect(await readFile(join(out, 'tokenizer.json'), 'utf8')).toBe(await readFile(join(src, 'tokenizer.json'), 'utf8'));
    });
  }

  it('reads an lmms-lab tower\'s sizes off its weights when config.json names a known tower', async () => {
    const src = await init('llava-onevision');
    const dir = await relayout(src, 'lmms-lab', lmmsLabConfig(await readJson(join(src, 'config.json')), 'google/siglip-so400m-patch14-384', false));
    const ckpt = await loadLlavaCheckpoint(dir);
    // Sizes from the weights; heads, epsilon and activation from SigLIP so400m.
    expect(ckpt.config.vision).toEqual({ kind: 'siglip', hiddenSize: 32, intermediateSize: 128, numLayers: 2, numHeads: 16, imageSize: 32, patchSize: 8, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' });
    expect(ckpt.config.featureLayer).toBe(-1);
  });

  it('reads sharded weights through the index', async () => {
    const src = await init('llava-onevision');
    const dir = await relayout(src, 'hf');
    const tensors = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const { rm } = await import('node:fs/promises');
    await rm(join(dir, 'model.safetensors'));
    const shards = [tensors.filter((t) => t.name.startsWith('model.language_model.')), tensors.filter((t) => !t.name.startsWith('model.language_model.'))];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(join(dir, file), serializeSafetensors(part));
      for (const t of part) weightMap[t.name] = file;
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const ckpt = await loadLlavaCheckpoint(dir);
    expect(ckpt.files).toHaveLength(2);
    expect(byName(ckpt.vision.values())).toEqual(byName((await loadLlavaCheckpoint(src)).vision.values()));
  });

  it('carries a SigLIP pooling head unchanged', async () => {
    const src = await init('llava-onevision');
    const tensors = await readSafetensorsFile(join(src, 'model.safetensors'));
    const probe: StoredTensor = { name: 'vision_tower.vision_model.head.probe', dtype: 'F32', shape: [1, 1, 32], data: fromFloat32(new Float32Array(32).fill(0.5), 'F32') };
    await writeSafetensorsFile(join(src, 'model.safetensors'), [...tensors, probe]);
    const ckpt = await loadLlavaCheckpoint(src);
    expect(ckpt.vision.get('vision_tower.vision_model.head.probe')?.data).toEqual(probe.data);
  });
});

describe('LLaVA checkpoint errors name the file and the tensor as the file names it', () => {
  async function brokenCopy(layout: LlavaLayout, change: (tensors: StoredTensor[]) => StoredTensor[]): Promise<string> {
    const src = await init('llava-onevision');
    const dir = await relayout(src, layout);
    const path = join(dir, 'model.safetensors');
    await writeSafetensorsFile(path, change(await readSafetensorsFile(path)));
    return dir;
  }
  const f32 = (name: string, shape: number[]): StoredTensor => ({ name, dtype: 'F32', shape, data: fromFloat32(new Float32Array(shape.reduce((a, b) => a * b, 1)), 'F32') });

  it('a missing tensor', async () => {
    const dir = await brokenCopy('hf', (ts) => ts.filter((t) => t.name !== 'model.vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias'));
    await expect(loadLlavaCheckpoint(dir)).rejects.toThrow(/model\.safetensors: missing 1 tensor\(s\) that config\.json requires: model\.vision_tower\.vision_model\.encoder\.layers\.1\.mlp\.fc2\.bias/);
  });

  it('a tensor of the wrong shape', async () => {
    const dir = await brokenCopy('hf-legacy', (ts) => ts.map((t) => (t.name === 'multi_modal_projector.linear_1.weight' ? f32(t.name, [32, 16]) : t)));
    await expect(loadLlavaCheckpoint(dir)).rejects.toThrow(/multi_modal_projector\.linear_1\.weight has shape \[32,16\], expected \[32,32\] from config\.json/);
  });

  it('a tensor the config does not describe', async () => {
    const dir = await brokenCopy('hf-legacy', (ts) => [...ts, f32('vision_tower.vision_model.encoder.layers.2.layer_norm1.weight', [32])]);
    await expect(inspectLlavaCheckpoint(dir)).rejects.toThrow(/1 tensor\(s\) that config\.json does not describe: vision_tower\.vision_model\.encoder\.layers\.2\.layer_norm1\.weight/);
  });

  it('a tensor outside the layout', async () => {
    const dir = await brokenCopy('hf', (ts) => [...ts, f32('vision_resampler.weight', [2])]);
    await expect(loadLlavaCheckpoint(dir)).rejects.toThrow(/has tensor\(s\) outside the hf LLaVA layout: vision_resampler\.weight/);
  });

  it('a text-only directory', async () => {
    const dir = join(await tempDir(), 'text');
    const { initModel } = await import('../../src/model/init-model.js');
    await initModel({ ...TINY, arch: 'qwen2', out: dir });
    await expect(loadLlavaCheckpoint(dir)).rejects.toThrow(/config\.json: is not a LLaVA-style config/);
  });

  it('writing tensors that do not match the config', async () => {
    const ckpt = await loadLlavaCheckpoint(await init('llava-onevision'));
    const tensors = [...ckpt.language.values(), ...ckpt.vision.values()].filter((t) => t.name !== 'image_newline');
    await expect(writeLlavaCheckpoint(join(await tempDir(), 'o'), { config: ckpt.config, layout: 'lmms-lab', tensors })).rejects.toThrow(/missing 1 tensor\(s\) that config\.json requires: model\.image_newline/);
  });
});

describe('narrowtune init-model (command)', () => {
  it('takes the vision flags for LLaVA archs and refuses them for text archs', async () => {
    const root = await tempDir();
    const base = ['--hidden', '32', '--layers', '1', '--heads', '2', '--kv-heads', '1'];
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await initModelCommand(['--arch', 'llava-onevision', ...base, '--vision-hidden', '16', '--vision-heads', '4', '--image-size', '28', '--patch-size', '14', '--out', join(root, 'a')]);
      await expect(initModelCommand(['--arch', 'qwen2', ...base, '--patch-size', '14', '--out', join(root, 'b')])).rejects.toThrow(/--patch-size: applies only to --arch llava-onevision or llava/);
    } finally {
      process.stderr.write = write;
    }
    const v = (await loadLlavaCheckpoint(join(root, 'a'))).config.vision;
    expect(v).toMatchObject({ hiddenSize: 16, numHeads: 4, imageSize: 28, patchSize: 14, numLayers: 2 });
  });
});
