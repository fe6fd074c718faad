// Creates a randomly initialised LLaVA-style model directory as transformers saves one (config.json, weights under
// the pre-4.52 names, tokenizer with an <image> token, preprocessor and processor configs), deterministically from
// a seed: `llava-onevision` (SigLIP tower, Qwen2 decoder, anyres_max_9) or `llava` (CLIP tower, Llama decoder, pad).

import { join, resolve } from 'node:path';
import { invalidArgument } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { CONFIG_FILE, NARROWTUNE_MARKER } from './checkpoint.js';
import type { Arch } from './config.js';
import { INITIALIZER_RANGE, buildRawConfig, initTensor, textModelSettings, vocabInfo, type InitModelOptions } from './init-model.js';
import { writeLlavaCheckpoint } from './llava-checkpoint.js';
import { LLAVA_ARCHS, gridPinpoints, parseLlavaConfig, type LlavaArch, type LlavaConfig } from './llava-config.js';
import { expectedLlavaTensors, partOf, visionPositions } from './llava-names.js';
import { fromFloat32, numel, type Dtype, type StoredTensor } from './safetensors.js';


/** The tower's shape; every field has a small default (DEFAULT_VISION). */
export interface VisionInitOptions {
  hidden?: number;
  layers?: number;
  heads?: number;
  /** MLP width; default 4 × hidden, as in CLIP and SigLIP-base. */
  intermediate?: number;
  imageSize?: number;
  patchSize?: number;
}

export interface InitLlavaOptions extends Omit<InitModelOptions, 'arch' | 'attentionBias'> {
  arch: LlavaArch;
  vision?: VisionInitOptions;
}

export interface InitLlavaResult {
  dir: string;
  config: LlavaConfig;
  parameterCount: number;
}

/** Small enough for tests on a CPU: a 32-pixel image is 4×4 patches of 8 pixels. */
export const DEFAULT_VISION: Required<Omit<VisionInitOptions, 'intermediate'>> = { hidden: 32, layers: 2, heads: 2, imageSize: 32, patchSize: 8 };
const VISION_MLP_RATIO = 4;
export const IMAGE_TOKEN = '<image>';
export const VIDEO_TOKEN = '<video>';
/** Grid pinpoints are {1..6}² tiles, as LLaVA-OneVision's 384-pixel grid, here of the small tile. */
const PINPOINT_STEPS = 6;

interface Flavour {
  text: Arch;
  specialTokens: string[];
}
const FLAVOURS: Readonly<Record<LlavaArch, Flavour>> = {
  'llava-onevision': { text: 'qwen2', specialTokens: [IMAGE_TOKEN, VIDEO_TOKEN] },
  llava: { text: 'llama', specialTokens: [IMAGE_TOKEN] },
};

/** The normalisation constants the two towers were trained with (SigLIP: 0.5; CLIP: OpenAI's dataset statistics). */
const SIGLIP_MEAN_STD = [0.5, 0.5, 0.5];
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
/** PIL's BICUBIC, the resample both image processors use. */
const RESAMPLE_BICUBIC = 3;
const RESCALE_FACTOR = 1 / 255;
const SIGLIP_EPS = 1e-6;
const CLIP_EPS = 1e-5;
const TORCH_DTYPE: Readonly<Record<Dtype, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

function positiveInt(field: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw invalidArgument(field, `must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function visionShape(o: VisionInitOptions = {}): Required<VisionInitOptions> {
  const v = { ...DEFAULT_VISION, ...Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) };
  for (const [k, x] of Object.entries(v)) positiveInt(`vision.${k}`, x);
  const intermediate = positiveInt('vision.intermediate', o.intermediate ?? VISION_MLP_RATIO * v.hidden);
  if (v.hidden % v.heads !== 0) throw invalidArgument('vision.heads', `vision hidden (${v.hidden}) must be a multiple of vision heads (${v.heads})`);
  if (v.imageSize % v.patchSize !== 0) throw invalidArgument('vision.patchSize', `image size (${v.imageSize}) must be a multiple of patch size (${v.patchSize})`);
  return { ...v, intermediate };
}

function sortedKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** config.json as transformers' LlavaOnevisionConfig / LlavaConfig save it. */
function llavaRawConfig(
  arch: LlavaArch,
  text: Record<string, unknown>,
  v: Required<VisionInitOptions>,
  ids: { image: number; video: number | null },
  tie: boolean,
  dtype: Dtype,
): Record<string, unknown> {
  const onevision = arch === 'llava-onevision';
  const vision = sortedKeys({
    attention_dropout: 0.0,
    hidden_act: onevision ? 'gelu_pytorch_tanh' : 'quick_gelu',
    hidden_size: v.hidden,
    image_size: v.imageSize,
    intermediate_size: v.intermediate,
    layer_norm_eps: onevision ? SIGLIP_EPS : CLIP_EPS,
    model_type: onevision ? 'siglip_vision_model' : 'clip_vision_model',
    num_attention_heads: v.heads,
    num_channels: 3,
    num_hidden_layers: v.layers,
    patch_size: v.patchSize,
    ...(onevision ? { vision_use_head: false } : {}),
  });
  const common = {
    image_token_index: ids.image,
    multimodal_projector_bias: true,
    projector_hidden_act: 'gelu',
    text_config: text,
    tie_word_embeddings: tie,
    torch_dtype: TORCH_DTYPE[dtype],
    vision_config: vision,
  };
  if (onevision) {
    return sortedKeys({
      ...common,
      architectures: ['LlavaOnevisionForConditionalGeneration'],
      image_grid_pinpoints: gridPinpoints(v.imageSize, PINPOINT_STEPS),
      model_type: 'llava_onevision',
      use_image_newline_parameter: true,
      video_token_index: ids.video,
      vision_aspect_ratio: 'anyres_max_9',
      vision_feature_layer: -1,
      vision_feature_select_strategy: 'full',
    });
  }
  return sortedKeys({
    ...common,
    architectures: ['LlavaForConditionalGeneration'],
    image_seq_length: (v.imageSize / v.patchSize) ** 2,
    model_type: 'llava',
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
  });
}

/** preprocessor_config.json and processor_config.json as LlavaOnevisionProcessor / LlavaProcessor save them. */
function processorFiles(config: LlavaConfig): Record<string, unknown> {
  const S = config.vision.imageSize;
  const shared = { do_convert_rgb: true, do_normalize: true, do_pad: true, do_rescale: true, do_resize: true, resample: RESAMPLE_BICUBIC, rescale_factor: RESCALE_FACTOR };
  if (config.kind === 'llava_onevision') {
    return {
      'preprocessor_config.json': sortedKeys({
        ...shared,
        image_grid_pinpoints: config.gridPinpoints,
        image_mean: SIGLIP_MEAN_STD,
        image_processor_type: 'LlavaOnevisionImageProcessor',
        image_std: SIGLIP_MEAN_STD,
        processor_class: 'LlavaOnevisionProcessor',
        size: { height: S, width: S },
      }),
      'processor_config.json': {
        image_token: IMAGE_TOKEN,
        num_image_tokens: visionPositions(config.vision),
        processor_class: 'LlavaOnevisionProcessor',
        video_token: VIDEO_TOKEN,
        vision_aspect_ratio: config.aspect,
        vision_feature_select_strategy: config.selectStrategy,
      },
    };
  }
  return {
    // LlavaImageProcessor: do_pad squares the image with the mean colour first, as LLaVA-1.5 trained ("pad").
    'preprocessor_config.json': sortedKeys({
      ...shared,
      crop_size: { height: S, width: S },
      do_center_crop: true,
      image_mean: CLIP_MEAN,
      image_processor_type: 'LlavaImageProcessor',
      image_std: CLIP_STD,
      processor_class: 'LlavaProcessor',
      size: { shortest_edge: S },
    }),
    'processor_config.json': {
      image_token: IMAGE_TOKEN,
      num_additional_image_tokens: 1,
      patch_size: config.vision.patchSize,
      processor_class: 'LlavaProcessor',
      vision_feature_select_strategy: config.selectStrategy,
    },
  };
}

const LAYER_NORM_WEIGHT = /(layer_norm[12]|pre_layrnorm|post_layernorm)\.weight$/;

/**
 * Tower and projector: LayerNorm weights 1, biases 0, other weights ~ N(0, INITIALIZER_RANGE); image_newline
 * ~ N(0, 1/hidden) as LlavaOnevisionModel initialises it.
 */
function initVisionTensor(name: string, shape: number[], rng: Rng, dtype: Dtype, textHidden: number): StoredTensor {
  const values = new Float32Array(numel(shape));
  const std = name === 'image_newline' ? 1 / Math.sqrt(textHidden) : INITIALIZER_RANGE;
  if (LAYER_NORM_WEIGHT.test(name)) values.fill(1);
  else if (!name.endsWith('.bias')) for (let i = 0; i < values.length; i++) values[i] = rng.normal() * std;
  return { name, dtype, shape, data: fromFloat32(values, dtype) };
}

/** Writes a freshly initialised LLaVA-style model to `opts.out` (atomically); same seed, same bytes. */
export async function initLlavaModel(opts: InitLlavaOptions): Promise<InitLlavaResult> {
  const flavour = FLAVOURS[opts.arch];
  if (flavour === undefined) throw invalidArgument('arch', `unsupported architecture "${opts.arch}"; supported: ${LLAVA_ARCHS.join(', ')}`);
  const settings = textModelSettings({ ...opts, arch: flavour.text });
  const vision = visionShape(opts.vision);
  const vocab = await vocabInfo(opts.vocabFrom, flavour.specialTokens);
  const ids = { image: vocab.specialIds.get(IMAGE_TOKEN)!, video: vocab.specialIds.get(VIDEO_TOKEN) ?? null };
  const raw = llavaRawConfig(opts.arch, buildRawConfig(settings, vocab), vision, ids, settings.tieEmbeddings, settings.dtype);
  const dir = resolve(opts.out);
  const config = parseLlavaConfig(raw, join(dir, CONFIG_FILE));

  // One RNG stream per tensor (by position), the decoder's first: its streams are those of init-model's decoder.
  const tensors = [...expectedLlavaTensors(config)].map(([name, shape], i) =>
    partOf(name) === 'language'
      ? initTensor(name, shape, new Rng(settings.seed, i), settings.dtype)
      : initVisionTensor(name, shape, new Rng(settings.seed, i), settings.dtype, settings.hidden),
  );

  const extraJson: Record<string, unknown> = {
    [NARROWTUNE_MARKER]: { createdBy: 'narrowtune init-model', arch: opts.arch, seed: settings.seed, dtype: settings.dtype },
    ...processorFiles(config),
  };
  if (vocab.tokenizerJson && vocab.tokenizerConfig) {
    extraJson['tokenizer.json'] = vocab.tokenizerJson;
    extraJson['tokenizer_config.json'] = vocab.tokenizerConfig;
  }
  if (opts.vocabFrom === undefined) {
    extraJson['generation_config.json'] = {
      bos_token_id: vocab.bosId,
      eos_token_id: [vocab.eosId, vocab.chatEndId].filter((id) => id !== null),
      pad_token_id: vocab.eosId,
    };
  }
  await writeLlavaCheckpoint(dir, { config, layout: 'hf-legacy', tensors, copyFrom: opts.vocabFrom, extraJson });
  let parameterCount = 0;
  for (const t of tensors) if (!(config.text.tieWordEmbeddings && t.name === 'lm_head.weight')) parameterCount += numel(t.shape);
  return { dir, config, parameterCount };
}
