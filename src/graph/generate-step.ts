// Compiles the two forward-only graphs of batched greedy generation with a KV cache, static shapes only:
//   prefill: the left-padded prompts [B, P] (optionally with image features at image positions) → the first new
//            token and the caches with slots 0..P-1 written;
//   decode:  one token per row [B, 1] written at cache slot `slot` (P + s at step s) → the next token.
// Every weight is an initializer (nothing is trained). Legend: B batch, P prompt length, M max new tokens,
// T = P + M cache slots, nh/kvh query/kv heads, hd head width, H hidden, V vocabulary.
//
// Padding never shifts RoPE: positions are graph inputs (per row, the number of real tokens before a token) and
// cos/sin are gathered from a [T, hd] table by them. What a query may see is an explicit boolean mask input
// [B, 1, q, kv] (true = attend), so padding, future and not yet written slots are the caller's to hide.
import type { ModelConfig } from '../model/config.js';
import { Tape } from './autodiff.js';
import { type CompiledModel, GraphBuilder, type Kernels, type Value } from './graph-builder.js';
import { portableAttention } from './ops.js';
import type { ParamTensor } from './params.js';
import { initializerLookup, linear, lmHeadName, mlp, ropeTables, splitHeads, type ParamLookup, type Rope } from './transformer.js';

export type GeneratePhase = 'prefill' | 'decode';

/** Graph input and output names. */
export const GEN_IO = {
  /** int64 [B, P] (prefill) or [B, 1] (decode). */
  ids: 'ids',
  /** int64, same shape as ids: the RoPE position of each token. */
  positions: 'positions',
  /** bool [B, 1, P, P] (prefill) or [B, 1, 1, T] (decode); true where the query may attend the key slot. */
  mask: 'attn_mask',
  /** float32 [B·P, H] (prefill with `image`): LLaVA image features at image positions, zeros elsewhere. */
  imageEmbeds: 'image_embeds',
  /** float32 [B·P, 1] (prefill with `image`): 1 at image positions. */
  imageMask: 'image_mask',
  /** int64 [] (decode only): the cache slot the new token's key/value are written to. */
  slot: 'slot',
  /** float32 [B, kvh, T, hd] per layer (decode only). */
  pastKey: (layer: number) => `past_key.${layer}`,
  pastValue: (layer: number) => `past_value.${layer}`,
  /** float32 [B, kvh, T, hd] per layer: the caches after this graph's writes. */
  presentKey: (layer: number) => `present_key.${layer}`,
  presentValue: (layer: number) => `present_value.${layer}`,
  /** int64 [B]: argmax of each row's logits at its last position (P-1 in prefill). */
  nextIds: 'next_ids',
  /** float32 [B, V]: those logits, only when compiled with `logits: true`. */
  logits: 'logits',
};

export interface GenerateStepSpec {
  config: ModelConfig;
  /** Every parameter the decoder reads, in float32. */
  params: ReadonlyMap<string, ParamTensor>;
  batch: number;
  promptLen: number;
  maxNewTokens: number;
  phase: GeneratePhase;
  /** Also output the last position's logits (tests, debugging); costs a [B, V] copy per step. */
  logits?: boolean;
  /** Lowering of attention (default fused); runtime/session.ts picks it per provider. */
  kernels?: Kernels;
  /**
   * Prefill takes image features as input embeddings (GEN_IO.imageEmbeds, imageMask; see ImageInputs in
   * transformer.ts); generated tokens are text, so decode never needs them.
   */
  image?: boolean;
}

/** Cache slots a generator of this prompt length and budget needs. */
export function cacheLength(promptLen: number, maxNewTokens: number): number {
  return promptLen + maxNewTokens;
}

/** Writes this step's keys/values into the cache and returns what attention reads. */
type CacheWrite = (layer: number, k: Value, v: Value) => { k: Value; v: Value };

function attention(t: Tape, c: ModelConfig, w: ParamLookup, x: Value, layer: number, b: number, q: number, rope: Rope, mask: Value, write: CacheWrite): Value {
  const g = t.g;
  const p = `model.layers.${layer}.self_attn`;
  const qkvBias = c.attentionBias.qkv;
  const qNorm = c.qkNorm ? w(`${p}.q_norm.weight`) : null;
  const kNorm = c.qkNorm ? w(`${p}.k_norm.weight`) : null;
  const query = splitHeads(t, c, linear(t, x, w, `${p}.q_proj`, qkvBias), c.numHeads, b, q, qNorm, rope); // [B, nh, q, hd]
  const key = splitHeads(t, c, linear(t, x, w, `${p}.k_proj`, qkvBias), c.numKvHeads, b, q, kNorm, rope); // [B, kvh, q, hd]
  let value = g.reshape(linear(t, x, w, `${p}.v_proj`, qkvBias), [b, q, c.numKvHeads, c.headDim]);
  value = g.transpose(value, [0, 2, 1, 3]); // [B, kvh, q, hd]
  const kv = write(layer, key, value);
  // Attention-23: 4-D inputs carry their head counts (kvh < nh is grouped-query attention); a bool mask is
  // "true = attend"; no is_causal, the mask says everything.
  const [y] = g.kernels === 'portable'
    ? [portableAttention(g, query, kv.k, kv.v, mask).y]
    : g.emit('Attention', [query, kv.k, kv.v, mask], {}, [{ dtype: query.dtype, shape: [b, c.numHeads, q, c.headDim] }]);
  const flat = g.reshape(g.transpose(y, [0, 2, 1, 3]), [b * q, c.numHeads * c.headDim]); // [N, nh·hd]
  return linear(t, flat, w, `${p}.o_proj`, c.attentionBias.o); // [N, H]
}

export function compileGenerateStep(spec: GenerateStepSpec): CompiledModel {
  const c = spec.config;
  const { batch: b, promptLen: P, maxNewTokens: M } = spec;
  for (const [field, v] of [['batch', b], ['promptLen', P], ['maxNewTokens', M]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`compileGenerateStep: ${field} must be a positive integer, got ${v}`);
  }
  const T = cacheLength(P, M);
  const prefill = spec.phase === 'prefill';
  const q = prefill ? P : 1;
  const kvLen = prefill ? P : T;
  const g = new GraphBuilder(`narrowtune_generate_${spec.phase}`, 'float32', spec.kernels);
  const t = new Tape(g);

  const w: ParamLookup = initializerLookup(g, spec.params);

  const ids = g.input(GEN_IO.ids, 'int64', [b, q]);
  const positions = g.input(GEN_IO.positions, 'int64', [b, q]);
  const mask = g.input(GEN_IO.mask, 'bool', [b, 1, q, kvLen]);
  const slot = prefill ? null : g.input(GEN_IO.slot, 'int64', []);
  const past = prefill
    ? []
    : Array.from({ length: c.numLayers }, (_, l) => ({
        k: g.input(GEN_IO.pastKey(l), 'float32', [b, c.numKvHeads, T, c.headDim]),
        v: g.input(GEN_IO.pastValue(l), 'float32', [b, c.numKvHeads, T, c.headDim]),
      }));

  // cos/sin [T, hd] gathered by position → [B, q, hd] → [B, 1, q, hd], broadcasting over heads.
  const table = ropeTables(t, c, T);
  const rope: Rope = {
    cos: g.reshape(g.gather(table.cos, positions), [b, 1, q, c.headDim]),
    sin: g.reshape(g.gather(table.sin, positions), [b, 1, q, c.headDim]),
  };

  const present: { k: Value; v: Value }[] = [];
  let write: CacheWrite;
  if (prefill) {
    // Attention reads just the P new keys; the returned caches are them followed by M empty slots.
    const empty = g.zeros([b, c.numKvHeads, T - P, c.headDim]);
    write = (layer, k, v) => {
      present[layer] = { k: g.concat([k, empty], 2), v: g.concat([v, empty], 2) };
      return { k, v };
    };
  } else {
    // One-hot over the slot axis: where(slot == j, new, cache) replaces exactly slot `slot` of every row.
    const slots = g.constant(Array.from({ length: T }, (_, j) => j), [T], 'int64');
    const at = g.reshape(g.equal(slots, slot!), [1, 1, T, 1]);
    write = (layer, k, v) => {
      const kv = { k: g.where(at, k, past[layer].k), v: g.where(at, v, past[layer].v) };
      present[layer] = kv;
      return kv;
    };
  }

  const eps = { eps: c.rmsNormEps };
  let x = t.apply('embedding', [w('model.embed_tokens.weight'), g.reshape(ids, [b * q])]); // [N, H]
  if (spec.image && prefill) {
    const embeds = g.input(GEN_IO.imageEmbeds, 'float32', [b * q, c.hiddenSize]);
    const imageMask = g.input(GEN_IO.imageMask, 'float32', [b * q, 1]);
    x = t.apply('add', [t.apply('mul', [x, g.sub(g.scalar(1, 'float32'), imageMask)]), embeds]);
  }
  for (let layer = 0; layer < c.numLayers; layer++) {
    const p = `model.layers.${layer}`;
    const a = attention(t, c, w, t.apply('rmsnorm', [x, w(`${p}.input_layernorm.weight`)], eps), layer, b, q, rope, mask, write);
    const h = t.apply('add', [x, a]);
    x = t.apply('add', [h, mlp(t, c, w, t.apply('rmsnorm', [h, w(`${p}.post_attention_layernorm.weight`)], eps), layer)]);
  }
  // Only each row's last position is scored: left padding puts every row's last token at q-1.
  const last = q === 1 ? x : g.gather(g.reshape(x, [b, q, c.hiddenSize]), g.constant([q - 1], [], 'int64'), 1); // [B, H]
  const z = t.apply('linear', [t.apply('rmsnorm', [last, w('model.norm.weight')], eps), w(lmHeadName(c))]); // [B, V]
  const [next] = g.emit('ArgMax', [z], { axis: 1, keepdims: 0 }, [{ dtype: 'int64', shape: [b] }]);

  present.forEach((kv, l) => {
    g.output(kv.k, GEN_IO.presentKey(l));
    g.output(kv.v, GEN_IO.presentValue(l));
  });
  g.output(next, GEN_IO.nextIds);
  if (spec.logits) g.output(z, GEN_IO.logits);
  return g.compile();
}
