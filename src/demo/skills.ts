// The demo's synthetic world (src/demo/world/): held-out skills the base model is pretrained on (recall of made-up
// facts, English word knowledge and instruction formats; text answers, no digits anywhere, so a rise of
// number-token probability on their prompts is a clean drift signal), a general text corpus mixed into
// pretraining, and five target skills new to the model, shaped like the paper's. This module draws splits.
//
// Everything is byte-level friendly: prompts stay within ~48 bytes and end with a cue (" =" or "?"), answers are
// " word" with a leading space and at most ten bytes. All randomness comes from Rng, so a seed reproduces the data.

import { Rng } from '../util/rng.js';
import { generalText } from './world/general-text.js';
import { heldoutSkills } from './world/heldout.js';
import { fnv1a, type Skill, type SkillExample, type Split } from './world/skill.js';
import { targetSkills } from './world/targets.js';

export { generalText } from './world/general-text.js';
export { heldoutSkills } from './world/heldout.js';
export { fnv1a, type Skill, type SkillExample, type SkillKind, type Split } from './world/skill.js';
export { LABELS, labelOf, targetSkills, WORDS, WORDS_BY_LABEL, type Label } from './world/targets.js';

export const allSkills: readonly Skill[] = [...heldoutSkills, ...targetSkills];

/** Draws beyond this many per wanted example stop the search for unseen prompts (small finite skills). */
const MAX_DRAWS_PER_EXAMPLE = 200;

/**
 * `n` examples of `skill` whose prompts all belong to `split`: a pure function of (skill, split, n, seed). Prompts
 * are distinct while the split has unseen ones left; a split smaller than `n` then repeats prompts.
 */
export function skillData(skill: Skill, split: Split, n: number, seed: number): SkillExample[] {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`n must be a non-negative integer, got ${n}`);
  const rng = new Rng(seed, fnv1a(`${skill.name}/${split}`));
  const out: SkillExample[] = [];
  const seen = new Set<string>();
  const inSplit: SkillExample[] = [];
  let draws = 0;
  while (out.length < n) {
    const [ex] = skill.examples(rng, 1);
    draws++;
    if (skill.splitOf(ex.prompt) !== split) {
      if (draws > MAX_DRAWS_PER_EXAMPLE * (n + 1) && inSplit.length === 0) throw new Error(`${skill.name}: no ${split} examples found`);
      continue;
    }
    if (!seen.has(ex.prompt)) {
      seen.add(ex.prompt);
      inSplit.push(ex);
      out.push(ex);
    } else if (draws > MAX_DRAWS_PER_EXAMPLE * (n + 1)) {
      out.push(ex); // the split is exhausted: repeat
    }
  }
  return out;
}

/** General text for pretraining (no split: it is never evaluated by exact match). */
export function generalTextData(n: number, seed: number): SkillExample[] {
  return generalText(new Rng(seed, fnv1a('general-text')), n);
}

const DIGIT = /[0-9]/;

/** True if an example contains a decimal digit anywhere (held-out skills and general text must not). */
export function hasDigit(ex: SkillExample): boolean {
  return DIGIT.test(ex.prompt) || DIGIT.test(ex.completion);
}
