// Evaluate on a LLaVA-OneVision model with image-text datasets: GENERATE (greedy decoding with the image features
// as the prompt's input embeddings) and CHOICE (each choice scored given the image), in the three line forms, each
// distinct image through the vision tower once. The answers are checked against graphs built apart from the ones
// under test: CHOICE log-likelihoods against one full-prompt prefill's logits, GENERATE outputs against greedy
// decoding by full-prompt prefills (no cache, padding or batching). Text datasets keep running through the decoder.
import { copyFile, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import { loadChoiceData, loadGenerateSet } from '../../src/eval/eval-data.js';
import { evaluate, type EvalDatasetOptions } from '../../src/eval/evaluate.js';
import { ImageFeatureCache, imageTokens, readPreprocessing, visionWeightsHash } from '../../src/eval/image-features.js';
import { stopIdsOf } from '../../src/eval/generate.js';
import { compileGenerateStep, GEN_IO } from '../../src/graph/generate-step.js';
import { paramsOf, paramTensor } from '../../src/graph/params.js';
import type { Checkpoint } from '../../src/model/checkpoint.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { partOf } from '../../src/model/llava-names.js';
import { loadModel } from '../../src/model/load-model.js';
import { createSessionFor, floatTensor, int64Tensor, type FloatArray } from '../../src/runtime/session.js';
import { repeatData, tempDir } from '../trainer/fixtures.js';

let dir: string;
let model: string;
let ckpt: Checkpoint;
let tokenizer: TextTokenizer;
const files: Record<string, string> = {};

/** `n` coloured 8-pixel squares on a white width × 32 image. */
async function squares(file: string, n: number, width = 32, colour = { r: 220, g: 20, b: 20 }): Promise<void> {
  const tile = await sharp({ create: { width: 8, height: 8, channels: 3, background: colour } }).png().toBuffer();
  const composite = Array.from({ length: n }, (_, k) => ({ input: tile, left: 2 + ((k * 13) % (width - 10)), top: 2 + ((k * 11) % 22) }));
  await sharp({ create: { width, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(composite).png().toFile(file);
}

const jsonl = async (name: string, lines: object[]) => {
  const file = join(dir, name);
  await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return file;
};
const ds = (name: string, kind: EvalDatasetOptions['kind'], extra: Partial<EvalDatasetOptions> = {}): EvalDatasetOptions => ({
  name,
  path: files[name],
  kind,
  role: null,
  maxNewTokens: 4,
  answerRegex: '',
  ...extra,
});
const run = (datasets: EvalDatasetOptions[], extra: { base?: string; roots?: string[] } = {}) =>
  evaluate({ model, datasets, batchSize: 3, seqLen: 128, device: 'cpu', ...extra });

beforeAll(async () => {
  dir = await tempDir('nt-llava-eval-');
  model = join(dir, 'model');
  await initLlavaModel({ arch: 'llava-onevision', out: model, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 4 });
  ckpt = await loadModel(model);
  tokenizer = await loadTokenizer(model);
  await squares(join(dir, 'one.png'), 1);
  await squares(join(dir, 'two.png'), 2, 40);
  await squares(join(dir, 'blue.png'), 3, 32, { r: 20, g: 20, b: 220 });
  await copyFile(join(dir, 'one.png'), join(dir, 'one-copy.png'));
  files.choice = await jsonl('choice.jsonl', [
    { image: 'one.png', prompt: '<image>\nHow many squares?', choices: ['1', '2', '3'], answer: '1' },
    { image: 'two.png', prompt: 'Count: <image>', choices: ['1', '2', '3'], answer: 1 },
    { images: ['blue.png', 'one-copy.png'], prompt: '<image> and <image>: more in the first?', choices: ['y', 'n'], answer: 'y' },
    { prompt: 'no image here:', choices: ['a', 'b'], answer: 0 },
  ]);
  files.generate = await jsonl('generate.jsonl', [
    { image: 'two.png', prompt: '<image>\nHow many squares?', completion: '2' },
    { images: ['one.png', 'blue.png'], prompt: 'First <image>, then <image>. Colour?', completion: 'blue' },
    { prompt: 'Text only:', completion: 'x' },
  ]);
  files.conversations = await jsonl('conversations.jsonl', [
    { image: 'blue.png', conversations: [{ from: 'human', value: '<image>\nWhat colour?' }, { from: 'gpt', value: 'Blue' }] },
    { conversations: [{ from: 'human', value: 'Hello' }, { from: 'gpt', value: 'Hi' }] },
  ]);
  files.messages = await jsonl('messages.jsonl', [
    { images: ['one.png'], messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Count.' }] }, { role: 'assistant', content: '1' }] },
  ]);
  files.text = await repeatData(dir, 4, 'text.jsonl');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Features of `path` computed by the cache on its own (one image, one vision run). */
async function featuresOf(path: string): Promise<FloatArray> {
  const llava = ckpt.llava!.config;
  const vision = new Map([...ckpt.tensors].filter(([n]) => partOf(n) !== 'language').map(([n, t]) => [n, paramTensor(t)]));
  const pre = await readPreprocessing(model, llava);
  const cache = new ImageFeatureCache({ llava, vision, weightsHash: visionWeightsHash(ckpt.tensors), pre, device: 'cpu', precision: 'float32', threads: null });
  try {
    return await cache.features(path);
  } finally {
    await cache.release();
  }
}

/** Log-probabilities after `ids` (one row, no padding) from a prefill graph with `logits` out: the last position's. */
async function nextLogProbs(ids: number[], placed: { start: number; features: FloatArray }[]): Promise<Float64Array> {
  const P = ids.length;
  const H = ckpt.config.hiddenSize;
  const spec = { config: ckpt.config, params: paramsOf(ckpt), batch: 1, promptLen: P, maxNewTokens: 1, phase: 'prefill' as const, image: true, logits: true };
  const { session } = await createSessionFor((kernels) => compileGenerateStep({ ...spec, kernels }), 'cpu');
  const embeds = new Float32Array(P * H);
  const mask = new Float32Array(P);
  for (const p of placed) {
    embeds.set(p.features, p.start * H);
    mask.fill(1, p.start, p.start + p.features.length / H);
  }
  const causal = new Uint8Array(P * P).map((_, k) => (k % P <= Math.floor(k / P) ? 1 : 0));
  const out = await session.run({
    [GEN_IO.ids]: int64Tensor(BigInt64Array.from(ids, BigInt), [1, P]),
    [GEN_IO.positions]: int64Tensor(BigInt64Array.from({ length: P }, (_, i) => BigInt(i)), [1, P]),
    [GEN_IO.mask]: new ort.Tensor('bool', causal, [1, 1, P, P]),
    [GEN_IO.imageEmbeds]: floatTensor(embeds, [P, H]),
    [GEN_IO.imageMask]: floatTensor(mask, [P, 1]),
  });
  await session.release();
  const z = Float64Array.from((out[GEN_IO.logits] as ort.Tensor).data as Float32Array);
  const max = Math.max(...z);
  const lse = max + Math.log(z.reduce((s, x) => s + Math.exp(x - max), 0));
  return z.map((x) => x - lse);
}

describe('Evaluate with images on a LLaVA-OneVision model', () => {
  it('CHOICE: each choice scored given its images, as a full-prompt prefill computes it; one vision run per distinct image', async () => {
    const llava = ckpt.llava!.config;
    const result = await run([ds('choice', 'choice')]);
    const [choice] = result.datasets;
    // one.png and one-copy.png hold the same bytes: 4 files, 3 vision runs.
    expect(result.images).toEqual({ files: 4, visionRuns: 3 });
    expect(choice.examples).toBe(4);

    const set = await loadChoiceData(files.choice, tokenizer, { seqLen: 128, field: 'd', images: { imageTokenId: llava.imageTokenIndex, tokensFor: (r) => imageTokens(llava, r.height, r.width) } });
    expect(set.images.map((r) => r.given)).toEqual(['one.png', 'two.png', 'blue.png', 'one-copy.png']);
    const features = await Promise.all(set.images.map((r) => featuresOf(r.path)));
    // The 40-pixel-wide image takes more positions than the square ones; each holds the image token.
    expect(set.items[1].images![0].count).toBeGreaterThan(set.items[0].images![0].count);
    for (const [k, item] of set.items.entries()) {
      for (const p of item.images ?? []) expect(item.promptIds.slice(p.start, p.start + p.count).every((id) => id === llava.imageTokenIndex)).toBe(true);
      const logp = await nextLogProbs(item.promptIds, (item.images ?? []).map((p) => ({ start: p.start, features: features[p.image] })));
      // Every choice here is one token: its log-likelihood is the prefill's log-probability of it.
      const expected = item.choiceIds.map((ids) => logp[ids[0]]);
      choice.answers!.logLikelihoods![k].forEach((ll, c) => expect(ll).toBeCloseTo(expected[c], 4));
    }
    // The image changes the answer's likelihood: the same prompt with another image scores differently.
    const ll = choice.answers!.logLikelihoods!;
    expect(Math.abs(ll[0][0] - ll[1][0])).toBeGreaterThan(1e-4);
  });

  it('GENERATE: greedy outputs over image prompts of three forms match decoding by full prefills; text sets run unchanged', async () => {
    const datasets = [ds('generate', 'generate'), ds('conversations', 'generate'), ds('messages', 'generate'), ds('text', 'generate'), ds('choice', 'choice'), ds('text', 'loss', { name: 'text-loss' })];
    const result = await run(datasets);
    const llava = ckpt.llava!.config;
    const images = { imageTokenId: llava.imageTokenIndex, tokensFor: (r: { height: number; width: number }) => imageTokens(llava, r.height, r.width) };
    const stopIds = new Set(await stopIdsOf(model));
    for (const name of ['generate', 'conversations', 'messages']) {
      const score = result.datasets.find((d) => d.name === name)!;
      const set = await loadGenerateSet(files[name], tokenizer, { seqLen: 128, field: 'd', images });
      const features = await Promise.all(set.images.map((r) => featuresOf(r.path)));
      for (const [k, item] of set.items.entries()) {
        // Greedy decoding without a cache, padding or batching: each token is the argmax of a full-prompt prefill.
        const ids = [...item.promptIds];
        const out: number[] = [];
        while (out.length < 4) {
          const logp = await nextLogProbs(ids, (item.images ?? []).map((p) => ({ start: p.start, features: features[p.image] })));
          const next = logp.indexOf(Math.max(...logp));
          if (stopIds.has(next)) break;
          out.push(next);
          ids.push(next);
        }
        expect(out.length, `${name}[${k}]`).toBeGreaterThan(0);
        expect(score.answers!.outputs[k], `${name}[${k}]`).toBe(tokenizer.decode(out, { skipSpecialTokens: true }));
      }
    }

    // Text datasets scored in a graph that also takes images give what they give alone, through the decoder only.
    const alone = await run([ds('text', 'generate'), ds('text', 'loss', { name: 'text-loss' })]);
    expect(alone.images).toBeUndefined();
    for (const name of ['text', 'text-loss']) {
      const [a, b] = [alone, result].map((r) => r.datasets.find((d) => d.name === name)!);
      expect(b.loss).toBeCloseTo(a.loss, 5);
      expect(b.answers?.outputs).toEqual(a.answers?.outputs);
    }
    expect(result.images).toEqual({ files: 4, visionRuns: 3 });
  });

  it('a base with the same vision tower gets its own figures; image errors name the image and line', async () => {
    const withBase = await run([ds('choice', 'choice')], { base: model });
    expect(withBase.datasets[0].base!.answers!.logLikelihoods).toEqual(withBase.datasets[0].answers!.logLikelihoods);

    const bad = async (name: string, lines: object[], pattern: RegExp, extra: { roots?: string[] } = {}) => {
      files[name] = await jsonl(`${name}.jsonl`, lines);
      await expect(run([ds(name, 'choice')], extra)).rejects.toThrow(pattern);
    };
    const line = (image: unknown, prompt = '<image> n?') => ({ image, prompt, choices: ['1', '2'], answer: 0 });
    await bad('missing', [line('one.png'), line('gone.png')], /missing\.jsonl:2: image "gone\.png" \(.*gone\.png\): no such file/);
    await bad('markers', [line('one.png', 'no marker')], /markers\.jsonl:1: 0 <image> markers but 1 image/);
    await bad('dots', [line('../x.png')], /dots\.jsonl:1: image "\.\.\/x\.png": "\.\." is not allowed/);
    // A symlink out of the data file's directory is outside it; naming the target's directory as a root allows it.
    const sub = join(dir, 'sub');
    const outside = join(dir, 'outside');
    await mkdir(sub);
    await mkdir(outside);
    await squares(join(outside, 'far.png'), 1);
    await symlink(join(outside, 'far.png'), join(sub, 'link.png'));
    files.linked = join(sub, 'linked.jsonl');
    await writeFile(files.linked, JSON.stringify(line('link.png')) + '\n');
    await expect(run([ds('linked', 'choice')])).rejects.toThrow(/linked\.jsonl:1: image "link\.png" \(.*far\.png\): outside the allowed directories/);
    expect((await run([ds('linked', 'choice')], { roots: [outside] })).datasets[0].examples).toBe(1);
    // An undecodable image fails with its path and the line that first uses it.
    await writeFile(join(dir, 'broken.png'), Buffer.concat([(await sharp(join(dir, 'one.png')).png().toBuffer()).subarray(0, 40)]));
    await bad('broken', [line('one.png'), line('broken.png')], /broken\.jsonl:2: image "broken\.png".*/);

    // Images on a text-only model fail; a base with another vision tower is refused when the datasets have images.
    const { initModel } = await import('../../src/model/init-model.js');
    const textModel = join(dir, 'text-model');
    await initModel({ arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, out: textModel });
    await expect(evaluate({ model: textModel, datasets: [ds('choice', 'choice')], batchSize: 2, seqLen: 128, device: 'cpu' })).rejects.toThrow(
      /choice\.jsonl:1: names an image \(one\.png\), but the model is text-only/,
    );
    await expect(evaluate({ model: textModel, datasets: [ds('conversations', 'generate')], batchSize: 2, seqLen: 128, device: 'cpu' })).rejects.toThrow(
      /conversations\.jsonl: is image-text data .* the model is text-only/,
    );
    const other = join(dir, 'other');
    await initLlavaModel({ arch: 'llava-onevision', out: other, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 9 });
    await expect(run([ds('choice', 'choice')], { base: other })).rejects.toThrow(/base_model: the datasets have images, so the base must have the model's vision tower/);
  });
});
