// Hugging Face config.json -> typed ModelConfig (with HF's per-architecture defaults), RoPE frequencies and the
// parameter names/shapes a checkpoint of that config must contain.

import { ModelFileError } from '../util/errors.js';
import { isPlainObject, JsonFields } from './json-fields.js';

export type Arch = 'llama' | 'qwen2' | 'qwen3';

export type RopeScaling =
  | null
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface ModelConfig {
  arch: Arch;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieWordEmbeddings: boolean;
  attentionBias: { qkv: boolean; o: boolean };
  mlpBias: boolean;
  qkNorm: boolean;
  maxPositionEmbeddings: number;
  /** The original JSON, written back unchanged when a checkpoint is saved. */
  raw: Record<string, unknown>;
}

export const SUPPORTED_ARCHS: readonly Arch[] = ['llama', 'qwen2', 'qwen3'];

const ARCH_BY_CLASS: Readonly<Record<string, Arch>> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

/** HF defaults that differ per architecture (from each transformers `*Config` class). */
const ARCH_DEFAULTS: Readonly<Record<Arch, { maxPositionEmbeddings: number; headDim: number | null }>> = {
  llama: { maxPositionEmbeddings: 2048, headDim: null },
  qwen2: { maxPositionEmbeddings: 32768, headDim: null },
  // Qwen3Config declares head_dim=128 rather than deriving it from hidden_size.
  qwen3: { maxPositionEmbeddings: 32768, headDim: 128 },
};

export const DEFAULT_RMS_NORM_EPS = 1e-6;
export const DEFAULT_ROPE_THETA = 10000;
const SUPPORTED_ACTIVATION = 'silu';
const SUPPORTED_ROPE_TYPES = 'default, linear, llama3';

function unsupportedArch(file: string, name: string): ModelFileError {
  return new ModelFileError(file, `unsupported architecture "${name}"; supported: ${SUPPORTED_ARCHS.join(', ')}`);
}

function detectArch(json: Record<string, unknown>, file: string): Arch {
  const modelType = json.model_type;
  if (typeof modelType === 'string') {
    if ((SUPPORTED_ARCHS as readonly string[]).includes(modelType)) return modelType as Arch;
    throw unsupportedArch(file, modelType);
  }
  const archs = json.architectures;
  if (Array.isArray(archs) && typeof archs[0] === 'string') {
    const arch = ARCH_BY_CLASS[archs[0]];
    if (arch) return arch;
    throw unsupportedArch(file, archs[0]);
  }
  throw new ModelFileError(file, `has neither model_type nor architectures; supported: ${SUPPORTED_ARCHS.join(', ')}`);
}

/**
 * transformers v5 moved rope_theta and rope_scaling into `rope_parameters`; older configs keep them at top level.
 * Returns the scaling dict (or null) and the theta source.
 */
function ropeSource(json: Record<string, unknown>, file: string): { scaling: Record<string, unknown> | null; theta: unknown } {
  const params = json.rope_parameters;
  if (params !== undefined && params !== null) {
    if (!isPlainObject(params)) throw new ModelFileError(file, 'rope_parameters must be an object');
    return { scaling: params, theta: params.rope_theta ?? json.rope_theta };
  }
  const scaling = json.rope_scaling;
  if (scaling !== undefined && scaling !== null && !isPlainObject(scaling)) {
    throw new ModelFileError(file, 'rope_scaling must be an object or null');
  }
  return { scaling: (scaling as Record<string, unknown> | null | undefined) ?? null, theta: json.rope_theta };
}

function parseRopeScaling(scaling: Record<string, unknown> | null, file: string): RopeScaling {
  if (scaling === null) return null;
  const type = scaling.rope_type ?? scaling.type ?? 'default';
  const f = new JsonFields(scaling, file, 'rope scaling ');
  switch (type) {
    case 'default':
      return null;
    case 'linear':
      return { type: 'linear', factor: f.positiveNumber('factor') };
    case 'llama3': {
      const s = {
        type: 'llama3' as const,
        factor: f.positiveNumber('factor'),
        lowFreqFactor: f.positiveNumber('low_freq_factor'),
        highFreqFactor: f.positiveNumber('high_freq_factor'),
        originalMaxPositionEmbeddings: f.positiveInt('original_max_position_embeddings'),
      };
      if (s.highFreqFactor <= s.lowFreqFactor) {
        throw new ModelFileError(file, 'rope scaling high_freq_factor must be greater than low_freq_factor');
      }
      return s;
    }
    default:
      throw new ModelFileError(file, `rope scaling type ${JSON.stringify(type)} is not supported; supported: ${SUPPORTED_ROPE_TYPES}`);
  }
}

/** Parses a config.json object; every problem is a ModelFileError naming `file` and the field. */
export function parseConfig(json: unknown, file: string): ModelConfig {
  if (!isPlainObject(json)) throw new ModelFileError(file, 'is not a JSON object');
  const arch = detectArch(json, file);
  const f = new JsonFields(json, file);

  const act = json.hidden_act;
  if (act !== undefined && act !== SUPPORTED_ACTIVATION) {
    throw new ModelFileError(file, `hidden_act ${JSON.stringify(act)} is not supported (only "${SUPPORTED_ACTIVATION}")`);
  }

  const hiddenSize = f.positiveInt('hidden_size');
  const numLayers = f.positiveInt('num_hidden_layers');
  const numHeads = f.positiveInt('num_attention_heads');
  const numKvHeads = f.positiveInt('num_key_value_heads', numHeads);
  const intermediateSize = f.positiveInt('intermediate_size');
  const vocabSize = f.positiveInt('vocab_size');
  if (numHeads % numKvHeads !== 0) {
    throw new ModelFileError(
      file,
      `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  const defaults = ARCH_DEFAULTS[arch];
  let headDim: number;
  if (f.has('head_dim')) headDim = f.positiveInt('head_dim');
  else if (defaults.headDim !== null) headDim = defaults.headDim;
  else if (hiddenSize % numHeads === 0) headDim = hiddenSize / numHeads;
  else {
    throw new ModelFileError(
      file,
      `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and head_dim is not given`,
    );
  }
  if (headDim % 2 !== 0) throw new ModelFileError(file, `head_dim ${headDim} must be even for rotary embeddings`);

  const rope = ropeSource(json, file);
  // Partial rotary (rotating only part of each head) changes the graph; refuse rather than silently rotate it all.
  const partial = rope.scaling?.partial_rotary_factor ?? json.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new ModelFileError(file, `partial_rotary_factor ${JSON.stringify(partial)} is not supported (only 1)`);
  }
  const ropeScaling = parseRopeScaling(rope.scaling, file);
  const ropeTheta = new JsonFields({ rope_theta: rope.theta }, file).positiveNumber('rope_theta', DEFAULT_ROPE_THETA);

  let attentionBias: ModelConfig['attentionBias'];
  let mlpBias = false;
  if (arch === 'qwen2') {
    // Qwen2Attention hard-codes bias=True on q/k/v and bias=False on o; Qwen2MLP has no biases.
    attentionBias = { qkv: true, o: false };
  } else {
    const bias = f.bool('attention_bias', false);
    attentionBias = { qkv: bias, o: bias };
    if (arch === 'llama') mlpBias = f.bool('mlp_bias', false);
  }

  return {
    arch,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize,
    vocabSize,
    rmsNormEps: f.positiveNumber('rms_norm_eps', DEFAULT_RMS_NORM_EPS),
    ropeTheta,
    ropeScaling,
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    attentionBias,
    mlpBias,
    qkNorm: arch === 'qwen3',
    maxPositionEmbeddings: f.positiveInt('max_position_embeddings', defaults.maxPositionEmbeddings),
    raw: json,
  };
}

/** Rotary inverse frequencies (length headDim/2), scaled as transformers' rope init functions do. */
export function ropeInvFreq(c: ModelConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s === null) return inv;
  if (s.type === 'linear') return inv.map((v) => v / s.factor);
  // llama3: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated smoothly.
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((freq) => {
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) return freq;
    if (wavelen > lowFreqWavelen) return freq / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (freq / s.factor) + smooth * freq;
  });
}

/** Every HF parameter name of the model with its shape, in a stable order (embeddings, layers, norm, head). */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [c.vocabSize, H]);
  for (let n = 0; n < c.numLayers; n++) {
    const p = `model.layers.${n}`;
    m.set(`${p}.input_layernorm.weight`, [H]);
    const attn: [string, number[], boolean][] = [
      ['q_proj', [qDim, H], c.attentionBias.qkv],
      ['k_proj', [kvDim, H], c.attentionBias.qkv],
      ['v_proj', [kvDim, H], c.attentionBias.qkv],
      ['o_proj', [H, qDim], c.attentionBias.o],
    ];
    for (const [name, shape, bias] of attn) {
      m.set(`${p}.self_attn.${name}.weight`, shape);
      if (bias) m.set(`${p}.self_attn.${name}.bias`, [shape[0]]);
    }
    if (c.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
      m.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
    }
    m.set(`${p}.post_attention_layernorm.weight`, [H]);
    const mlp: [string, number[]][] = [
      ['gate_proj', [I, H]],
      ['up_proj', [I, H]],
      ['down_proj', [H, I]],
    ];
    for (const [name, shape] of mlp) {
      m.set(`${p}.mlp.${name}.weight`, shape);
      if (c.mlpBias) m.set(`${p}.mlp.${name}.bias`, [shape[0]]);
    }
  }
  m.set('model.norm.weight', [H]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, H]);
  return m;
}
