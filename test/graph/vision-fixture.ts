// Tiny LLaVA towers with random weights for the vision graph's tests: config.json as transformers saves it, and
// every tower and projector tensor (expectedVisionTensors' names and shapes) drawn from a seed.
import type { ParamTensor } from '../../src/graph/params.js';
import { parseLlavaConfig, type LlavaConfig } from '../../src/model/llava-config.js';
import { expectedProjectorTensors, expectedVisionTensors, IMAGE_NEWLINE } from '../../src/model/llava-names.js';
import { Rng } from '../../src/util/rng.js';

export const TEXT_HIDDEN = 24;
/** 32-pixel tiles of 8-pixel patches: 16 patches. */
export const TILE = 32;
export const PATCH = 8;

/** config.json of a tiny llava_onevision (SigLIP) or llava (CLIP) model; `vision` and `top` override fields. */
export function tinyLlavaJson(kind: 'llava_onevision' | 'llava', vision: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Record<string, unknown> {
  const siglip = kind === 'llava_onevision';
  return {
    model_type: kind,
    image_token_index: 60,
    projector_hidden_act: 'gelu',
    multimodal_projector_bias: true,
    text_config: {
      model_type: siglip ? 'qwen2' : 'llama',
      vocab_size: 64,
      hidden_size: TEXT_HIDDEN,
      intermediate_size: 48,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
    },
    vision_config: {
      model_type: siglip ? 'siglip_vision_model' : 'clip_vision_model',
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: siglip ? 2 : 3,
      // Head width 16: 1/√16 is a float32 number. onnxruntime fuses the score scaling into FusedMatMul, whose alpha
      // attribute is float32, so with e.g. hd = 8 a float64 graph is off by ~6e-9 and could not be checked to rounding.
      num_attention_heads: 2,
      image_size: TILE,
      patch_size: PATCH,
      layer_norm_eps: siglip ? 1e-6 : 1e-5,
      hidden_act: siglip ? 'gelu_pytorch_tanh' : 'quick_gelu',
      ...vision,
    },
    vision_feature_layer: siglip ? -1 : -2,
    vision_feature_select_strategy: siglip ? 'full' : 'default',
    ...top,
  };
}

export function tinyLlava(kind: 'llava_onevision' | 'llava', vision?: Record<string, unknown>, top?: Record<string, unknown>): LlavaConfig {
  return parseLlavaConfig(tinyLlavaJson(kind, vision, top), 'config.json');
}

/**
 * Tower and projector weights by canonical name. LayerNorm weights scatter around 1 and biases around 0, so every
 * parameter changes the output (unit weights and zero biases would hide a swapped or dropped one).
 */
export function randomVisionParams(c: LlavaConfig, seed = 1): Map<string, ParamTensor> {
  const rng = new Rng(seed);
  const shapes = [...expectedVisionTensors(c.vision), ...expectedProjectorTensors(c)].filter(([name]) => name !== IMAGE_NEWLINE);
  return new Map(
    shapes.map(([name, shape]) => {
      const norm = /(layer_norm[12]|layrnorm|layernorm)\.weight$/.test(name);
      const std = name.endsWith('.bias') || norm ? 0.1 : name.includes('embedding') ? 0.5 : 0.15;
      const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (norm ? 1 : 0) + std * rng.normal());
      return [name, { shape, data }];
    }),
  );
}

/** Normalised pixel tiles [tiles, 3, S, S], uniform in [−1, 1). */
export function randomPixels(tiles: number, side: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: tiles * 3 * side * side }, () => 2 * rng.next() - 1);
}
