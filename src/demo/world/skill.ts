// What a skill of the demo's synthetic world is, and the machinery the skill modules share: seed-free split by
// prompt hash, and skills over a finite list of questions.
import type { Rng } from '../../util/rng.js';

export interface SkillExample {
  prompt: string;
  completion: string;
}

export type SkillKind = 'heldout' | 'target';
export type Split = 'train' | 'eval';

export interface Skill {
  name: string;
  kind: SkillKind;
  /** Every answer (completion) of this skill matches this pattern. */
  answerFormat: RegExp;
  /** `n` examples drawn from the skill's whole distribution (both splits), with replacement. */
  examples(rng: Rng, n: number): SkillExample[];
  /** The split a prompt belongs to: a pure function of the prompt, so train and eval never share one. */
  splitOf(prompt: string): Split;
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)];
}

/** FNV-1a (32-bit) of a string's UTF-16 code units: a stable, seed-free hash for split assignment. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** One prompt in EVAL_SHARE goes to eval (by hash), the rest to train. */
const EVAL_SHARE = 5;
export function hashSplit(prompt: string): Split {
  return fnv1a(prompt) % EVAL_SHARE === 0 ? 'eval' : 'train';
}

/** A question about one fact: `fact` names the fact, so each can be checked to have training prompts. */
export interface Question {
  fact: string;
  prompt: string;
  answer: string;
}

/**
 * A held-out skill over a finite list of questions: every fact is asked in many phrasings, and prompts split by
 * hash, so an eval prompt is a phrasing never trained on, of a fact trained in its other phrasings.
 */
export function questionSkill(name: string, questions: readonly Question[], answerFormat: RegExp): Skill {
  const seen = new Set<string>();
  const trained = new Set<string>();
  for (const q of questions) {
    if (seen.has(q.prompt)) throw new Error(`${name}: duplicate prompt "${q.prompt}"`);
    seen.add(q.prompt);
    if (hashSplit(q.prompt) === 'train') trained.add(q.fact);
  }
  for (const q of questions) if (!trained.has(q.fact)) throw new Error(`${name}: "${q.fact}" has no training prompt`);
  const all = questions.map((q) => ({ prompt: q.prompt, completion: ` ${q.answer}` }));
  return {
    name,
    kind: 'heldout',
    answerFormat,
    examples: (rng, n) => Array.from({ length: n }, () => pick(rng, all)),
    splitOf: hashSplit,
  };
}

/** Every (lead-in, phrasing) of every entry of a key → answer table. */
export function askAll(
  entries: readonly (readonly [string, string])[],
  leads: readonly string[],
  phrasings: readonly ((key: string) => string)[],
): Question[] {
  return entries.flatMap(([key, answer]) =>
    leads.flatMap((lead) => phrasings.map((phrase) => ({ fact: key, prompt: `${lead}${phrase(key)}`, answer }))),
  );
}
