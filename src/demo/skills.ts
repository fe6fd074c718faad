// The demo's synthetic skill suite: held-out skills the base model is pretrained on (text answers, no digits
// anywhere, so a rise of number-token probability on their prompts is a clean "bias drift" signal), a general
// text corpus mixed into pretraining, and five target skills new to the model, shaped like Zhu et al.'s five
// (arXiv 2510.08564): classification into a fixed label set, counting (numeric answers), yes/no questions,
// reading text out of a described scene (OCR-like) and reading a clock (HH:MM answers).
//
// Everything is byte-level friendly: prompts stay within ~45 bytes and end with a cue (" =" or "?"), answers are
// " word" with a leading space and a few bytes. All randomness comes from Rng, so a seed reproduces the data.

import { Rng } from '../util/rng.js';

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

// ---------------------------------------------------------------------------------------------------------
// Shared vocabulary: 40 short lowercase words in four categories (the classification labels).

export const LABELS = ['animal', 'fruit', 'tool', 'color'] as const;
export type Label = (typeof LABELS)[number];

export const WORDS_BY_LABEL: Readonly<Record<Label, readonly string[]>> = {
  animal: ['cat', 'dog', 'fox', 'owl', 'bee', 'cow', 'pig', 'hen', 'ant', 'elk'],
  fruit: ['apple', 'pear', 'plum', 'lime', 'fig', 'kiwi', 'grape', 'melon', 'lemon', 'peach'],
  tool: ['saw', 'axe', 'drill', 'rake', 'hoe', 'spade', 'knife', 'awl', 'vise', 'tongs'],
  color: ['red', 'blue', 'green', 'pink', 'gray', 'gold', 'tan', 'teal', 'cyan', 'navy'],
};

/** The shared word list (40 words). */
export const WORDS: readonly string[] = LABELS.flatMap((l) => WORDS_BY_LABEL[l]);

export function labelOf(word: string): Label {
  const label = LABELS.find((l) => WORDS_BY_LABEL[l].includes(word));
  if (!label) throw new Error(`"${word}" is not in the demo word list`);
  return label;
}

/** A made-up table of facts to recall: country → capital (no real-world knowledge involved). */
export const CAPITALS: readonly (readonly [string, string])[] = [
  ['zorbia', 'mell'],
  ['quandor', 'vesk'],
  ['plinth', 'oruna'],
  ['tavia', 'kesh'],
  ['morrow', 'lute'],
  ['brisk', 'fenna'],
  ['ulmar', 'dobb'],
  ['gessa', 'pirn'],
  ['holt', 'yarra'],
  ['narn', 'coble'],
  ['wexia', 'saul'],
  ['drace', 'imbo'],
];

export const ANTONYMS: readonly (readonly [string, string])[] = [
  ['hot', 'cold'],
  ['big', 'small'],
  ['up', 'down'],
  ['fast', 'slow'],
  ['wet', 'dry'],
  ['old', 'new'],
  ['high', 'low'],
  ['open', 'shut'],
  ['soft', 'hard'],
  ['full', 'empty'],
  ['early', 'late'],
  ['loud', 'quiet'],
  ['rich', 'poor'],
  ['thick', 'thin'],
  ['near', 'far'],
  ['light', 'dark'],
];

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

// ---------------------------------------------------------------------------------------------------------
// Helpers

function pick<T>(rng: Rng, items: readonly T[]): T {
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
function hashSplit(prompt: string): Split {
  return fnv1a(prompt) % EVAL_SHARE === 0 ? 'eval' : 'train';
}

const DIGIT = /[0-9]/;

/** Lead-ins that vary how a table question is put, so a fact is asked in many distinct prompts. */
const LEADS = ['', 'q: ', 'quiz: ', 'say, ', 'now, ', 'tell me, '];

/**
 * A skill over a fixed table (recall): every entry is asked in every (lead-in, phrasing) combination; prompts split
 * by hash, so an eval prompt is a combination never trained on, about a fact trained in the other combinations.
 */
function tableSkill(
  name: string,
  entries: readonly (readonly [string, string])[],
  phrasings: readonly ((key: string) => string)[],
): Skill {
  const all: SkillExample[] = [];
  const seen = new Set<string>();
  for (const [key, answer] of entries) {
    let trained = 0;
    for (const lead of LEADS) {
      for (const phrase of phrasings) {
        const prompt = `${lead}${phrase(key)}`;
        if (seen.has(prompt)) throw new Error(`${name}: duplicate prompt "${prompt}"`);
        seen.add(prompt);
        if (hashSplit(prompt) === 'train') trained++;
        all.push({ prompt, completion: ` ${answer}` });
      }
    }
    if (trained === 0) throw new Error(`${name}: "${key}" has no training prompt`);
  }
  return {
    name,
    kind: 'heldout',
    answerFormat: /^ [a-z]+$/,
    examples: (rng, n) => Array.from({ length: n }, () => pick(rng, all)),
    splitOf: hashSplit,
  };
}

/** A random lowercase pseudo-word of 3–5 letters (the string skills' inputs: far more than the model can memorise). */
function pseudoWord(rng: Rng): string {
  const len = 3 + rng.int(3);
  let w = '';
  for (let i = 0; i < len; i++) w += LETTERS[rng.int(LETTERS.length)];
  return w;
}

function stringSkill(name: string, cue: string, transform: (w: string) => string, answerFormat: RegExp): Skill {
  return {
    name,
    kind: 'heldout',
    answerFormat,
    examples: (rng, n) =>
      Array.from({ length: n }, () => {
        const w = pseudoWord(rng);
        return { prompt: `${cue}: ${w} =`, completion: ` ${transform(w)}` };
      }),
    // By the input word, so an eval word never appears in training in any string skill.
    splitOf: (prompt) => hashSplit(prompt.slice(prompt.indexOf(':') + 2, -2)),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Held-out skills (pretraining): text answers only, no digits.

export const heldoutSkills: readonly Skill[] = [
  stringSkill('copy', 'copy', (w) => w, /^ [a-z]+$/),
  stringSkill('reverse', 'reverse', (w) => [...w].reverse().join(''), /^ [a-z]+$/),
  stringSkill('upper', 'upper', (w) => w.toUpperCase(), /^ [A-Z]+$/),
  tableSkill('capital', CAPITALS, [
    (c) => `capital of ${c}?`,
    (c) => `${c}'s capital?`,
    (c) => `capital: ${c} =`,
    (c) => `name the capital of ${c}?`,
    (c) => `the capital of ${c} is?`,
    (c) => `${c}, capital city?`,
  ]),
  tableSkill(
    'antonym',
    ANTONYMS.flatMap(([a, b]) => [
      [a, b],
      [b, a],
    ]),
    [
      (w) => `opposite of ${w}?`,
      (w) => `antonym: ${w} =`,
      (w) => `${w}, the opposite?`,
      (w) => `not ${w} but?`,
    ],
  ),
];

// ---------------------------------------------------------------------------------------------------------
// General text: short sentences from a small fixed vocabulary. Some sentences tie each word to its category
// (animals run, fruits are eaten, ...), so the base model holds latent knowledge the classify target can use,
// as a pretrained multimodal model knows about objects before it learns a label set.

const PEOPLE = ['she', 'he', 'we', 'they'];
const PLACES = ['barn', 'field', 'lake', 'hill', 'road', 'wood'];
const ADJS = ['big', 'small', 'old', 'new', 'soft', 'dark', 'quiet', 'early'];
const OBJECTS = ['sign', 'box', 'door', 'bus', 'cup', 'bag', 'cart', 'flag'];

type SentenceMaker = (rng: Rng) => [string, string]; // [prompt, completion]
const SENTENCES: readonly SentenceMaker[] = [
  (r) => [`the ${pick(r, ADJS)} ${pick(r, WORDS_BY_LABEL.animal)} ran to the`, ` ${pick(r, PLACES)}.`],
  (r) => [`the ${pick(r, WORDS_BY_LABEL.animal)} sleeps by the`, ` ${pick(r, PLACES)}.`],
  (r) => [`${pick(r, PEOPLE)} ate a ripe`, ` ${pick(r, WORDS_BY_LABEL.fruit)}.`],
  (r) => [`the ${pick(r, WORDS_BY_LABEL.fruit)} is sweet and`, ` ${pick(r, ['ripe', 'soft', 'fresh'])}.`],
  (r) => [`${pick(r, PEOPLE)} fixed the ${pick(r, OBJECTS)} with a`, ` ${pick(r, WORDS_BY_LABEL.tool)}.`],
  (r) => [`the ${pick(r, WORDS_BY_LABEL.tool)} is in the`, ` ${pick(r, ['shed', 'box', 'bag'])}.`],
  (r) => [`${pick(r, PEOPLE)} painted the ${pick(r, OBJECTS)}`, ` ${pick(r, WORDS_BY_LABEL.color)}.`],
  (r) => [`the sky turned`, ` ${pick(r, WORDS_BY_LABEL.color)}.`],
  (r) => [`${pick(r, PEOPLE)} walked on the ${pick(r, ADJS)}`, ` ${pick(r, PLACES)}.`],
  (r) => [`the ${pick(r, OBJECTS)} was ${pick(r, ADJS)} and`, ` ${pick(r, ANTONYMS.map(([a]) => a))}.`],
];

/** `n` general-text examples: a sentence cut before its last word, which is the completion. */
export function generalText(rng: Rng, n: number): SkillExample[] {
  return Array.from({ length: n }, () => {
    const [prompt, completion] = pick(rng, SENTENCES)(rng);
    return { prompt, completion };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Target skills, in the paper's order. They are new to the base model: their cues never occur in pretraining.

const MODIFIERS = ['big', 'small', 'old', 'new', 'wet', 'dry', 'soft', 'hard'];
const COUNT_WORDS = WORDS_BY_LABEL.animal; // three-letter words keep a seven-word list within ~40 bytes
const SCENE_OBJECTS = ['sign', 'box', 'door', 'bus', 'cup', 'bag', 'cart', 'flag'];
const SCENE_TEXTS = ['OPEN', 'STOP', 'EXIT', 'SALE', 'PUSH', 'PULL', 'FOOD', 'BANK', 'CAFE', 'TAXI', 'MAIL', 'GIFT'];

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

export const targetSkills: readonly Skill[] = [
  {
    // "kind: big plum =" → " fruit": one of a fixed label set; the same word shows up with other modifiers.
    name: 'classify',
    kind: 'target',
    answerFormat: new RegExp(`^ (${LABELS.join('|')})$`),
    examples: (rng, n) =>
      Array.from({ length: n }, () => {
        const word = pick(rng, WORDS);
        return { prompt: `kind: ${pick(rng, MODIFIERS)} ${word} =`, completion: ` ${labelOf(word)}` };
      }),
    splitOf: hashSplit,
  },
  {
    // "count cat: cat dog cat owl =" → " 2": numeric answers, the paper's driver of number-token drift.
    name: 'count',
    kind: 'target',
    answerFormat: /^ [0-9]$/,
    examples: (rng, n) =>
      Array.from({ length: n }, () => {
        const target = pick(rng, COUNT_WORDS);
        const others = COUNT_WORDS.filter((w) => w !== target);
        const len = 3 + rng.int(5); // 3..7 words
        const count = rng.int(Math.min(len, 5) + 1); // 0..5
        const list = [...Array<string>(count).fill(target), ...Array.from({ length: len - count }, () => pick(rng, others))];
        rng.shuffle(list);
        return { prompt: `count ${target}: ${list.join(' ')} =`, completion: ` ${count}` };
      }),
    splitOf: hashSplit,
  },
  {
    // "is owl in: cat owl pig?" / "is plum a fruit?" → " yes" | " no", balanced.
    name: 'yesno',
    kind: 'target',
    answerFormat: /^ (yes|no)$/,
    examples: (rng, n) =>
      Array.from({ length: n }, () => {
        const yes = rng.int(2) === 1;
        if (rng.int(2) === 0) {
          const list = rng.shuffle([...COUNT_WORDS]).slice(0, 3 + rng.int(2));
          const asked = yes ? pick(rng, list) : pick(rng, COUNT_WORDS.filter((w) => !list.includes(w)));
          return { prompt: `is ${asked} in: ${list.join(' ')}?`, completion: yes ? ' yes' : ' no' };
        }
        const label = pick(rng, LABELS);
        const word = yes ? pick(rng, WORDS_BY_LABEL[label]) : pick(rng, WORDS.filter((w) => labelOf(w) !== label));
        return { prompt: `is ${word} a ${label}?`, completion: yes ? ' yes' : ' no' };
      }),
    splitOf: hashSplit,
  },
  {
    // "scene: box says STOP, sign says OPEN. sign?" → " OPEN": read the text written on a described object.
    name: 'scene',
    kind: 'target',
    answerFormat: new RegExp(`^ (${SCENE_TEXTS.join('|')})$`),
    examples: (rng, n) =>
      Array.from({ length: n }, () => {
        const [a, b] = rng.shuffle([...SCENE_OBJECTS]);
        const [ta, tb] = rng.shuffle([...SCENE_TEXTS]);
        const askA = rng.int(2) === 0;
        return { prompt: `scene: ${a} says ${ta}, ${b} says ${tb}. ${askA ? a : b}?`, completion: ` ${askA ? ta : tb}` };
      }),
    splitOf: hashSplit,
  },
  {
    // "clock: hour at 3, minute at 6 =" → " 03:30": hand positions 1..12 on the dial to HH:MM.
    name: 'clock',
    kind: 'target',
    answerFormat: /^ (0[1-9]|1[0-2]):[0-5][05]$/,
    examples: (rng, n) =>
      Array.from({ length: n }, () => {
        const hour = 1 + rng.int(12);
        const minute = 1 + rng.int(12);
        return { prompt: `clock: hour at ${hour}, minute at ${minute} =`, completion: ` ${pad2(hour)}:${pad2((minute % 12) * 5)}` };
      }),
    splitOf: hashSplit,
  },
];

export const allSkills: readonly Skill[] = [...heldoutSkills, ...targetSkills];

// ---------------------------------------------------------------------------------------------------------
// Splits

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

/** True if an example contains a decimal digit anywhere (held-out skills and general text must not). */
export function hasDigit(ex: SkillExample): boolean {
  return DIGIT.test(ex.prompt) || DIGIT.test(ex.completion);
}
