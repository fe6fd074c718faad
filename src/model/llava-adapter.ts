// PEFT LoRA adapters of a LLaVA-style model's language model: the module names PEFT gives the decoder's linear
// layers when it wraps the model class of each layout, and the target_modules pattern that adapts only those.
//
// PeftModelForCausalLM stores `base_model.model.<module>.lora_{A,B}.weight`, <module> being the wrapped model's
// module path, which is the layout's tensor name without `.weight`:
//   hf-legacy (transformers before 4.52)  language_model.model.layers.N.mlp.gate_proj
//   hf (4.52 and later)                   model.language_model.layers.N.mlp.gate_proj
//   lmms-lab (LlavaQwenForCausalLM)       model.layers.N.mlp.gate_proj
// PEFT loads a pre-4.52 adapter into a 4.52+ model through the model's _checkpoint_conversion_mapping, not the
// reverse; so an adapter follows its base's layout, and reading accepts either transformers naming for either.

import { ModelFileError } from '../util/errors.js';
import { toCanonical, toFileName, type LlavaLayout } from './llava-names.js';
import type { AdapterPair } from './peft-adapter.js';

/** The layout's name for a canonical decoder tensor (an adapter's A or B included). */
export function llavaAdapterName(layout: LlavaLayout, canonical: string): string {
  return toFileName(layout, canonical);
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * target_modules for a LLaVA model: always one regex that PEFT full-matches against module paths, because short
 * names would also match the tower (SigLIP and CLIP have q_proj, k_proj, v_proj, fc1 too). Every layer adapted:
 * `^<decoder>layers\.\d+\.(self_attn|mlp)\.(gate_proj|up_proj)$`; some layers: the adapted modules listed.
 */
export function llavaTargetModules(layout: LlavaLayout, targets: readonly string[], candidates: readonly string[]): string {
  const moduleOf = (w: string) => w.replace(/\.weight$/, '');
  const shortOf = (w: string) => moduleOf(w).split('.').pop()!;
  const short = [...new Set(targets.map(shortOf))];
  const covered = candidates.filter((c) => short.includes(shortOf(c)));
  if (covered.length === targets.length) {
    const layers = llavaAdapterName(layout, 'model.layers.');
    const blocks = [...new Set(targets.map((t) => moduleOf(t).split('.').at(-2)!))];
    const group = (xs: string[]) => (xs.length === 1 ? xs[0] : `(${xs.join('|')})`);
    return `^${escapeRegex(layers)}\\d+\\.${group(blocks)}\\.${group(short)}$`;
  }
  return `^(${targets.map((t) => escapeRegex(moduleOf(llavaAdapterName(layout, t)))).join('|')})$`;
}

/** Layouts whose names an adapter for a `layout` base may use (see the header). */
function readableLayouts(layout: LlavaLayout): LlavaLayout[] {
  return layout === 'lmms-lab' ? ['lmms-lab'] : [layout, layout === 'hf' ? 'hf-legacy' : 'hf'];
}

/**
 * An adapter's pairs (keyed by the weight names it stores, PEFT's prefix removed) under canonical names. A name
 * that neither naming of the base's layout has a place for is an error naming `file`.
 */
export function canonicalAdapterPairs<T extends { name: string; shape: number[] }>(layout: LlavaLayout, pairs: ReadonlyMap<string, AdapterPair<T>>, file: string): Map<string, AdapterPair<T>> {
  const out = new Map<string, AdapterPair<T>>();
  for (const [name, pair] of pairs) {
    const naming = readableLayouts(layout).find((l) => hasPlace(l, name));
    const canonical = naming && toCanonical(naming, name);
    if (!canonical) throw new ModelFileError(file, `adapts ${name}, which has no place in a ${layout} LLaVA model (expected names like ${llavaAdapterName(layout, 'model.layers.0.mlp.gate_proj.weight')})`);
    if (out.has(canonical)) throw new ModelFileError(file, `adapts ${canonical} twice, under two namings`);
    out.set(canonical, pair);
  }
  return out;
}

/** Whether `name` is written in `layout` (lmms-lab's `model.` catch-all would otherwise claim hf names). */
function hasPlace(layout: LlavaLayout, name: string): boolean {
  const canonical = toCanonical(layout, name);
  return canonical !== null && (layout !== 'lmms-lab' || !name.startsWith('model.language_model.'));
}
