// Low-rank adapters (LoRA, Hu et al. 2021) as PEFT computes them: y = W x + (alpha/r)·B(A·dropout(x)) beside a
// frozen W [out, in], with A [r, in] and B [out, r]. Built from the linear, mul and add ops, so it needs no rule
// of its own; A and B are parameters like any other, named as PEFT names them (without its `base_model.model.`).
import type { Tape } from './autodiff.js';
import type { Value } from './graph-builder.js';
import type { ParamLookup } from './transformer.js';

export interface LoraLayout {
  /** Adapted weights (`model.layers.0.mlp.gate_proj.weight`), in model order. */
  targets: readonly string[];
  rank: number;
  /** alpha / rank: PEFT's `scaling`. */
  scale: number;
  /**
   * Train-step graphs only: each target's input is multiplied by a mask fed per micro-batch (LORA_IO.mask),
   * 0 or 1/(1 − p), so dropout is a pure function of the run's seed and the step.
   */
  dropout?: boolean;
}

export const LORA_IO = {
  /** [N, in] dropout mask of a target's input. */
  mask: (weight: string) => `lora_mask/${weight}`,
};

/** PEFT's names of a weight's adapter pair: `….gate_proj.weight` → `….gate_proj.lora_A.weight`, `….lora_B.weight`. */
export function adapterNames(weight: string): { a: string; b: string } {
  const module = weight.replace(/\.weight$/, '');
  return { a: `${module}.lora_A.weight`, b: `${module}.lora_B.weight` };
}

/** `w` with adapters: linear() adds the low-rank path of every target after its frozen product. */
export function withAdapters(t: Tape, w: ParamLookup, layout: LoraLayout): ParamLookup {
  const targets = new Set(layout.targets);
  const masks = new Map<string, Value>();
  const adapted: ParamLookup = (name) => w(name);
  adapted.adapter = (weight, x) => {
    if (!targets.has(weight)) return null;
    const { a, b } = adapterNames(weight);
    let input = x; // [N, in]
    if (layout.dropout) {
      let mask = masks.get(weight);
      if (!mask) masks.set(weight, (mask = t.g.input(LORA_IO.mask(weight), x.dtype, x.shape)));
      input = t.apply('mul', [x, mask]);
    }
    const down = t.apply('linear', [input, w(a)]); // [N, r]
    const up = t.apply('linear', [down, w(b)]); // [N, out]
    return t.apply('mul', [up, t.g.scalar(layout.scale, x.dtype)]);
  };
  return adapted;
}
