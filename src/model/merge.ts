// WiSE-FT (Wortsman et al.): interpolates a base model and a model tuned from it, tensor by tensor,
// (1 − α)·base + α·tuned, in each tensor's stored dtype. The tuned side is a full model directory or a PEFT LoRA
// adapter (base' + scaling·B·A, base' being the adapter's own base). Every value is computed in float64 and rounded
// once, so a bf16 result is the correctly rounded interpolation, not a rounding of a float32 rounding.
// LLaVA-style models merge their language models only: the tower, projector and image_newline must be the same
// bytes in both (tuning never moves them) and are copied; the output keeps the base's layout, config and files.
import { createHash } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { invalidArgument } from '../util/errors.js';
import { adapterOf, NARROWTUNE_MARKER, type Checkpoint } from './checkpoint.js';
import { partOf, toFileName, type LlavaLayout } from './llava-names.js';
import { adapterPairs, loadModel, writeModel } from './load-model.js';
import { ADAPTER_WEIGHTS_FILE, readAdapterWeights, type AdapterPair } from './peft-adapter.js';
import { architectureDifference } from './same-architecture.js';
import { fromFloat32, toFloat32, type Dtype, type StoredTensor } from './safetensors.js';

export interface MergeOptions {
  base: string;
  /** A model tuned from `base`, or a PEFT LoRA adapter directory. */
  tuned: string;
  /** Weight of the tuned model: 0 gives the base, 1 the tuned model. */
  alpha: number;
  out: string;
}

export const MERGE_RECEIPT_VERSION = 1;

export interface MergeReceipt {
  narrowtune_merge_version: number;
  created_at: string;
  method: 'wise_ft';
  formula: string;
  alpha: number;
  /** Paths relative to the output directory; sha256 over the tensors' names and bytes (the adapter's, for one). */
  base: { path: string; sha256: string };
  tuned: { path: string; sha256: string; adapter: { base: string; sha256: string; rank: number; alpha: number } | null };
  tensors: number;
  /** Tensors that differ between base and tuned (the others are copied byte for byte). */
  interpolated: number;
  /** LLaVA-style models: their layout, and the tower, projector and image_newline tensors copied from the base. */
  llava?: { layout: LlavaLayout; copied: number };
}

/** Refuses α outside [0, 1]: beyond it the merge extrapolates, which WiSE-FT does not promise anything about. */
export function alphaViolation(alpha: number): string | null {
  return Number.isFinite(alpha) && alpha >= 0 && alpha <= 1 ? null : `must be in [0, 1], got ${alpha}`;
}

const F32 = new Float32Array(1);
const F32_BITS = new Uint32Array(F32.buffer);

/**
 * float64 → float32 bits rounded to odd (toward zero, the last bit set when inexact). Rounding that to bf16 or f16
 * to nearest even gives the correctly rounded result (float32 keeps at least two bits more than either), which
 * rounding to nearest twice does not: 1 + 2^-8 + 2^-29 would become 1 + 2^-8 in float32, then 1 in bf16.
 */
function roundToOddF32Bits(x: number): number {
  F32[0] = x;
  if (F32[0] === x || Number.isNaN(x)) return F32_BITS[0];
  if (Math.abs(F32[0]) > Math.abs(x)) F32_BITS[0] -= 1; // rounded away from zero: step back to the truncation
  return (F32_BITS[0] | 1) >>> 0;
}

/** float64 values as little-endian bytes of `dtype`, each correctly rounded to nearest even. */
export function fromFloat64(values: Float64Array, dtype: Dtype): Uint8Array {
  if (dtype === 'F32') return fromFloat32(Float32Array.from(values), 'F32');
  const bits = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = roundToOddF32Bits(values[i]);
  return fromFloat32(new Float32Array(bits.buffer), dtype);
}

/** sha256 over every tensor's name, dtype, shape and bytes, in name order. */
function tensorsSha256(tensors: Iterable<StoredTensor>): string {
  const h = createHash('sha256');
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    h.update(`${t.name}\0${t.dtype}\0${t.shape.join(',')}\0`).update(t.data);
  }
  return h.digest('hex');
}

/** base' + scaling·B·A for every adapted weight, in float64; the others are base' as stored. */
function adapterDeltas(pairs: ReadonlyMap<string, AdapterPair>, scale: number): Map<string, (w: Float64Array) => void> {
  const add = new Map<string, (w: Float64Array) => void>();
  for (const [name, { a, b }] of pairs) {
    add.set(name, (w) => {
      const A = toFloat32(a); // [r, in]
      const B = toFloat32(b); // [out, r]
      const [r, inp] = a.shape;
      const out = b.shape[0];
      const row = new Float64Array(inp);
      for (let o = 0; o < out; o++) {
        row.fill(0);
        for (let k = 0; k < r; k++) {
          const s = B[o * r + k];
          for (let i = 0; i < inp; i++) row[i] += s * A[k * inp + i];
        }
        for (let i = 0; i < inp; i++) w[o * inp + i] += scale * row[i];
      }
    });
  }
  return add;
}

const shapesOf = (ckpt: Pick<Checkpoint, 'tensors'>) => new Map([...ckpt.tensors].map(([n, t]) => [n, t.shape]));

async function sameDir(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([realpath(a).catch(() => resolve(a)), realpath(b).catch(() => resolve(b))]);
  return x === y;
}

/** Why two models' LLaVA sides cannot merge (a text model and a LLaVA one, two layouts, two LLaVA configs), or null. */
export function llavaDifference(base: Pick<Checkpoint, 'llava'>, tuned: Pick<Checkpoint, 'llava'>): string | null {
  if (!base.llava !== !tuned.llava) return `is ${tuned.llava ? 'a LLaVA-style' : 'a text-only'} model where the base is ${base.llava ? 'a LLaVA-style' : 'a text-only'} one`;
  if (!base.llava || !tuned.llava) return null;
  if (base.llava.layout !== tuned.llava.layout) return `stores its tensors in the ${tuned.llava.layout} layout where the base uses ${base.llava.layout}`;
  const { raw: _a, text: _b, ...b } = base.llava.config;
  const { raw: _c, text: _d, ...t } = tuned.llava.config;
  for (const key of Object.keys(b) as (keyof typeof b)[]) {
    if (JSON.stringify(b[key]) !== JSON.stringify(t[key])) return `has ${key} ${JSON.stringify(t[key])} where the base has ${JSON.stringify(b[key])}`;
  }
  return null;
}

/** Writes the merged model to `out` (config, weights, tokenizer files from `base`, and the receipt). */
export async function mergeModels(o: MergeOptions): Promise<{ out: string; receipt: MergeReceipt }> {
  const bad = alphaViolation(o.alpha);
  if (bad) throw invalidArgument('alpha', bad);
  const out = resolve(o.out);
  const base = await loadModel(o.base);
  const adapter = await adapterOf(o.tuned);
  let tuned: Checkpoint;
  let deltas = new Map<string, (w: Float64Array) => void>();
  let adapterRecord: MergeReceipt['tuned']['adapter'] = null;
  let tunedSha: string;
  if (adapter) {
    // The adapter's own base, which is usually `base` itself: then the merge is base + α·scaling·B·A.
    tuned = (await sameDir(adapter.base, o.base)) ? base : await loadModel(adapter.base);
    const pairs = tuned.llava ? await adapterPairs(o.tuned, adapter.config, tuned.llava.layout, tuned.tensors, readAdapterWeights) : await readAdapterWeights(o.tuned, adapter.config);
    for (const [name, { a, b }] of pairs) {
      const w = tuned.tensors.get(name);
      if (!w || w.shape.length !== 2 || w.shape[0] !== b.shape[0] || w.shape[1] !== a.shape[1]) {
        throw invalidArgument('tuned', `${join(o.tuned, ADAPTER_WEIGHTS_FILE)} adapts ${name}, which the adapter's base model ${w ? `has as [${w.shape}]` : 'does not have'}`);
      }
    }
    deltas = adapterDeltas(pairs, adapter.config.scale);
    tunedSha = tensorsSha256([...pairs.values()].flatMap((p) => [p.a, p.b]));
    adapterRecord = { base: relative(out, adapter.base) || '.', sha256: tensorsSha256(tuned.tensors.values()), rank: adapter.config.rank, alpha: adapter.config.alpha };
  } else {
    tuned = await loadModel(o.tuned);
    tunedSha = tensorsSha256(tuned.tensors.values());
  }
  const tunedName = adapter ? `the adapter's base ${adapter.base}` : o.tuned;
  const diff = llavaDifference(base, tuned) ?? architectureDifference({ config: base.config, shapes: shapesOf(base) }, { config: tuned.config, shapes: shapesOf(tuned) });
  if (diff) throw invalidArgument('tuned', `${tunedName} ${diff}; WiSE-FT merges models of one architecture and shapes`);

  let interpolated = 0;
  let copied = 0;
  const tensors: StoredTensor[] = [...base.tensors.values()].map((b) => {
    const t = tuned.tensors.get(b.name)!;
    const delta = deltas.get(b.name);
    const same = !delta && t.dtype === b.dtype && Buffer.compare(t.data, b.data) === 0;
    if (base.llava && partOf(b.name) !== 'language') {
      if (!same) {
        const what = delta ? `the adapter ${o.tuned} adapts` : `${tunedName} differs from the base in`;
        throw invalidArgument('tuned', `${what} ${toFileName(base.llava.layout, b.name)}; merging LLaVA-style models interpolates their language models only, so the vision tower, projector and image_newline must be identical in both`);
      }
      copied++;
      return b;
    }
    if (same) return b;
    interpolated++;
    const x = toFloat32(b); // exact: every stored dtype widens to float32 without rounding
    let y: Float32Array | Float64Array = toFloat32(t);
    if (delta) delta((y = Float64Array.from(y)));
    // b + α·(t − b) is (1 − α)·b + α·t, and leaves a value the two models share exactly as it is.
    const merged = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) merged[i] = x[i] + o.alpha * (y[i] - x[i]);
    return { ...b, data: fromFloat64(merged, b.dtype) };
  });

  const receipt: MergeReceipt = {
    narrowtune_merge_version: MERGE_RECEIPT_VERSION,
    created_at: new Date().toISOString(),
    method: 'wise_ft',
    formula: '(1 - alpha) * base + alpha * tuned, in float64, rounded once to each tensor\'s dtype',
    alpha: o.alpha,
    base: { path: relative(out, resolve(o.base)) || '.', sha256: tensorsSha256(base.tensors.values()) },
    tuned: { path: relative(out, resolve(o.tuned)) || '.', sha256: tunedSha, adapter: adapterRecord },
    tensors: tensors.length,
    interpolated,
    ...(base.llava ? { llava: { layout: base.llava.layout, copied } } : {}),
  };
  await writeModel(out, base, tensors, { copyFrom: o.base, extraJson: { [NARROWTUNE_MARKER]: receipt } });
  return { out, receipt };
}
