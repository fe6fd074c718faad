// Creates a randomly initialised Hugging Face model directory (config, weights, tokenizer) the way transformers
// would initialise a fresh model, deterministically from a seed.

import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelFileError, invalidArgument } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { CONFIG_FILE, NARROWTUNE_MARKER, writeCheckpoint } from './checkpoint.js';
import { expectedTensors, parseConfig, type Arch, type ModelConfig } from './config.js';
import { IM_END, defaultTokenizerConfig, defaultTokenizerJson, tokenizerVocabSize } from './default-tokenizer.js';
import { fromFloat32, isDtype, numel, type Dtype, type StoredTensor } from './safetensors.js';

export interface InitModelOptions {
  arch: Arch;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** MLP width; default `defaultIntermediateSize(hidden)`. */
  intermediate?: number;
  /** Default hidden / heads. */
  headDim?: number;
  /** Directory with tokenizer.json (and optionally tokenizer_config.json) to take the vocabulary from. */
  vocabFrom?: string;
  /** Default false (as LlamaConfig/Qwen2Config/Qwen3Config). */
  tieEmbeddings?: boolean;
  /** Default DEFAULT_INIT_SEED. */
  seed?: number;
  /** Default F32. */
  dtype?: Dtype;
  out: string;
  /** Biases on q/k/v/o (llama, qwen3; default false). qwen2 always has q/k/v biases, so it must be left unset. */
  attentionBias?: boolean;
}

export interface InitModelResult {
  dir: string;
  config: ModelConfig;
  parameterCount: number;
}

export const DEFAULT_INIT_SEED = 0;
/** transformers' default `initializer_range`: std of the normal init of linear and embedding weights. */
export const INITIALIZER_RANGE = 0.02;
/** SwiGLU keeps the parameter count of a 4x MLP with a width of 8/3 x hidden... */
const INTERMEDIATE_RATIO = 8 / 3;
/** ...rounded up to a multiple of 64 so matmul tiles stay full (Llama used 256; 64 suits tiny models better). */
const INTERMEDIATE_MULTIPLE = 64;
const MAX_POSITION_EMBEDDINGS = 4096;
const RMS_NORM_EPS = 1e-6;
const ROPE_THETA: Readonly<Record<Arch, number>> = { llama: 10000, qwen2: 1_000_000, qwen3: 1_000_000 };
const ARCH_CLASS: Readonly<Record<Arch, string>> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};
const TORCH_DTYPE: Readonly<Record<Dtype, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
const TOKENIZER_FILE = 'tokenizer.json';
const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
const GENERATION_CONFIG_FILE = 'generation_config.json';

/** Default MLP width for a hidden size: round(8/3 * hidden) rounded up to a multiple of 64. */
export function defaultIntermediateSize(hidden: number): number {
  return Math.ceil(Math.round(INTERMEDIATE_RATIO * hidden) / INTERMEDIATE_MULTIPLE) * INTERMEDIATE_MULTIPLE;
}

/** Number of trainable parameters (a tied head is counted once, as embed_tokens). */
export function parameterCount(config: ModelConfig): number {
  let n = 0;
  for (const shape of expectedTensors(config).values()) n += numel(shape);
  return n;
}

function positiveInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw invalidArgument(field, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

export interface VocabInfo {
  tokenizerJson: Record<string, unknown> | null; // null: copied from vocabFrom instead of written
  tokenizerConfig: Record<string, unknown> | null;
  vocabSize: number;
  bosId: number | null;
  eosId: number | null;
  chatEndId: number | null;
  /** The id of each special token vocabInfo was asked to ensure. */
  specialIds: Map<string, number>;
}

/** A special token in tokenizer_config.json is either a string or an AddedToken object with `content`. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return null;
}

async function readJson(path: string, optional: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      if (optional) return null;
      throw new ModelFileError(path, 'file not found (vocabFrom needs a directory with tokenizer.json)');
    }
    throw new ModelFileError(path, `cannot be read (${(e as Error).message})`, { cause: e });
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ModelFileError(path, `is not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/**
 * The vocabulary of the built-in tokenizer or of `vocabFrom`'s, with `specialTokens` added where absent (ids after
 * the last one); tokenizer files are returned for writing when they are built in or were extended.
 */
export async function vocabInfo(vocabFrom: string | undefined, specialTokens: readonly string[] = []): Promise<VocabInfo> {
  const own = vocabFrom === undefined;
  const tokPath = own ? TOKENIZER_FILE : join(vocabFrom, TOKENIZER_FILE);
  let tokenizerJson = own ? defaultTokenizerJson() : (await readJson(tokPath, false))!;
  let tokenizerConfig = own ? defaultTokenizerConfig() : ((await readJson(join(vocabFrom, TOKENIZER_CONFIG_FILE), true)) ?? {});
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (e) {
    throw new ModelFileError(tokPath, `cannot be loaded as a tokenizer (${(e as Error).message})`, { cause: e });
  }
  const extended = withSpecialTokens(tokenizer, tokenizerJson, tokenizerConfig, specialTokens, tokPath);
  if (extended) {
    ({ tokenizerJson, tokenizerConfig } = extended);
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  }
  const idOf = (token: string | null): number | null => (token === null ? null : (tokenizer.token_to_id(token) ?? null));
  const eosId = idOf(tokenContent(tokenizerConfig.eos_token));
  return {
    tokenizerJson: own || extended ? tokenizerJson : null,
    tokenizerConfig: own || extended ? tokenizerConfig : null,
    vocabSize: tokenizerVocabSize(tokenizerJson, tokPath),
    // Like Qwen, a tokenizer without a BOS token reports its end-of-text token as bos_token_id.
    bosId: idOf(tokenContent(tokenizerConfig.bos_token)) ?? eosId,
    eosId,
    chatEndId: own ? idOf(IM_END) : null,
    specialIds: new Map(specialTokens.map((t) => [t, tokenizer.token_to_id(t)!])),
  };
}

/** Copies of the tokenizer files with each absent token added as a special token, as tokenizer.add_tokens does; null if none was absent. */
function withSpecialTokens(
  present: Tokenizer,
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
  tokens: readonly string[],
  file: string,
): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } | null {
  const absent = tokens.filter((t) => present.token_to_id(t) === undefined);
  if (absent.length === 0) return null;
  let next = tokenizerVocabSize(tokenizerJson, file);
  const added = [...((tokenizerJson.added_tokens as unknown[] | null | undefined) ?? [])];
  const decoder = { ...((tokenizerConfig.added_tokens_decoder as Record<string, unknown> | undefined) ?? {}) };
  for (const content of absent) {
    const fields = { content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
    added.push({ id: next, ...fields });
    decoder[String(next)] = fields;
    next++;
  }
  return { tokenizerJson: { ...tokenizerJson, added_tokens: added }, tokenizerConfig: { ...tokenizerConfig, added_tokens_decoder: decoder } };
}

/** config.json as transformers would save it for this architecture (keys sorted, as save_pretrained does). */
export function buildRawConfig(
  o: Required<Pick<InitModelOptions, 'arch' | 'hidden' | 'layers' | 'heads' | 'kvHeads' | 'tieEmbeddings' | 'dtype'>> & {
    intermediate: number;
    headDim: number;
    attentionBias: boolean;
  },
  vocab: VocabInfo,
): Record<string, unknown> {
  const raw: Record<string, unknown> = {
    architectures: [ARCH_CLASS[o.arch]],
    attention_dropout: 0.0,
    bos_token_id: vocab.bosId,
    eos_token_id: vocab.eosId,
    head_dim: o.headDim,
    hidden_act: 'silu',
    hidden_size: o.hidden,
    initializer_range: INITIALIZER_RANGE,
    intermediate_size: o.intermediate,
    max_position_embeddings: MAX_POSITION_EMBEDDINGS,
    model_type: o.arch,
    num_attention_heads: o.heads,
    num_hidden_layers: o.layers,
    num_key_value_heads: o.kvHeads,
    rms_norm_eps: RMS_NORM_EPS,
    rope_scaling: null,
    rope_theta: ROPE_THETA[o.arch],
    tie_word_embeddings: o.tieEmbeddings,
    torch_dtype: TORCH_DTYPE[o.dtype],
    use_cache: true,
    vocab_size: vocab.vocabSize,
  };
  if (o.arch === 'llama') {
    raw.attention_bias = o.attentionBias;
    raw.mlp_bias = false;
    raw.pretraining_tp = 1;
  } else {
    if (o.arch === 'qwen3') raw.attention_bias = o.attentionBias;
    raw.max_window_layers = o.layers;
    raw.sliding_window = null;
    raw.use_sliding_window = false;
  }
  return Object.fromEntries(Object.entries(raw).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Norm weights start at 1 and biases at 0; every other (linear or embedding) weight ~ N(0, INITIALIZER_RANGE). */
export function initTensor(name: string, shape: number[], rng: Rng, dtype: Dtype): StoredTensor {
  const values = new Float32Array(numel(shape));
  if (name.endsWith('norm.weight')) values.fill(1);
  else if (!name.endsWith('.bias')) for (let i = 0; i < values.length; i++) values[i] = rng.normal() * INITIALIZER_RANGE;
  return { name, dtype, shape, data: fromFloat32(values, dtype) };
}

/** The decoder settings of InitModelOptions, checked, with defaults applied. */
export interface TextModelSettings {
  arch: Arch;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  dtype: Dtype;
  seed: number;
  tieEmbeddings: boolean;
  attentionBias: boolean;
}

export function textModelSettings(opts: InitModelOptions): TextModelSettings {
  if (!(opts.arch in ARCH_CLASS)) throw invalidArgument('arch', `unsupported architecture "${opts.arch}"; supported: llama, qwen2, qwen3`);
  const hidden = positiveInt('hidden', opts.hidden);
  const layers = positiveInt('layers', opts.layers);
  const heads = positiveInt('heads', opts.heads);
  const kvHeads = positiveInt('kvHeads', opts.kvHeads);
  if (heads % kvHeads !== 0) throw invalidArgument('kvHeads', `heads (${heads}) must be a multiple of kvHeads (${kvHeads})`);
  if (opts.headDim === undefined && hidden % heads !== 0) {
    throw invalidArgument('headDim', `hidden (${hidden}) is not divisible by heads (${heads}); give headDim explicitly`);
  }
  const headDim = positiveInt('headDim', opts.headDim ?? hidden / heads);
  if (headDim % 2 !== 0) throw invalidArgument('headDim', `must be even for rotary embeddings, got ${headDim}`);
  const intermediate = positiveInt('intermediate', opts.intermediate ?? defaultIntermediateSize(hidden));
  const dtype = opts.dtype ?? 'F32';
  if (!isDtype(dtype)) throw invalidArgument('dtype', `must be F32, F16 or BF16, got ${JSON.stringify(dtype)}`);
  const seed = opts.seed ?? DEFAULT_INIT_SEED;
  if (!Number.isSafeInteger(seed)) throw invalidArgument('seed', `must be an integer, got ${JSON.stringify(seed)}`);
  if (opts.arch === 'qwen2' && opts.attentionBias !== undefined) {
    throw invalidArgument('attentionBias', 'qwen2 always has q/k/v biases and no o bias; leave it unset');
  }
  const tieEmbeddings = opts.tieEmbeddings ?? false;
  return { arch: opts.arch, hidden, layers, heads, kvHeads, headDim, intermediate, dtype, seed, tieEmbeddings, attentionBias: opts.attentionBias ?? false };
}

/** Writes a freshly initialised model to `opts.out` (atomically, see writeCheckpoint); same seed, same bytes. */
export async function initModel(opts: InitModelOptions): Promise<InitModelResult> {
  const settings = textModelSettings(opts);
  const { seed, dtype } = settings;
  const vocab = await vocabInfo(opts.vocabFrom);
  const dir = resolve(opts.out);
  const raw = buildRawConfig(settings, vocab);
  const config = parseConfig(raw, join(dir, CONFIG_FILE));

  // One RNG stream per tensor (by position) keeps each tensor's values independent of how others are generated.
  const tensors = [...expectedTensors(config)].map(([name, shape], i) => initTensor(name, shape, new Rng(seed, i), dtype));

  const extraJson: Record<string, unknown> = {
    [NARROWTUNE_MARKER]: { createdBy: 'narrowtune init-model', seed, dtype },
  };
  if (vocab.tokenizerJson && vocab.tokenizerConfig) {
    extraJson[TOKENIZER_FILE] = vocab.tokenizerJson;
    extraJson[TOKENIZER_CONFIG_FILE] = vocab.tokenizerConfig;
    // Chat generations end at <|im_end|>, plain text at <|endoftext|>: stop on either.
    extraJson[GENERATION_CONFIG_FILE] = {
      bos_token_id: vocab.bosId,
      eos_token_id: [vocab.eosId, vocab.chatEndId].filter((id) => id !== null),
      pad_token_id: vocab.eosId,
    };
  }
  await writeCheckpoint(dir, { config, tensors, copyFrom: opts.vocabFrom, extraJson });
  return { dir, config, parameterCount: parameterCount(config) };
}
