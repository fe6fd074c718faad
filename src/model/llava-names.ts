// Tensor names of LLaVA-style checkpoints: the three layouts files use, mapped both ways to one canonical naming,
// and the names and shapes a config requires.
//
// Canonical names: the decoder exactly as a text-only checkpoint names it (`model.*`, `lm_head.weight`), so the
// text-model graph and the policies read it unchanged; the tower as `vision_tower.vision_model.*`; the projector as
// `multi_modal_projector.linear_{1,2}.*`; and `image_newline`.

import { ModelFileError } from '../util/errors.js';
import { expectedTensors } from './config.js';
import { IMAGE_CHANNELS, type LlavaConfig, type VisionConfig } from './llava-config.js';

/**
 * hf-legacy: transformers before 4.52 (`language_model.model.*`); hf: 4.52 and later (`model.language_model.*`);
 * lmms-lab: LLaVA-NeXT's own modules (`model.layers.*`, `model.mm_projector.{0,2}`, `model.vision_tower.vision_tower.*`).
 */
export type LlavaLayout = 'hf-legacy' | 'hf' | 'lmms-lab';

export const VISION_PREFIX = 'vision_tower.vision_model.';
export const PROJECTOR_PREFIX = 'multi_modal_projector.';
export const IMAGE_NEWLINE = 'image_newline';
const LM_HEAD = 'lm_head.weight';

/** A name equal to `file` (exact) or starting with it maps to `canonical` with the same remainder. */
interface Rule {
  file: string;
  canonical: string;
  exact?: boolean;
}

/** First match wins (lmms-lab's `model.` catch-all comes last); canonical sides are disjoint, so the reverse is unique. */
const RULES: Readonly<Record<LlavaLayout, readonly Rule[]>> = {
  'hf-legacy': [
    { file: 'language_model.model.', canonical: 'model.' },
    { file: 'language_model.lm_head.weight', canonical: LM_HEAD, exact: true },
    { file: 'vision_tower.', canonical: 'vision_tower.' },
    { file: PROJECTOR_PREFIX, canonical: PROJECTOR_PREFIX },
    { file: IMAGE_NEWLINE, canonical: IMAGE_NEWLINE, exact: true },
  ],
  hf: [
    { file: 'model.language_model.', canonical: 'model.' },
    { file: LM_HEAD, canonical: LM_HEAD, exact: true },
    { file: 'model.vision_tower.', canonical: 'vision_tower.' },
    { file: `model.${PROJECTOR_PREFIX}`, canonical: PROJECTOR_PREFIX },
    { file: `model.${IMAGE_NEWLINE}`, canonical: IMAGE_NEWLINE, exact: true },
  ],
  'lmms-lab': [
    // nn.Sequential(Linear, GELU, Linear): the GELU at index 1 has no parameters.
    { file: 'model.mm_projector.0.', canonical: `${PROJECTOR_PREFIX}linear_1.` },
    { file: 'model.mm_projector.2.', canonical: `${PROJECTOR_PREFIX}linear_2.` },
    { file: 'model.vision_tower.vision_tower.', canonical: 'vision_tower.' },
    { file: `model.${IMAGE_NEWLINE}`, canonical: IMAGE_NEWLINE, exact: true },
    { file: 'model.', canonical: 'model.' },
    { file: LM_HEAD, canonical: LM_HEAD, exact: true },
  ],
};

/** Name prefixes that identify a layout on their own. */
const SIGNATURES: Readonly<Record<LlavaLayout, readonly string[]>> = {
  'hf-legacy': ['language_model.'],
  hf: ['model.language_model.'],
  'lmms-lab': ['model.mm_projector.', 'model.vision_tower.vision_tower.', 'model.layers.', 'model.embed_tokens.'],
};

export const LAYOUTS: readonly LlavaLayout[] = ['hf-legacy', 'hf', 'lmms-lab'];

function applies(name: string, from: string, exact: boolean | undefined): boolean {
  return exact ? name === from : name.startsWith(from);
}

/** The canonical name of a file's tensor name in `layout`, or null when the layout has no place for it. */
export function toCanonical(layout: LlavaLayout, fileName: string): string | null {
  for (const r of RULES[layout]) if (applies(fileName, r.file, r.exact)) return r.canonical + fileName.slice(r.file.length);
  return null;
}

/** The name `layout` stores a canonical tensor under. */
export function toFileName(layout: LlavaLayout, canonical: string): string {
  for (const r of RULES[layout]) if (applies(canonical, r.canonical, r.exact)) return r.file + canonical.slice(r.canonical.length);
  throw new Error(`${canonical} is not a canonical LLaVA tensor name`);
}

/** Which layout a checkpoint's tensor names follow; one layout's names only, or a ModelFileError naming `file`. */
export function detectLayout(names: Iterable<string>, file: string): LlavaLayout {
  const found = new Set<LlavaLayout>();
  for (const name of names) for (const layout of LAYOUTS) if (SIGNATURES[layout].some((p) => name.startsWith(p))) found.add(layout);
  if (found.size === 1) return [...found][0];
  if (found.size === 0) {
    throw new ModelFileError(
      file,
      'has no LLaVA tensor layout: expected language_model.model.* (transformers before 4.52), model.language_model.* ' +
        '(transformers 4.52 and later) or model.layers.* with model.mm_projector.* (LLaVA-NeXT/lmms-lab)',
    );
  }
  throw new ModelFileError(file, `mixes the tensor names of several LLaVA layouts (${[...found].join(', ')})`);
}

/** canonical → file name for every tensor; a name the layout has no place for, or two names meeting, is an error. */
export function canonicalNames(layout: LlavaLayout, fileNames: Iterable<string>, file: string): Map<string, string> {
  const out = new Map<string, string>();
  const stray: string[] = [];
  for (const name of fileNames) {
    const canonical = toCanonical(layout, name);
    if (canonical === null) stray.push(name);
    else out.set(canonical, name);
  }
  if (stray.length > 0) throw new ModelFileError(file, `has tensor(s) outside the ${layout} LLaVA layout: ${stray.slice(0, 10).join(', ')}${stray.length > 10 ? ` and ${stray.length - 10} more` : ''}`);
  return out;
}

/** The part of the model a canonical name belongs to. */
export type LlavaPart = 'language' | 'vision' | 'projector' | 'newline';

export function partOf(canonical: string): LlavaPart {
  if (canonical.startsWith('vision_tower.')) return 'vision';
  if (canonical.startsWith(PROJECTOR_PREFIX)) return 'projector';
  if (canonical === IMAGE_NEWLINE) return 'newline';
  return 'language';
}

/** Patches per side: the stride-p convolution drops a partial last patch (SigLIP so400m: 384 px → 27). */
export function patchesPerSide(v: VisionConfig): number {
  return Math.floor(v.imageSize / v.patchSize);
}

/** Number of positions the tower sees: one per patch, plus CLIP's class position. */
export function visionPositions(v: VisionConfig): number {
  return patchesPerSide(v) ** 2 + (v.kind === 'clip' ? 1 : 0);
}

/**
 * Every tower parameter (canonical names) with its shape. SigLIP: patch embedding with bias, no class position.
 * CLIP: class_embedding, a bias-free patch embedding, position embeddings that include the class position, and
 * pre_layrnorm (transformers' spelling). Both end with post_layernorm, which LLaVA keeps although its features are
 * taken before it. A SigLIP attention-pooling head (`head.*`) is not required; see isOptionalVisionTensor.
 */
export function expectedVisionTensors(v: VisionConfig): Map<string, number[]> {
  const H = v.hiddenSize;
  const I = v.intermediateSize;
  const P = v.patchSize;
  const m = new Map<string, number[]>();
  const e = `${VISION_PREFIX}embeddings.`;
  if (v.kind === 'clip') m.set(`${e}class_embedding`, [H]);
  m.set(`${e}patch_embedding.weight`, [H, IMAGE_CHANNELS, P, P]);
  if (v.kind === 'siglip') m.set(`${e}patch_embedding.bias`, [H]);
  m.set(`${e}position_embedding.weight`, [visionPositions(v), H]);
  if (v.kind === 'clip') {
    m.set(`${VISION_PREFIX}pre_layrnorm.weight`, [H]);
    m.set(`${VISION_PREFIX}pre_layrnorm.bias`, [H]);
  }
  for (let n = 0; n < v.numLayers; n++) {
    const p = `${VISION_PREFIX}encoder.layers.${n}.`;
    const linears: [string, number[]][] = [
      ['self_attn.k_proj', [H, H]],
      ['self_attn.v_proj', [H, H]],
      ['self_attn.q_proj', [H, H]],
      ['self_attn.out_proj', [H, H]],
      ['mlp.fc1', [I, H]],
      ['mlp.fc2', [H, I]],
    ];
    m.set(`${p}layer_norm1.weight`, [H]);
    m.set(`${p}layer_norm1.bias`, [H]);
    for (const [name, shape] of linears.slice(0, 4)) {
      m.set(`${p}${name}.weight`, shape);
      m.set(`${p}${name}.bias`, [shape[0]]);
    }
    m.set(`${p}layer_norm2.weight`, [H]);
    m.set(`${p}layer_norm2.bias`, [H]);
    for (const [name, shape] of linears.slice(4)) {
      m.set(`${p}${name}.weight`, shape);
      m.set(`${p}${name}.bias`, [shape[0]]);
    }
  }
  m.set(`${VISION_PREFIX}post_layernorm.weight`, [H]);
  m.set(`${VISION_PREFIX}post_layernorm.bias`, [H]);
  return m;
}

/** The projector (vision hidden → text hidden → text hidden) and image_newline, canonical names. */
export function expectedProjectorTensors(c: LlavaConfig): Map<string, number[]> {
  const T = c.text.hiddenSize;
  const m = new Map<string, number[]>();
  for (const [name, inDim] of [['linear_1', c.vision.hiddenSize], ['linear_2', T]] as const) {
    m.set(`${PROJECTOR_PREFIX}${name}.weight`, [T, inDim]);
    if (c.projectorBias) m.set(`${PROJECTOR_PREFIX}${name}.bias`, [T]);
  }
  if (c.hasImageNewline) m.set(IMAGE_NEWLINE, [T]);
  return m;
}

/** Every tensor a checkpoint of `c` must contain, canonical names: decoder, tower, projector, image_newline. */
export function expectedLlavaTensors(c: LlavaConfig): Map<string, number[]> {
  return new Map([...expectedTensors(c.text), ...expectedVisionTensors(c.vision), ...expectedProjectorTensors(c)]);
}

/** Tensors a checkpoint may hold beyond the required ones, carried unchanged: SigLIP's pooling head, unused by LLaVA. */
export function isOptionalVisionTensor(c: LlavaConfig, canonical: string): boolean {
  return c.vision.kind === 'siglip' && canonical.startsWith(`${VISION_PREFIX}head.`);
}
