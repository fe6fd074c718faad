// Batched greedy generation with a KV cache: prompts left-padded to one length P, one compiled prefill graph and
// one decode graph per (batch, P, max new tokens), reused for every batch (see src/graph/generate-step.ts).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { leadingSpecialIds, type ExampleImage } from '../data/dataset.js';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.js';
import { cacheLength, compileGenerateStep, GEN_IO } from '../graph/generate-step.js';
import type { Kernels } from '../graph/graph-builder.js';
import { paramsOf } from '../graph/params.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { loadModel } from '../model/load-model.js';
import { createSessionFor, floatTensor, int64Tensor, type Device } from '../runtime/session.js';
import { invalidArgument } from '../util/errors.js';
import type { ImageFeatureTable } from './image-features.js';

export interface GenerateOptions {
  /** Hugging Face model directory (weights and tokenizer). */
  model: string;
  prompts: string[];
  maxNewTokens: number;
  batchSize: number;
  device?: Device;
}

export interface GenerateResult {
  /** Each prompt's completion, decoded without special tokens. */
  texts: string[];
  /** Each prompt's generated ids, stop token excluded. */
  tokenIds: number[][];
}

export interface GeneratorOptions {
  /** Ids that end a row's generation; default: the model directory's EOS ids (tokenizer, generation_config, config). */
  stopIds?: readonly number[];
  /** Lowering of attention; default: what the execution provider runs best (runtime/session.ts kernelsFor). */
  kernels?: Kernels;
  /** Prompts may hold LLaVA image positions (generateIds' `images`). */
  image?: boolean;
  /** onnxruntime intra-op threads; default: its own pool. */
  intraOpThreads?: number;
}

/** Image positions of a batch's prompts: rows[b] places features[ExampleImage.image] ([tokens, hidden]) in prompt b. */
export interface PromptImages {
  rows: readonly (readonly ExampleImage[] | undefined)[];
  features: ImageFeatureTable;
}

/** Left-padding filler; its value never matters (padding slots are masked out and never scored). */
const PAD_ID = 0n;

function positiveInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw invalidArgument(field, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function eosIdsIn(raw: unknown): number[] {
  const list = Array.isArray(raw) ? raw : [raw];
  return list.filter((id): id is number => Number.isSafeInteger(id) && (id as number) >= 0);
}

/** The ids Hugging Face generation stops at: generation_config's eos_token_id, the tokenizer's EOS, config's eos_token_id. */
export async function stopIdsOf(dir: string, tokenizer?: TextTokenizer): Promise<number[]> {
  const ids = new Set<number>();
  if (tokenizer) ids.add(tokenizer.eosId);
  else {
    try {
      ids.add((await loadTokenizer(dir)).eosId);
    } catch {
      // a directory without a tokenizer: the JSON files below may still name an EOS
    }
  }
  for (const file of ['generation_config.json', 'config.json']) {
    try {
      const json = JSON.parse(await readFile(join(dir, file), 'utf8')) as Record<string, unknown>;
      for (const id of eosIdsIn(json?.eos_token_id)) ids.add(id);
    } catch {
      // missing or unreadable: nothing to add
    }
  }
  return [...ids];
}

/**
 * Compiled prefill + decode sessions for one (batch, promptLen, maxNewTokens); reuse it for many batches and
 * release it when done.
 */
export class Generator {
  private readonly T: number;

  private constructor(
    private readonly prefill: ort.InferenceSession,
    private readonly decode: ort.InferenceSession,
    readonly batch: number,
    readonly promptLen: number,
    readonly maxNewTokens: number,
    readonly numLayers: number,
    readonly kvShape: readonly number[],
    readonly stopIds: ReadonlySet<number>,
    readonly hidden: number | null,
  ) {
    this.T = cacheLength(promptLen, maxNewTokens);
  }

  static async create(
    source: string | Checkpoint,
    batch: number,
    promptLen: number,
    maxNewTokens: number,
    device: Device = 'cpu',
    opts: GeneratorOptions = {},
  ): Promise<Generator> {
    positiveInt('batch_size', batch);
    positiveInt('prompt_len', promptLen);
    positiveInt('max_new_tokens', maxNewTokens);
    const ckpt = typeof source === 'string' ? await loadModel(source) : source;
    const c = ckpt.config;
    const T = cacheLength(promptLen, maxNewTokens);
    if (T > c.maxPositionEmbeddings) {
      throw invalidArgument(
        'max_new_tokens',
        `prompt length ${promptLen} + max new tokens ${maxNewTokens} = ${T} exceeds the model's max_position_embeddings ${c.maxPositionEmbeddings}`,
      );
    }
    const params = paramsOf(ckpt);
    const stopIds = new Set(opts.stopIds ?? (await stopIdsOf(ckpt.dir)));
    const spec = { config: c, params, batch, promptLen, maxNewTokens, image: opts.image };
    const session = { kernels: opts.kernels, intraOpThreads: opts.intraOpThreads };
    const prefill = await createSessionFor((kernels) => compileGenerateStep({ ...spec, phase: 'prefill', kernels }), device, session);
    let decode;
    try {
      decode = await createSessionFor((kernels) => compileGenerateStep({ ...spec, phase: 'decode', kernels }), device, session);
    } catch (e) {
      await prefill.session.release();
      throw e;
    }
    const hidden = opts.image ? c.hiddenSize : null;
    return new Generator(prefill.session, decode.session, batch, promptLen, maxNewTokens, c.numLayers, [batch, c.numKvHeads, T, c.headDim], stopIds, hidden);
  }

  /**
   * Greedy continuations of up to `batch` prompts (token ids, each 1..promptLen long): per row at most
   * maxNewTokens ids, ending before the first stop id. With a generator created with `image`, `images` fills image
   * positions of the prompts with features (as input embeddings); generated tokens are text.
   */
  async generateIds(promptIds: number[][], images?: PromptImages): Promise<number[][]> {
    const { batch: B, promptLen: P, maxNewTokens: M, T } = this;
    if (promptIds.length === 0) return [];
    if (promptIds.length > B) throw invalidArgument('prompts', `${promptIds.length} prompts do not fit a batch of ${B}`);
    promptIds.forEach((ids, i) => {
      if (ids.length === 0) throw invalidArgument(`prompts[${i}]`, 'is empty (no tokens to continue)');
      if (ids.length > P) throw invalidArgument(`prompts[${i}]`, `has ${ids.length} tokens, more than the prompt length ${P}`);
    });
    // Rows beyond the prompts given run a one-token dummy prompt and are dropped.
    const lens = Array.from({ length: B }, (_, b) => promptIds[b]?.length ?? 1);
    const pads = lens.map((n) => P - n);

    // Prefill: left-padded ids; positions count real tokens; query i sees keys pad..i, and a padding query
    // sees itself (an all-false row would give NaN, which would leak into the cache through 0·NaN).
    const ids = new BigInt64Array(B * P).fill(PAD_ID);
    const positions = new BigInt64Array(B * P);
    const prefillMask = new Uint8Array(B * P * P);
    for (let b = 0; b < B; b++) {
      const row = promptIds[b] ?? [0];
      for (let i = 0; i < P; i++) {
        if (i >= pads[b]) {
          ids[b * P + i] = BigInt(row[i - pads[b]]);
          positions[b * P + i] = BigInt(i - pads[b]);
          prefillMask.fill(1, (b * P + i) * P + pads[b], (b * P + i) * P + i + 1);
        } else {
          prefillMask[(b * P + i) * P + i] = 1;
        }
      }
    }
    const prefillFeeds: Record<string, ort.Tensor> = {
      [GEN_IO.ids]: int64Tensor(ids, [B, P]),
      [GEN_IO.positions]: int64Tensor(positions, [B, P]),
      [GEN_IO.mask]: new ort.Tensor('bool', prefillMask, [B, 1, P, P]),
    };
    if (this.hidden !== null) Object.assign(prefillFeeds, this.imageFeeds(pads, images));
    else if (images?.rows.some((r) => r?.length)) throw new Error('this generator was created without image inputs');
    let out = await this.prefill.run(prefillFeeds);

    const generated: number[][] = Array.from({ length: B }, () => []);
    const done = lens.map((_, b) => b >= promptIds.length);
    // Decode mask: row b sees slots pad_b..P+s at step s; one more slot opens per step.
    const mask = new Uint8Array(B * T);
    for (let b = 0; b < B; b++) mask.fill(1, b * T + pads[b], b * T + P);
    for (let s = 0; ; s++) {
      const next = (out[GEN_IO.nextIds] as ort.Tensor).data as BigInt64Array;
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        const id = Number(next[b]);
        if (this.stopIds.has(id)) done[b] = true;
        else {
          generated[b].push(id);
          if (generated[b].length >= M) done[b] = true;
        }
      }
      if (done.every(Boolean) || s + 1 >= M) break;
      // Step s feeds token s (at position len_b + s) into slot P + s and yields token s + 1.
      const stepIds = new BigInt64Array(B);
      const stepPositions = new BigInt64Array(B);
      for (let b = 0; b < B; b++) {
        stepIds[b] = next[b];
        stepPositions[b] = BigInt(lens[b] + s);
        mask[b * T + P + s] = 1;
      }
      const feeds: Record<string, ort.Tensor> = {
        [GEN_IO.ids]: int64Tensor(stepIds, [B, 1]),
        [GEN_IO.positions]: int64Tensor(stepPositions, [B, 1]),
        [GEN_IO.mask]: new ort.Tensor('bool', mask.slice(), [B, 1, 1, T]),
        [GEN_IO.slot]: int64Tensor(BigInt64Array.of(BigInt(P + s)), []),
      };
      for (let l = 0; l < this.numLayers; l++) {
        feeds[GEN_IO.pastKey(l)] = out[GEN_IO.presentKey(l)] as ort.Tensor;
        feeds[GEN_IO.pastValue(l)] = out[GEN_IO.presentValue(l)] as ort.Tensor;
      }
      out = await this.decode.run(feeds);
    }
    return generated.slice(0, promptIds.length);
  }

  async release(): Promise<void> {
    await Promise.allSettled([this.prefill.release(), this.decode.release()]);
  }

  /** [B·P, H] features at each row's image positions (shifted by its left padding) and the [B·P, 1] mask. */
  private imageFeeds(pads: number[], images: PromptImages | undefined): Record<string, ort.Tensor> {
    const { batch: B, promptLen: P } = this;
    const H = this.hidden!;
    const embeds = new Float32Array(B * P * H);
    const mask = new Float32Array(B * P);
    images?.rows.forEach((placed, b) => {
      for (const p of placed ?? []) {
        const row = b * P + pads[b] + p.start;
        embeds.set(images.features.get(p.image).subarray(0, p.count * H), row * H);
        mask.fill(1, row, row + p.count);
      }
    });
    return { [GEN_IO.imageEmbeds]: floatTensor(embeds, [B * P, H]), [GEN_IO.imageMask]: floatTensor(mask, [B * P, 1]) };
  }
}

/** Greedy completions of `prompts` (encoded as the trainer encodes a prompt), `batchSize` at a time. */
export async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  if (!Array.isArray(opts.prompts) || opts.prompts.length === 0) throw invalidArgument('prompts', 'at least one prompt is required');
  const M = positiveInt('max_new_tokens', opts.maxNewTokens);
  const batchSize = positiveInt('batch_size', opts.batchSize);
  const ckpt = await loadModel(opts.model);
  const tokenizer = await loadTokenizer(opts.model);
  // As the trainer builds a prompt: the tokenizer's leading special tokens (Llama's BOS), then the plain text.
  const leading = leadingSpecialIds(tokenizer);
  const encoded = opts.prompts.map((p, i) => {
    if (typeof p !== 'string') throw invalidArgument(`prompts[${i}]`, `must be a string, got ${typeof p}`);
    const ids = [...leading, ...tokenizer.encode(p, { addSpecialTokens: false })];
    if (ids.length === 0) throw invalidArgument(`prompts[${i}]`, 'is empty (no tokens to continue)');
    return ids;
  });
  const P = Math.max(...encoded.map((ids) => ids.length));
  const cap = ckpt.config.maxPositionEmbeddings - M;
  if (P > cap) {
    const i = encoded.findIndex((ids) => ids.length === P);
    throw invalidArgument(
      `prompts[${i}]`,
      `has ${P} tokens; with max_new_tokens ${M} the model's max_position_embeddings ${ckpt.config.maxPositionEmbeddings} allows prompts of at most ${Math.max(0, cap)} tokens`,
    );
  }
  const B = Math.min(batchSize, encoded.length);
  const generator = await Generator.create(ckpt, B, P, M, opts.device ?? 'cpu', { stopIds: await stopIdsOf(opts.model, tokenizer) });
  try {
    const tokenIds: number[][] = [];
    for (let i = 0; i < encoded.length; i += B) tokenIds.push(...(await generator.generateIds(encoded.slice(i, i + B))));
    return { tokenIds, texts: tokenIds.map((ids) => tokenizer.decode(ids, { skipSpecialTokens: true })) };
  } finally {
    await generator.release();
  }
}
