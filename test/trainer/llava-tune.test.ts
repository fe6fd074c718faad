// Tuning a LLaVA-OneVision checkpoint's language model on image-text data: shapes to count in synthetic images
// (the paper's PixmoCount in miniature). Each image's features are computed once; the loss falls; the tower,
// projector and image_newline come out byte-identical, in the input's layout and names; the output loads again.
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageDataset } from '../../src/data/image-dataset.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { loadModel } from '../../src/model/load-model.js';
import { readSafetensorsFile } from '../../src/model/safetensors-file.js';
import { imageTokens } from '../../src/eval/image-features.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { tune } from '../../src/trainer/trainer.js';
import { repeatData, tempDir } from './fixtures.js';

let dir: string;
let base: string;
let data: string;
const COUNTS = ['One', 'Two', 'Three'];

/** `n` red 8-pixel squares on a white 40×32 image (wider than tall: anyres gives a 2-tile grid, unpadded). */
async function squares(file: string, n: number, shift: number): Promise<void> {
  const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } }).png().toBuffer();
  const composite = Array.from({ length: n }, (_, k) => ({ input: red, left: 2 + ((k * 13 + shift * 3) % 30), top: 2 + ((k * 11 + shift * 5) % 22) }));
  await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(composite)
    .png()
    .toFile(file);
}

beforeAll(async () => {
  dir = await tempDir('nt-llava-tune-');
  base = join(dir, 'base');
  await initLlavaModel({ arch: 'llava-onevision', out: base, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 3 });
  // Six distinct images, and a seventh with the bytes of the first under another name.
  const names: string[] = [];
  for (let n = 1; n <= 3; n++) {
    for (const shift of [0, 1]) {
      const name = `sq${n}-${shift}.png`;
      await squares(join(dir, name), n, shift);
      names.push(name);
    }
  }
  await copyFile(join(dir, names[0]), join(dir, 'copy.png'));
  names.push('copy.png');
  const lines = Array.from({ length: 14 }, (_, i) => {
    const name = names[i % names.length];
    const count = name === 'copy.png' ? 1 : Number(name[2]);
    return JSON.stringify({ image: name, conversations: [{ from: 'human', value: '<image>\nHow many squares?' }, { from: 'gpt', value: `${COUNTS[count - 1]}.` }] });
  });
  data = join(dir, 'count.jsonl');
  await writeFile(data, `${lines.join('\n')}\n`);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const FAST: Partial<TuneOptions> = { lr: 2e-2, steps: 30, batchSize: 4, seqLen: 96, schedule: 'constant', warmupSteps: 0 };

describe('tune a LLaVA-OneVision language model on image-text data', () => {
  it('mlp_gate_up: loss falls, each image runs the tower once, the tower is byte-identical and the output loads again', async () => {
    const out = join(dir, 'gate-up');
    const losses: number[] = [];
    const { receipt } = await tune({ ...DEFAULTS, ...FAST, model: base, data, out, policy: { preset: 'mlp_gate_up' } }, (e) => {
      if (e.type === 'step') losses.push(e.loss);
    });
    expect(losses).toHaveLength(30);
    expect(losses.at(-1)!).toBeLessThan(losses[0] - 0.5);

    // 7 image files, 6 distinct contents: the vision graph ran 6 times.
    expect(receipt.data_stats).toMatchObject({ form: 'llava_conversations', examples: 14, images: 7, vision_runs: 6 });
    expect(receipt.vision).toMatchObject({ unchanged: true });
    expect(receipt.vision!.tower.sha256_before).toBe(receipt.vision!.tower.sha256_after);
    expect(receipt.vision!.image_newline).not.toBeNull();
    expect(receipt.frozen_unchanged).toBe(true);
    expect(receipt.trainable.every((n) => /^model\.layers\.\d+\.mlp\.(gate|up)_proj\.weight$/.test(n))).toBe(true);

    // The file keeps the input's names (transformers' pre-4.52 layout); only the trained tensors' bytes differ.
    const before = new Map((await readSafetensorsFile(join(base, 'model.safetensors'))).map((t) => [t.name, Buffer.from(t.data)]));
    const after = await readSafetensorsFile(join(out, 'model.safetensors'));
    expect(after.map((t) => t.name).sort()).toEqual([...before.keys()].sort());
    const changed = after.filter((t) => !before.get(t.name)!.equals(Buffer.from(t.data))).map((t) => t.name);
    expect(changed.sort()).toEqual(receipt.trainable.map((n) => `language_model.${n}`).sort());
    const visionNames = after.map((t) => t.name).filter((n) => !n.startsWith('language_model.'));
    expect(visionNames.some((n) => n.startsWith('vision_tower.vision_model.'))).toBe(true);
    expect(visionNames.some((n) => n.startsWith('multi_modal_projector.'))).toBe(true);
    expect(visionNames).toContain('image_newline');

    for (const file of ['config.json', 'preprocessor_config.json', 'processor_config.json', 'tokenizer.json']) {
      expect(await readFile(join(out, file), 'utf8'), file).toBe(await readFile(join(base, file), 'utf8'));
    }
    const again = await loadModel(out);
    expect(again.llava?.config.kind).toBe('llava_onevision');
    expect(again.llava?.layout).toBe('hf-legacy');

    // The features reach the loss: the same conversations over blank images start from another loss.
    await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } }).png().toFile(join(dir, 'blank.png'));
    const blank = join(dir, 'blank.jsonl');
    await writeFile(blank, (await readFile(data, 'utf8')).replace(/"image":"[^"]+"/g, '"image":"blank.png"'));
    const blankLoss: number[] = [];
    await tune({ ...DEFAULTS, ...FAST, steps: 1, model: base, data: blank, out: join(dir, 'blank-out') }, (e) => {
      if (e.type === 'step') blankLoss.push(e.loss);
    });
    expect(Math.abs(blankLoss[0] - losses[0])).toBeGreaterThan(1e-4);
  });

  it('full with the embedding table: image positions send it no gradient (the image token row stays bitwise)', async () => {
    const out = join(dir, 'full');
    const losses: number[] = [];
    const policy = { include: ['^model\\.embed_tokens\\.weight$', '^model\\.layers\\.'] };
    const { receipt } = await tune({ ...DEFAULTS, ...FAST, steps: 6, weightDecay: 0, model: base, data, out, policy }, (e) => {
      if (e.type === 'step') losses.push(e.loss);
    });
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(losses[0]);
    expect(receipt.vision!.unchanged).toBe(true);
    expect(receipt.trainable_changed).toContain('model.embed_tokens.weight');

    // The image token id occurs only at image positions, so with no weight decay its row can only move by a gradient from them.
    const { llava } = await loadModel(base);
    const row = (t: { data: Uint8Array; shape: number[] }, id: number) => Buffer.from(t.data.subarray(id * t.shape[1] * 4, (id + 1) * t.shape[1] * 4));
    const embed = async (d: string) => (await readSafetensorsFile(join(d, 'model.safetensors'))).find((t) => t.name === 'language_model.model.embed_tokens.weight')!;
    const [b, a] = [await embed(base), await embed(out)];
    expect(row(a, llava!.config.imageTokenIndex).equals(row(b, llava!.config.imageTokenIndex))).toBe(true);
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(false);
  });

  it('refuses an include pattern naming the vision tower or projector, and image data on a text-only model', async () => {
    const o = { ...DEFAULTS, ...FAST, steps: 1, model: base, data, out: join(dir, 'refused') };
    for (const include of ['vision_tower\\.vision_model\\.encoder', '^multi_modal_projector\\.linear_1\\.weight$']) {
      await expect(tune({ ...o, policy: { include: [include] } })).rejects.toThrow(/tuning the tower or projector is not supported/);
    }
    const textModel = join(dir, 'text');
    const { initModel } = await import('../../src/model/init-model.js');
    await initModel({ arch: 'qwen2', hidden: 32, layers: 1, heads: 4, kvHeads: 2, intermediate: 64, out: textModel });
    await expect(tune({ ...o, model: textModel, policy: { preset: 'mlp' } })).rejects.toThrow(/image-text data, but .* is a text-only model/);
  });

  it('text data on a LLaVA model trains its language model through the text graph', async () => {
    const text = await repeatData(dir, 8, 'repeat.jsonl');
    const { receipt } = await tune({ ...DEFAULTS, ...FAST, steps: 3, seqLen: 32, model: base, data: text, out: join(dir, 'text-out'), policy: { preset: 'mlp' } });
    expect(receipt.data_stats).toMatchObject({ form: 'prompt_completion' });
    expect(receipt.vision).toMatchObject({ unchanged: true, images: 'no images in the training data' });
  });

  it('an image that --seq-len would cut through fails with the line and the length needed', async () => {
    const model = await loadModel(base);
    const tokenizer = await loadTokenizer(base);
    const per = imageTokens(model.llava!.config, 32, 40);
    const err = await loadImageDataset(data, tokenizer, { seqLen: 10, imageTokenId: 1, tokensFor: () => per }).catch((e: unknown) => e);
    expect(String(err)).toMatch(/count\.jsonl:1: --seq-len 10 would cut image 1's \d+ positions .*raise --seq-len to at least \d+/);
  });
});
