// LLaVA-style checkpoints (LLaVA-OneVision, LLaVA-1.5): a vision tower, a projector and a text decoder.
// The decoder's part is an ordinary ModelConfig, so policies, probes and the train step read it unchanged.
//
// Three config.json forms are read: transformers' `llava_onevision` and `llava` (a text_config and a vision_config
// inside a wrapper) and the original LLaVA-NeXT/lmms-lab form (`LlavaQwenForCausalLM`: Qwen2 fields at the top
// level plus `mm_*` fields, and no vision_config at all).

import { ModelFileError } from '../util/errors.js';
import { isPlainObject, JsonFields } from './json-fields.js';
import { parseConfig, type Arch, type ModelConfig } from './config.js';

/** The vision encoder: SigLIP (LLaVA-OneVision) or CLIP (LLaVA-1.5), both pre-LayerNorm ViTs without rotary. */
export interface VisionConfig {
  kind: 'siglip' | 'clip';
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  imageSize: number;
  patchSize: number;
  layerNormEps: number;
  /** gelu_pytorch_tanh (SigLIP), gelu (erf), quick_gelu (CLIP ViT-L/336). */
  hiddenAct: 'gelu_pytorch_tanh' | 'gelu' | 'quick_gelu';
}

export interface LlavaConfig {
  kind: 'llava_onevision' | 'llava';
  text: ModelConfig;
  vision: VisionConfig;
  /** The projector's activation between linear_1 and linear_2 (gelu = erf form). */
  projectorAct: 'gelu' | 'gelu_pytorch_tanh';
  /** hidden_states index (HF convention: 0 = embeddings, -1 = last encoder layer, before post_layernorm). */
  featureLayer: number;
  /** default: drop the CLS position (CLIP); full: keep every position. */
  selectStrategy: 'default' | 'full';
  imageTokenIndex: number;
  /** How an image becomes tiles: pad (one square tile) or anyres_max_9 (LLaVA-OneVision's grid). */
  aspect: 'pad' | 'anyres_max_9';
  /** Candidate (height, width) resolutions for anyres. */
  gridPinpoints: [number, number][];
  /** Whether the checkpoint has image_newline (LLaVA-OneVision). */
  hasImageNewline: boolean;
  /** The original JSON, written back unchanged when a checkpoint is saved. */
  raw: Record<string, unknown>;
  /** hf: transformers' composite config; lmms-lab: the original LLaVA-NeXT form. */
  form: 'hf' | 'lmms-lab';
  /** Whether linear_1 and linear_2 have biases (transformers' multimodal_projector_bias; always in LLaVA-NeXT). */
  projectorBias: boolean;
}

/** init-model's names for the two LLaVA flavours it can create. */
export type LlavaArch = 'llava-onevision' | 'llava';
export const LLAVA_ARCHS: readonly LlavaArch[] = ['llava-onevision', 'llava'];

/** Only RGB images are read. */
export const IMAGE_CHANNELS = 3;
/** LLaVA-NeXT never puts an image token in the vocabulary: it splits prompts at "<image>" and inserts this id. */
export const LLAVA_NEXT_IMAGE_PLACEHOLDER = -200;

const HF_CLASSES: Readonly<Record<string, LlavaConfig['kind']>> = {
  LlavaOnevisionForConditionalGeneration: 'llava_onevision',
  LlavaForConditionalGeneration: 'llava',
};
const LMMS_LAB_CLASS = 'LlavaQwenForCausalLM';
/** LLaVA-NeXT saves model_type llava_qwen (LlavaQwenConfig); older lmms-lab uploads say llava or qwen2. */
const LMMS_LAB_MODEL_TYPES = ['llava_qwen', 'llava', 'qwen2'];

/** transformers' LlavaOnevisionConfig default grid: every (h, w) in {1..6}² × 384. */
const ONEVISION_PINPOINT_STEPS = 6;
const ONEVISION_TILE = 384;

/** What each kind takes when a field is absent, from transformers' LlavaOnevisionConfig and LlavaConfig. */
const KIND_DEFAULTS: Readonly<
  Record<LlavaConfig['kind'], { textType: Arch; visionType: string; imageToken: number; featureLayer: number; strategy: LlavaConfig['selectStrategy'] }>
> = {
  llava_onevision: { textType: 'qwen2', visionType: 'siglip_vision_model', imageToken: 151646, featureLayer: -1, strategy: 'full' },
  llava: { textType: 'llama', visionType: 'clip_vision_model', imageToken: 32000, featureLayer: -2, strategy: 'default' },
};

/**
 * Text sub-config fields transformers fills from the config class when a text_config leaves them out (LlamaConfig,
 * Qwen2Config, Qwen3Config). Hub configs omit them: llava-hf's text_config often lists only what differs.
 * num_key_value_heads: Qwen2Config/Qwen3Config default to 32, not to num_attention_heads as LlamaConfig does.
 */
const TEXT_DEFAULTS: Readonly<Record<Arch, Record<string, unknown>>> = {
  llama: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32 },
  qwen2: { vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32 },
  qwen3: { vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32 },
};

/** SiglipVisionConfig's and CLIPVisionConfig's defaults, applied to fields a vision_config leaves out. */
const VISION_DEFAULTS: Readonly<Record<VisionConfig['kind'], Omit<VisionConfig, 'kind'>>> = {
  siglip: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 16, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' },
  clip: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 32, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' },
};
const VISION_MODEL_TYPES: Readonly<Record<string, VisionConfig['kind']>> = { siglip_vision_model: 'siglip', clip_vision_model: 'clip' };

/**
 * Towers an lmms-lab config names in mm_vision_tower (matched on the name's last path component). LLaVA-NeXT's
 * SigLipVisionTower deletes so400m's 27th layer and its head before training, so its checkpoints hold 26 layers.
 */
const KNOWN_TOWERS: Readonly<Record<string, VisionConfig>> = {
  'siglip-so400m-patch14-384': {
    kind: 'siglip', hiddenSize: 1152, intermediateSize: 4304, numLayers: 26, numHeads: 16, imageSize: 384, patchSize: 14, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh',
  },
  'clip-vit-large-patch14-336': {
    kind: 'clip', hiddenSize: 1024, intermediateSize: 4096, numLayers: 24, numHeads: 16, imageSize: 336, patchSize: 14, layerNormEps: 1e-5, hiddenAct: 'quick_gelu',
  },
};

const VISION_ACTS: readonly VisionConfig['hiddenAct'][] = ['gelu_pytorch_tanh', 'gelu', 'quick_gelu'];
const PROJECTOR_ACTS: readonly LlavaConfig['projectorAct'][] = ['gelu', 'gelu_pytorch_tanh'];
const STRATEGIES: readonly LlavaConfig['selectStrategy'][] = ['default', 'full'];

/** Which of the three forms a config.json is; null for a config that is not LLaVA-style (a text-only model). */
export function llavaForm(json: unknown): { form: 'hf'; kind: LlavaConfig['kind'] } | { form: 'lmms-lab' } | null {
  if (!isPlainObject(json)) return null;
  if (json.model_type === 'llava_onevision') return { form: 'hf', kind: 'llava_onevision' };
  if (json.model_type === 'llava' && json.text_config !== undefined) return { form: 'hf', kind: 'llava' };
  const cls = Array.isArray(json.architectures) ? json.architectures[0] : undefined;
  if (typeof cls === 'string' && cls in HF_CLASSES) return { form: 'hf', kind: HF_CLASSES[cls] };
  if (cls === LMMS_LAB_CLASS || json.model_type === 'llava_qwen' || typeof json.mm_vision_tower === 'string') return { form: 'lmms-lab' };
  return null;
}

/** Whether a config.json describes a LLaVA-style model (so the text-only reader must not take it). */
export function isLlavaConfig(json: unknown): boolean {
  return llavaForm(json) !== null;
}

/**
 * Parses a LLaVA-style config.json; every problem is a ModelFileError naming `file` and the field.
 * `towerShapes` (canonical tensor names → shapes) lets an lmms-lab config, which has no vision_config, take the
 * tower's sizes from its weights; without them a known mm_vision_tower's published sizes are used.
 */
export function parseLlavaConfig(json: unknown, file: string, towerShapes?: ReadonlyMap<string, readonly number[]>): LlavaConfig {
  const form = llavaForm(json);
  if (form === null || !isPlainObject(json)) {
    throw new ModelFileError(
      file,
      `is not a LLaVA-style config; supported: model_type llava_onevision or llava (transformers), architectures ${LMMS_LAB_CLASS} (LLaVA-NeXT)`,
    );
  }
  const cfg = form.form === 'hf' ? parseHf(json, file, form.kind) : parseLmmsLab(json, file, towerShapes);
  checkConsistency(cfg, file);
  return cfg;
}

function parseHf(json: Record<string, unknown>, file: string, kind: LlavaConfig['kind']): LlavaConfig {
  const r = new JsonFields(json, file);
  const d = KIND_DEFAULTS[kind];
  const textJson = r.object('text_config');
  const visionJson = r.object('vision_config');
  if (textJson === null) throw r.fail('text_config', 'is missing (required: the language model\'s config)');
  // transformers' default vision_config changed between releases; a checkpoint always states its own.
  if (visionJson === null) throw r.fail('vision_config', 'is missing (required: the vision tower\'s config)');

  const onevision = kind === 'llava_onevision';
  return {
    kind,
    form: 'hf',
    text: parseTextConfig(textJson, file, d.textType),
    vision: parseVisionConfig(visionJson, file, d.visionType),
    projectorAct: r.oneOf('projector_hidden_act', PROJECTOR_ACTS, 'gelu'),
    projectorBias: r.bool('multimodal_projector_bias', true),
    featureLayer: featureLayer(r, 'vision_feature_layer', d.featureLayer),
    selectStrategy: r.oneOf('vision_feature_select_strategy', STRATEGIES, d.strategy),
    // Newer transformers write image_token_id; both name the same attribute.
    imageTokenIndex: r.int(r.has('image_token_index') ? 'image_token_index' : 'image_token_id', d.imageToken, (v) => v >= 0, 'a token id'),
    // LLaVA-1.5 squares the image with the mean colour (its processor's do_pad); transformers' llava has no field.
    aspect: onevision ? r.oneOf('vision_aspect_ratio', ['anyres_max_9'] as const, 'anyres_max_9') : 'pad',
    gridPinpoints: onevision ? pinpoints(r, 'image_grid_pinpoints', defaultOnevisionPinpoints()) : [],
    hasImageNewline: onevision,
    raw: json,
  };
}

function parseLmmsLab(json: Record<string, unknown>, file: string, towerShapes?: ReadonlyMap<string, readonly number[]>): LlavaConfig {
  const r = new JsonFields(json, file);
  const cls = Array.isArray(json.architectures) ? json.architectures[0] : undefined;
  if (cls !== undefined && cls !== LMMS_LAB_CLASS) {
    throw r.fail('architectures', `${JSON.stringify(cls)} is not supported; of the LLaVA-NeXT classes only ${LMMS_LAB_CLASS} is`);
  }
  const modelType = r.string('model_type');
  if (modelType !== null && !LMMS_LAB_MODEL_TYPES.includes(modelType)) {
    throw r.fail('model_type', `${JSON.stringify(modelType)} is not supported with ${LMMS_LAB_CLASS}; supported: ${LMMS_LAB_MODEL_TYPES.join(', ')}`);
  }
  const projector = r.string('mm_projector_type') ?? 'linear';
  if (projector !== 'mlp2x_gelu') throw r.fail('mm_projector_type', `${JSON.stringify(projector)} is not supported (only "mlp2x_gelu")`);
  const aspect = r.oneOf('image_aspect_ratio', ['anyres_max_9', 'pad'] as const, 'pad');
  const merge = r.string('mm_patch_merge_type') ?? 'flat';
  if (aspect === 'anyres_max_9' && merge !== 'spatial_unpad') {
    throw r.fail('mm_patch_merge_type', `${JSON.stringify(merge)} is not supported with image_aspect_ratio anyres_max_9 (only "spatial_unpad")`);
  }

  const vision = lmmsLabVision(r, file, towerShapes);
  const mmHidden = r.positiveInt('mm_hidden_size', vision.hiddenSize);
  if (mmHidden !== vision.hiddenSize) {
    throw r.fail('mm_hidden_size', `is ${mmHidden}, but the vision tower's hidden size is ${vision.hiddenSize}`);
  }
  // LLaVA-NeXT's SigLipVisionTower ignores mm_vision_select_layer/feature: it always takes the last (kept) layer's
  // output, before post_layernorm, at every position. Its CLIPVisionTower honours both.
  const siglip = vision.kind === 'siglip';
  const feature = siglip ? 'patch' : r.oneOf('mm_vision_select_feature', ['patch', 'cls_patch'] as const, 'patch');
  return {
    kind: 'llava_onevision',
    form: 'lmms-lab',
    // The top level is a Qwen2 config under another model_type; raw stays the file's own JSON.
    text: { ...parseConfig({ ...json, model_type: 'qwen2' }, file), raw: json },
    vision,
    projectorAct: 'gelu',
    projectorBias: true,
    featureLayer: siglip ? -1 : featureLayer(r, 'mm_vision_select_layer', -1),
    selectStrategy: feature === 'patch' && !siglip ? 'default' : 'full',
    imageTokenIndex: r.int('image_token_index', LLAVA_NEXT_IMAGE_PLACEHOLDER),
    aspect,
    gridPinpoints: aspect === 'anyres_max_9' ? pinpoints(r, 'image_grid_pinpoints', null) : [],
    // LlavaMetaModel creates image_newline exactly when the merge type contains "unpad".
    hasImageNewline: merge.includes('unpad'),
    raw: json,
  };
}

/** A text sub-config with transformers' class defaults for absent fields, parsed by the text-model parser. */
function parseTextConfig(textJson: Record<string, unknown>, file: string, defaultType: Arch): ModelConfig {
  const type = textJson.model_type ?? defaultType;
  const defaults = typeof type === 'string' && type in TEXT_DEFAULTS ? TEXT_DEFAULTS[type as Arch] : {};
  const filled: Record<string, unknown> = { ...defaults, model_type: type };
  for (const [k, v] of Object.entries(textJson)) if (v !== undefined && k !== 'model_type') filled[k] = v;
  return { ...parseConfig(filled, `${file} (text_config)`), raw: textJson };
}

function parseVisionConfig(visionJson: Record<string, unknown>, file: string, defaultType: string): VisionConfig {
  const r = new JsonFields(visionJson, file, 'vision_config.');
  const type = r.string('model_type') ?? defaultType;
  const kind = VISION_MODEL_TYPES[type];
  if (kind === undefined) {
    throw r.fail('model_type', `${JSON.stringify(type)} is not supported; supported: ${Object.keys(VISION_MODEL_TYPES).join(', ')}`);
  }
  const d = VISION_DEFAULTS[kind];
  const channels = r.positiveInt('num_channels', IMAGE_CHANNELS);
  if (channels !== IMAGE_CHANNELS) throw r.fail('num_channels', `must be ${IMAGE_CHANNELS} (RGB), got ${channels}`);
  return {
    kind,
    hiddenSize: r.positiveInt('hidden_size', d.hiddenSize),
    intermediateSize: r.positiveInt('intermediate_size', d.intermediateSize),
    numLayers: r.positiveInt('num_hidden_layers', d.numLayers),
    numHeads: r.positiveInt('num_attention_heads', d.numHeads),
    imageSize: r.positiveInt('image_size', d.imageSize),
    patchSize: r.positiveInt('patch_size', d.patchSize),
    layerNormEps: r.positiveNumber('layer_norm_eps', d.layerNormEps),
    hiddenAct: r.oneOf('hidden_act', VISION_ACTS, d.hiddenAct),
  };
}

/**
 * The tower of an lmms-lab config: an explicit vision_config (a transformers SiglipVisionConfig/CLIPVisionConfig
 * dict) wins; otherwise sizes come from the weights and the rest (heads, epsilon, activation) from the known tower
 * mm_vision_tower names, or that tower's published sizes when no weights are given.
 */
function lmmsLabVision(r: JsonFields, file: string, towerShapes?: ReadonlyMap<string, readonly number[]>): VisionConfig {
  const explicit = r.object('vision_config');
  const towerName = r.string('mm_vision_tower');
  // LLaVA-NeXT's builder picks the class by name: "siglip" anywhere, or openai/laion CLIP.
  const kind = towerName === null ? null : /siglip/i.test(towerName) ? 'siglip' : /clip/i.test(towerName) ? 'clip' : null;
  if (explicit !== null) return parseVisionConfig(explicit, file, kind === 'clip' ? 'clip_vision_model' : 'siglip_vision_model');
  if (towerName === null) throw r.fail('mm_vision_tower', 'is missing; an lmms-lab config needs it (or a vision_config object) to describe its vision tower');
  const known = KNOWN_TOWERS[towerName.split(/[\\/]/).pop() ?? ''];
  if (known === undefined || known.kind !== kind) {
    throw r.fail(
      'mm_vision_tower',
      `${JSON.stringify(towerName)} is not a tower narrowtune knows the shape of (known: ${Object.keys(KNOWN_TOWERS).join(', ')}); ` +
        'add a "vision_config" object with its transformers SiglipVisionConfig or CLIPVisionConfig fields to config.json',
    );
  }
  if (towerShapes === undefined) return known;
  const { gridSide, ...sizes } = towerSizes(towerShapes, known.kind, file);
  // The patch convolution drops a partial last patch (so400m: 384 px of 14-pixel patches is 27 a side), so the
  // weights fix the image size only up to that remainder: keep the known size when it gives the same grid.
  const imageSize = Math.floor(known.imageSize / sizes.patchSize) === gridSide ? known.imageSize : gridSide * sizes.patchSize;
  return { ...known, ...sizes, imageSize };
}

const TOWER = 'vision_tower.vision_model.';

/** Hidden, intermediate, layer count, patch size and patches per side read off a tower's weights (canonical names). */
export function towerSizes(
  shapes: ReadonlyMap<string, readonly number[]>,
  kind: VisionConfig['kind'],
  file: string,
): Pick<VisionConfig, 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'patchSize'> & { gridSide: number } {
  const need = (name: string, rank: number): readonly number[] => {
    const s = shapes.get(TOWER + name);
    if (s === undefined) throw new ModelFileError(file, `has no vision tower tensor ${name} to take the tower's shape from`);
    if (s.length !== rank) throw new ModelFileError(file, `vision tower tensor ${name} has shape [${s.join(',')}], expected ${rank} dimensions`);
    return s;
  };
  const [hiddenSize, channels, patchSize, patchW] = need('embeddings.patch_embedding.weight', 4);
  if (channels !== IMAGE_CHANNELS || patchW !== patchSize) {
    throw new ModelFileError(file, `vision tower patch_embedding has shape [${[hiddenSize, channels, patchSize, patchW].join(',')}], expected [hidden,3,p,p]`);
  }
  const positions = need('embeddings.position_embedding.weight', 2)[0] - (kind === 'clip' ? 1 : 0);
  const grid = Math.round(Math.sqrt(positions));
  if (grid * grid !== positions) throw new ModelFileError(file, `vision tower has ${positions} patch positions, not a square grid`);
  let numLayers = 0;
  while (shapes.has(`${TOWER}encoder.layers.${numLayers}.layer_norm1.weight`)) numLayers++;
  if (numLayers === 0) throw new ModelFileError(file, 'has no vision tower layers (encoder.layers.0.*)');
  return { hiddenSize, intermediateSize: need('encoder.layers.0.mlp.fc1.weight', 2)[0], numLayers, patchSize, gridSide: grid };
}

/** One integer hidden_states index; a list (several layers' features concatenated) is refused. */
function featureLayer(r: JsonFields, field: string, fallback: number): number {
  const v = r.obj[field];
  if (Array.isArray(v)) {
    throw r.fail(field, `${JSON.stringify(v)} is a list (several layers' features concatenated), which is not supported; give one layer index`);
  }
  return r.int(field, fallback);
}

function pinpoints(r: JsonFields, field: string, fallback: [number, number][] | null): [number, number][] {
  const v = r.obj[field];
  if (v === undefined || v === null) {
    if (fallback !== null) return fallback;
    throw r.fail(field, 'is missing; anyres needs the candidate resolutions');
  }
  const ok = (p: unknown): p is [number, number] => Array.isArray(p) && p.length === 2 && p.every((n) => Number.isSafeInteger(n) && (n as number) > 0);
  if (!Array.isArray(v) || v.length === 0 || !v.every(ok)) throw r.fail(field, 'must be a non-empty list of [height, width] pairs of positive integers');
  return v.map(([h, w]) => [h, w]);
}

function defaultOnevisionPinpoints(): [number, number][] {
  return gridPinpoints(ONEVISION_TILE, ONEVISION_PINPOINT_STEPS);
}

/** Every (h, w) with h, w in {1..steps} × tile, rows first, as transformers' LlavaOnevisionConfig lists them. */
export function gridPinpoints(tile: number, steps: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i <= steps; i++) for (let j = 1; j <= steps; j++) out.push([i * tile, j * tile]);
  return out;
}

function checkConsistency(c: LlavaConfig, file: string): void {
  const v = c.vision;
  if (v.hiddenSize % v.numHeads !== 0) {
    throw new ModelFileError(file, `vision hidden_size (${v.hiddenSize}) is not divisible by num_attention_heads (${v.numHeads})`);
  }
  if (v.patchSize > v.imageSize) {
    throw new ModelFileError(file, `vision patch_size (${v.patchSize}) is larger than image_size (${v.imageSize})`);
  }
  // hidden_states has numLayers + 1 entries (the embeddings first).
  const n = v.numLayers + 1;
  if (c.featureLayer < -n || c.featureLayer >= n) {
    throw new ModelFileError(file, `vision feature layer ${c.featureLayer} is outside the tower's hidden states (-${n}..${n - 1})`);
  }
  const placeholder = c.form === 'lmms-lab' && c.imageTokenIndex === LLAVA_NEXT_IMAGE_PLACEHOLDER;
  if (!placeholder && (c.imageTokenIndex < 0 || c.imageTokenIndex >= c.text.vocabSize)) {
    throw new ModelFileError(file, `image token index ${c.imageTokenIndex} is outside the vocabulary (vocab_size ${c.text.vocabSize})`);
  }
}
