// The Llama/Qwen2/Qwen3 decoder as differentiable ops, top to bottom: attention, MLP, block, model, loss.
// Legend: B batch, T sequence, N = B·T tokens, H hidden, nh/kvh query/kv heads, hd head width, V vocab.
// Hidden states stay 2-D [N, H] so every projection is one Gemm over all tokens.
import { ropeInvFreq, type ModelConfig } from '../model/config.js';
import type { Tape } from './autodiff.js';
import type { FloatDType, GraphBuilder, Value } from './graph-builder.js';
import type { ParamTensor } from './params.js';

/**
 * Looks up a parameter by its Hugging Face name: a trainable graph input or a frozen initializer. `adapter`, when
 * set, gives a term that linear() adds to a layer's output, given the weight's name and the layer's input (lora.ts).
 */
export type ParamLookup = ((name: string) => Value) & { adapter?: (weight: string, x: Value) => Value | null };

/**
 * Looks weights up as initializers, each stored once: pass the same `stored` map to several lookups
 * (e.g. a base and a current model) and a ParamTensor they share becomes one initializer.
 */
export function initializerLookup(
  g: GraphBuilder,
  params: ReadonlyMap<string, ParamTensor>,
  stored = new Map<ParamTensor, Value>(),
  dtype: FloatDType = 'float32',
  half = false,
): ParamLookup {
  return (name) => {
    const p = params.get(name);
    if (!p) throw new Error(`the model has no tensor ${name}`);
    let v = stored.get(p);
    if (!v) {
      // `half`: matrices the checkpoint holds in half precision stay so; the ops that read them cast on use.
      v =
        half && p.half && p.shape.length === 2 && dtype === 'float32'
          ? g.initializer(name, p.half.dtype, p.shape, p.half.bytes)
          : g.initializer(name, dtype, p.shape, dtype === 'float32' ? p.data : Float64Array.from(p.data));
      stored.set(p, v);
    }
    return v;
  };
}

export interface TokenBatch {
  ids: Value; // [N] int64
  targets: Value; // [N] int64, already shifted (targets[t] is the label of position t), -100 ignored
  lossScale: Value; // [] 1 / valid targets of the whole optimizer step
  batch: number;
  seq: number;
  /** LLaVA-style image positions, whose input embeddings are image features instead of token embeddings. */
  image?: ImageInputs;
}

/**
 * Image features at their positions: embeds [N, H] holds them there and zeros elsewhere; mask [N, 1] is 1 at an
 * image position, 0 elsewhere. The decoder's input is embed(ids)·(1 − mask) + embeds, so an image position
 * sends no gradient to the embedding table (its row is multiplied by zero) and its value is the feature exactly.
 */
export interface ImageInputs {
  embeds: Value;
  mask: Value;
}

export interface Rope {
  cos: Value; // [T, hd] (or anything broadcasting against [B, heads, T, hd], e.g. [B, 1, T, hd])
  sin: Value; // [T, hd] (likewise)
}

export function ropeTables(t: Tape, c: ModelConfig, seq: number): Rope {
  const invFreq = ropeInvFreq(c);
  const hd = c.headDim;
  const cos = new Float64Array(seq * hd);
  const sin = new Float64Array(seq * hd);
  for (let p = 0; p < seq; p++) {
    for (let i = 0; i < hd; i++) {
      const angle = p * invFreq[i % (hd / 2)]; // HF: emb = cat(freqs, freqs)
      cos[p * hd + i] = Math.cos(angle);
      sin[p * hd + i] = Math.sin(angle);
    }
  }
  return { cos: t.g.constant(cos, [seq, hd]), sin: t.g.constant(sin, [seq, hd]) };
}

export function linear(t: Tape, x: Value, w: ParamLookup, prefix: string, bias: boolean): Value {
  const y = t.apply('linear', [x, w(`${prefix}.weight`), bias ? w(`${prefix}.bias`) : undefined]);
  const delta = w.adapter?.(`${prefix}.weight`, x);
  return delta ? t.apply('add', [y, delta]) : y;
}

/** [N, heads·hd] → [B, heads, T, hd], with Qwen3's per-head RMSNorm before RoPE. */
export function splitHeads(t: Tape, c: ModelConfig, x: Value, heads: number, b: number, s: number, norm: Value | null, rope: Rope): Value {
  let h = t.apply('reshape', [x], { shape: [b, s, heads, c.headDim] }); // [B, T, heads, hd]
  if (norm) h = t.apply('rmsnorm', [h, norm], { eps: c.rmsNormEps });
  h = t.apply('transpose', [h], { perm: [0, 2, 1, 3] }); // [B, heads, T, hd]
  return t.apply('rope', [h, rope.cos, rope.sin]);
}

/**
 * Above this many bytes of attention probabilities held for the backward pass (all layers together), the backward
 * pass recomputes each layer's P from q and k instead. The 0.5B shape at sequence 2048 would hold 5.6 GB; at 512,
 * 352 MB, which stays.
 */
export const ATTENTION_SAVED_MAX_BYTES = 2 ** 30;

function recomputeAttention(c: ModelConfig, b: number, s: number): boolean {
  return c.numLayers * b * c.numHeads * s * s * 4 > ATTENTION_SAVED_MAX_BYTES;
}

function attention(t: Tape, c: ModelConfig, w: ParamLookup, x: Value, layer: number, b: number, s: number, rope: Rope): Value {
  const p = `model.layers.${layer}.self_attn`;
  const qkvBias = c.attentionBias.qkv;
  const qNorm = c.qkNorm ? w(`${p}.q_norm.weight`) : null;
  const kNorm = c.qkNorm ? w(`${p}.k_norm.weight`) : null;
  const q = splitHeads(t, c, linear(t, x, w, `${p}.q_proj`, qkvBias), c.numHeads, b, s, qNorm, rope);
  const k = splitHeads(t, c, linear(t, x, w, `${p}.k_proj`, qkvBias), c.numKvHeads, b, s, kNorm, rope);
  let v = t.apply('reshape', [linear(t, x, w, `${p}.v_proj`, qkvBias)], { shape: [b, s, c.numKvHeads, c.headDim] });
  v = t.apply('transpose', [v], { perm: [0, 2, 1, 3] }); // [B, kvh, T, hd]
  let y = t.apply('attention', [q, k, v], { recompute: recomputeAttention(c, b, s) }); // [B, nh, T, hd]
  y = t.apply('transpose', [y], { perm: [0, 2, 1, 3] }); // [B, T, nh, hd]
  y = t.apply('reshape', [y], { shape: [b * s, c.numHeads * c.headDim] }); // [N, nh·hd]
  return linear(t, y, w, `${p}.o_proj`, c.attentionBias.o); // [N, H]
}

export function mlp(t: Tape, c: ModelConfig, w: ParamLookup, x: Value, layer: number): Value {
  const p = `model.layers.${layer}.mlp`;
  const gate = linear(t, x, w, `${p}.gate_proj`, c.mlpBias); // [N, I]
  const up = linear(t, x, w, `${p}.up_proj`, c.mlpBias); // [N, I]
  return linear(t, t.apply('swiglu', [gate, up]), w, `${p}.down_proj`, c.mlpBias); // [N, H]
}

function block(t: Tape, c: ModelConfig, w: ParamLookup, x: Value, layer: number, b: number, s: number, rope: Rope): Value {
  const p = `model.layers.${layer}`;
  const eps = { eps: c.rmsNormEps };
  const h = t.apply('add', [x, attention(t, c, w, t.apply('rmsnorm', [x, w(`${p}.input_layernorm.weight`)], eps), layer, b, s, rope)]);
  return t.apply('add', [h, mlp(t, c, w, t.apply('rmsnorm', [h, w(`${p}.post_attention_layernorm.weight`)], eps), layer)]);
}

/** Final hidden states [N, H] after the last norm. */
export function decoder(t: Tape, c: ModelConfig, w: ParamLookup, ids: Value, b: number, s: number, image?: ImageInputs): Value {
  const rope = ropeTables(t, c, s);
  let x = t.apply('embedding', [w('model.embed_tokens.weight'), ids]); // [N, H]
  if (image) {
    const keep = t.g.sub(t.g.scalar(1, image.mask.dtype), image.mask); // [N, 1]
    x = t.apply('add', [t.apply('mul', [x, keep]), image.embeds]);
  }
  for (let layer = 0; layer < c.numLayers; layer++) x = block(t, c, w, x, layer, b, s, rope);
  return t.apply('rmsnorm', [x, w('model.norm.weight')], { eps: c.rmsNormEps });
}

export function lmHeadName(c: ModelConfig): string {
  return c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
}

/** Logits [N, V]. */
export function logits(t: Tape, c: ModelConfig, w: ParamLookup, ids: Value, b: number, s: number, image?: ImageInputs): Value {
  return t.apply('linear', [decoder(t, c, w, ids, b, s, image), w(lmHeadName(c))]);
}

/**
 * Logits held at once by the loss, in elements: 2^24 float32 is 64 MB. Qwen2.5's vocabulary at sequence 512 would
 * otherwise hold 512 × 151,936 logits (311 MB) and as much again in log-probabilities until the backward pass.
 */
export const LOSS_CHUNK_ELEMENTS = 1 << 24;

/** Scaled summed cross-entropy of the batch (Hugging Face causal-LM convention; see TokenBatch). */
export function causalLmLoss(t: Tape, c: ModelConfig, w: ParamLookup, batch: TokenBatch): Value {
  const h = decoder(t, c, w, batch.ids, batch.batch, batch.seq, batch.image);
  const chunkRows = Math.max(1, Math.floor(LOSS_CHUNK_ELEMENTS / c.vocabSize));
  return t.apply('linear_cross_entropy', [h, w(lmHeadName(c)), batch.targets, batch.lossScale], { chunkRows });
}
