// LoRA in a fine-tune: which weights get adapters, their seeded initial A and B, and the dropout masks of each
// micro-batch. With adapters the trainable tensors are the A and B pairs; every weight of the model is frozen.
import { adapterNames, LORA_IO, type LoraLayout } from '../graph/lora.js';
import type { ParamTensor } from '../graph/params.js';
import { adapterOf } from '../model/checkpoint.js';
import { summarizeNames } from '../policy/policy.js';
import { invalidArgument, NarrowtuneError, type FieldViolation } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { compileUserRegex, MAX_USER_REGEX_CHARS } from '../util/user-regex.js';
import type { LoraOptions } from './options.js';

/** The linear layers an adapter can sit beside: attention and MLP projections of the decoder layers. */
const PROJECTION = /^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/;
/** Seeded streams of the initial A matrices start here (data order uses the small stream numbers). */
const INIT_STREAM = 1 << 20;
const MASK_STREAM = 1 << 21;

export interface LoraPlan {
  layout: LoraLayout;
  /** Initial A (Kaiming-uniform, as PEFT) and B (zeros) by name. */
  init: Map<string, ParamTensor>;
  /** A and B names, target by target in model order. */
  trainable: string[];
  dropout: number;
}

/** An adapter is written for a plain base model: PEFT, and narrowtune, load one adapter onto one base. */
export async function refuseAdapterBase(model: string): Promise<void> {
  if (await adapterOf(model)) {
    throw invalidArgument('model', `${model} is a LoRA adapter; a new adapter needs a plain base model: pass --merge-adapter to write full weights, or merge the adapter first`);
  }
}

/** Weights that can carry an adapter, in model order. */
export function adaptableWeights(names: Iterable<string>): string[] {
  return [...names].filter((n) => PROJECTION.test(n));
}

/** The adapted weights: matches of `targets` among the projections, or the policy's trainable projections. */
export function loraTargets(patterns: readonly string[], names: readonly string[], policyTrainable: readonly string[]): string[] {
  const candidates = adaptableWeights(names);
  const valid = () => `adaptable weights: ${summarizeNames(candidates).join(', ')}`;
  const v: FieldViolation[] = [];
  let targets: string[];
  if (patterns.length === 0) {
    const trained = new Set(policyTrainable);
    targets = candidates.filter((n) => trained.has(n));
    if (targets.length === 0) v.push({ field: 'lora_target', description: `the policy trains no projection weight to adapt; give a target pattern (${valid()})` });
  } else {
    const res = patterns.map((p, i) => compileUserRegex(p, `lora_target[${i}]`, MAX_USER_REGEX_CHARS));
    res.forEach((re, i) => {
      if (!candidates.some((n) => re.test(n))) v.push({ field: `lora_target[${i}]`, description: `"${patterns[i]}" matches no projection weight (${valid()})` });
    });
    targets = candidates.filter((n) => res.some((re) => re.test(n)));
  }
  if (v.length > 0) throw new NarrowtuneError('invalid_argument', v.map((x) => `${x.field}: ${x.description}`).join('\n'), v);
  return targets;
}

/**
 * PEFT's initialisation: A [r, in] ~ kaiming_uniform(a=√5), i.e. U(±1/√in); B [out, r] = 0, so the adapted model
 * starts as the base model. Each target's A has its own seeded stream.
 */
export function planLora(o: LoraOptions, seed: number, params: ReadonlyMap<string, ParamTensor>, policyTrainable: readonly string[]): LoraPlan {
  const targets = loraTargets(o.targets, [...params.keys()], policyTrainable);
  const init = new Map<string, ParamTensor>();
  targets.forEach((weight, i) => {
    const [out, inp] = params.get(weight)!.shape;
    const { a, b } = adapterNames(weight);
    const rng = new Rng(seed, INIT_STREAM + i);
    const bound = 1 / Math.sqrt(inp);
    const A = new Float32Array(o.rank * inp);
    for (let j = 0; j < A.length; j++) A[j] = (2 * rng.next() - 1) * bound;
    init.set(a, { shape: [o.rank, inp], data: A });
    init.set(b, { shape: [out, o.rank], data: new Float32Array(out * o.rank) });
  });
  return {
    layout: { targets, rank: o.rank, scale: o.alpha / o.rank, dropout: o.dropout > 0 },
    init,
    trainable: [...init.keys()],
    dropout: o.dropout,
  };
}

/**
 * Inverted-dropout masks (0, or 1/(1 − p) with probability 1 − p) for one micro-batch, one per target and input
 * element: a pure function of the seed and the micro-batch's index in the run, so a resumed run draws the same.
 */
export function dropoutMasks(plan: LoraPlan, params: ReadonlyMap<string, ParamTensor>, tokens: number, seed: number, microBatch: number, f64: boolean): Map<string, Float32Array | Float64Array> {
  const masks = new Map<string, Float32Array | Float64Array>();
  const keep = 1 / (1 - plan.dropout);
  plan.layout.targets.forEach((weight, i) => {
    const inp = params.get(weight)!.shape[1];
    const rng = new Rng(seed, MASK_STREAM + microBatch * plan.layout.targets.length + i);
    const m = f64 ? new Float64Array(tokens * inp) : new Float32Array(tokens * inp);
    for (let j = 0; j < m.length; j++) m[j] = rng.next() < plan.dropout ? 0 : keep;
    masks.set(LORA_IO.mask(weight), m);
  });
  return masks;
}
