// The vision tower (SigLIP or CLIP) and projector of LLaVA-style models as differentiable ops, bottom-up: attention,
// MLP, layer, embeddings, encoder, projector; then the standalone graph that turns pixels into image features.
// Legend: B tiles, S tile side, p patch side, g = S/p, P = g² patches, T positions per tile (P, or P + 1 with CLIP's
// class position), N = B·T, H vision hidden, nh heads, hd head width, K tokens kept per tile, D text hidden.
// Hidden states stay 2-D [N, H] so every projection is one Gemm over all positions, as in transformer.ts.
import type { LlavaConfig, VisionConfig } from '../model/llava-config.js';
import { Tape } from './autodiff.js';
import { type CompiledModel, type FloatDType, GraphBuilder, type Kernels, type Value } from './graph-builder.js';
import type { ParamTensor } from './params.js';
import { initializerLookup, linear, type ParamLookup } from './transformer.js';

const TOWER = 'vision_tower.vision_model';
const PROJECTOR = 'multi_modal_projector';
const CHANNELS = 3;

export const VISION_IO = {
  /** float [B, 3, S, S]: normalised tiles, as the checkpoint's image processor makes them. */
  pixels: 'pixel_values',
  /** float [B, K, D]: what replaces the image tokens' embeddings in the decoder. */
  features: 'image_features',
};

type Activation = VisionConfig['hiddenAct'] | LlavaConfig['projectorAct'];

function activation(t: Tape, x: Value, act: Activation): Value {
  if (act === 'quick_gelu') return t.apply('quick_gelu', [x]);
  return t.apply('gelu', [x], { approximate: act === 'gelu_pytorch_tanh' ? 'tanh' : 'none' });
}

function layerNorm(t: Tape, v: VisionConfig, w: ParamLookup, x: Value, prefix: string): Value {
  return t.apply('layernorm', [x, w(`${prefix}.weight`), w(`${prefix}.bias`)], { eps: v.layerNormEps });
}

/** Patch positions per tile: g², plus CLIP's class position. */
export function towerPositions(v: VisionConfig): number {
  return (v.imageSize / v.patchSize) ** 2 + (v.kind === 'clip' ? 1 : 0);
}

/** Image tokens one tile becomes: the tower's positions, less position 0 under "default" (as transformers drops it). */
export function tileTokens(c: LlavaConfig): number {
  return towerPositions(c.vision) - (c.selectStrategy === 'default' ? 1 : 0);
}

function attention(t: Tape, v: VisionConfig, w: ParamLookup, x: Value, layer: number, b: number, s: number): Value {
  const p = `${TOWER}.encoder.layers.${layer}.self_attn`;
  const hd = v.hiddenSize / v.numHeads;
  const heads = (proj: string) => {
    const h = t.apply('reshape', [linear(t, x, w, `${p}.${proj}`, true)], { shape: [b, s, v.numHeads, hd] }); // [B, T, nh, hd]
    return t.apply('transpose', [h], { perm: [0, 2, 1, 3] }); // [B, nh, T, hd]
  };
  let y = t.apply('bidirectional_attention', [heads('q_proj'), heads('k_proj'), heads('v_proj')]); // [B, nh, T, hd]
  y = t.apply('transpose', [y], { perm: [0, 2, 1, 3] }); // [B, T, nh, hd]
  y = t.apply('reshape', [y], { shape: [b * s, v.hiddenSize] }); // [N, H]
  return linear(t, y, w, `${p}.out_proj`, true);
}

function mlp(t: Tape, v: VisionConfig, w: ParamLookup, x: Value, layer: number): Value {
  const p = `${TOWER}.encoder.layers.${layer}.mlp`;
  return linear(t, activation(t, linear(t, x, w, `${p}.fc1`, true), v.hiddenAct), w, `${p}.fc2`, true); // [N, I] → [N, H]
}

/** A pre-LayerNorm encoder layer (SiglipEncoderLayer, CLIPEncoderLayer). */
function encoderLayer(t: Tape, v: VisionConfig, w: ParamLookup, x: Value, layer: number, b: number, s: number): Value {
  const p = `${TOWER}.encoder.layers.${layer}`;
  const h = t.apply('add', [x, attention(t, v, w, layerNorm(t, v, w, x, `${p}.layer_norm1`), layer, b, s)]);
  return t.apply('add', [h, mlp(t, v, w, layerNorm(t, v, w, h, `${p}.layer_norm2`), layer)]);
}

/**
 * The encoder's input, transformers' hidden_states[0] [N, H]: the stride-p convolution as one matrix product over
 * flattened patches (row-major over the grid, as Conv2d's output is flattened), plus learned positions; CLIP first
 * puts its class embedding before the patches and ends with pre_layrnorm.
 */
function embeddings(t: Tape, v: VisionConfig, w: ParamLookup, pixels: Value): Value {
  const e = `${TOWER}.embeddings`;
  const [b, , side] = pixels.shape;
  const p = v.patchSize;
  const g = side / p;
  const h = v.hiddenSize;
  let x = t.apply('reshape', [pixels], { shape: [b, CHANNELS, g, p, g, p] });
  x = t.apply('transpose', [x], { perm: [0, 2, 4, 1, 3, 5] }); // [B, g, g, 3, p, p]
  x = t.apply('reshape', [x], { shape: [b * g * g, CHANNELS * p * p] }); // [B·P, 3·p·p]
  const kernel = t.apply('reshape', [w(`${e}.patch_embedding.weight`)], { shape: [h, CHANNELS * p * p] });
  x = t.apply('linear', [x, kernel, v.kind === 'siglip' ? w(`${e}.patch_embedding.bias`) : undefined]); // [B·P, H]
  x = t.apply('reshape', [x], { shape: [b, g * g, h] });
  if (v.kind === 'clip') {
    const cls = t.apply('add', [t.g.zeros([b, 1, h], pixels.dtype), w(`${e}.class_embedding`)]); // [B, 1, H]
    x = t.apply('concat', [cls, x], { axis: 1 }); // [B, T, H]
  }
  x = t.apply('add', [x, w(`${e}.position_embedding.weight`)]); // [B, T, H] + [T, H]
  x = t.apply('reshape', [x], { shape: [b * towerPositions(v), h] }); // [N, H]
  return v.kind === 'clip' ? layerNorm(t, v, w, x, `${TOWER}.pre_layrnorm`) : x;
}

/** hidden_states[i] as transformers indexes them (0 = embeddings, −1 = last layer's output, before post_layernorm). */
export function hiddenStateIndex(c: LlavaConfig): number {
  const n = c.vision.numLayers + 1;
  if (c.featureLayer < -n || c.featureLayer >= n) throw new Error(`vision feature layer ${c.featureLayer} is outside -${n}..${n - 1}`);
  return c.featureLayer < 0 ? n + c.featureLayer : c.featureLayer;
}

/** The selected hidden state [B, K, H] of tiles [B, 3, S, S]; layers after it are not built. */
export function visionFeatures(t: Tape, c: LlavaConfig, w: ParamLookup, pixels: Value): Value {
  const v = c.vision;
  const [b, channels, side, side2] = pixels.shape;
  if (channels !== CHANNELS || side !== v.imageSize || side2 !== v.imageSize) {
    throw new Error(`pixel tiles must be [tiles, ${CHANNELS}, ${v.imageSize}, ${v.imageSize}], got [${pixels.shape}]`);
  }
  const s = towerPositions(v);
  let x = embeddings(t, v, w, pixels);
  for (let layer = 0; layer < hiddenStateIndex(c); layer++) x = encoderLayer(t, v, w, x, layer, b, s);
  x = t.apply('reshape', [x], { shape: [b, s, v.hiddenSize] }); // [B, T, H]
  return c.selectStrategy === 'default' ? t.apply('slice', [x], { axis: 1, start: 1, end: s }) : x;
}

/** LlavaMultiModalProjector: linear_1 → activation → linear_2, [M, H] → [M, D]. */
export function projector(t: Tape, c: LlavaConfig, w: ParamLookup, x: Value): Value {
  const h = activation(t, linear(t, x, w, `${PROJECTOR}.linear_1`, c.projectorBias), c.projectorAct);
  return linear(t, h, w, `${PROJECTOR}.linear_2`, c.projectorBias);
}

/** Image features [B, K, D] of tiles [B, 3, S, S]: the decoder's input embeddings at the image tokens. */
export function imageFeatures(t: Tape, c: LlavaConfig, w: ParamLookup, pixels: Value): Value {
  const selected = visionFeatures(t, c, w, pixels); // [B, K, H]
  const [b, k, h] = selected.shape;
  const flat = t.apply('reshape', [selected], { shape: [b * k, h] }); // [B·K, H]
  return t.apply('reshape', [projector(t, c, w, flat)], { shape: [b, k, c.text.hiddenSize] });
}

export interface VisionGraphSpec {
  config: LlavaConfig;
  /** Tower and projector tensors by canonical name (more may be present); all become initializers. */
  params: ReadonlyMap<string, ParamTensor>;
  /** Tiles per run. */
  tiles: number;
  /**
   * float64 only in tests. A float64 graph needs the session option `float64` (runtime/session.ts): onnxruntime
   * would otherwise fuse quick_gelu into a float32-only kernel.
   */
  dtype?: FloatDType;
  /** Lowering of attention (default fused); runtime/session.ts picks it per provider. */
  kernels?: Kernels;
  /** Initializers from this size on travel as external data (default EXTERNAL_DATA_MIN_BYTES). */
  minExternalBytes?: number;
}

/**
 * pixel_values [tiles, 3, S, S] → image_features [tiles, K, D] with the frozen weights as initializers: run once per
 * image, its features can be cached and fed to the decoder in place of running the tower in every step.
 */
export function compileVisionEncoder(spec: VisionGraphSpec): CompiledModel {
  const dtype = spec.dtype ?? 'float32';
  const g = new GraphBuilder('narrowtune_vision_encoder', dtype, spec.kernels);
  const tape = new Tape(g);
  const side = spec.config.vision.imageSize;
  const pixels = g.input(VISION_IO.pixels, dtype, [spec.tiles, CHANNELS, side, side]);
  const w = initializerLookup(g, spec.params, new Map(), dtype);
  g.output(imageFeatures(tape, spec.config, w, pixels), VISION_IO.features);
  return g.compile(spec.minExternalBytes);
}
