// The five target skills, new to the base model and shaped like Zhu et al.'s five (arXiv 2510.08564):
// classification into a fixed label set, counting (numeric answers), yes/no questions, reading text out of a
// described scene (OCR-like) and reading a clock (HH:MM answers). Their cues never occur in pretraining.
import { hashSplit, pick, type Skill } from './skill.js';

export const LABELS = ['animal', 'fruit', 'tool', 'color'] as const;
export type Label = (typeof LABELS)[number];

/** 40 short lowercase words in four categories (the classification labels). */
export const WORDS_BY_LABEL: Readonly<Record<Label, readonly string[]>> = {
  animal: ['cat', 'dog', 'fox', 'owl', 'bee', 'cow', 'pig', 'hen', 'ant', 'elk'],
  fruit: ['apple', 'pear', 'plum', 'lime', 'fig', 'kiwi', 'grape', 'melon', 'lemon', 'peach'],
  tool: ['saw', 'axe', 'drill', 'rake', 'hoe', 'spade', 'knife', 'awl', 'vise', 'tongs'],
  color: ['red', 'blue', 'green', 'pink', 'gray', 'gold', 'tan', 'teal', 'cyan', 'navy'],
};

export const WORDS: readonly string[] = LABELS.flatMap((l) => WORDS_BY_LABEL[l]);

export function labelOf(word: string): Label {
  const label = LABELS.find((l) => WORDS_BY_LABEL[l].includes(word));
  if (!label) throw new Error(`"${word}" is not in the demo word list`);
  return label;
}

const MODIFIERS = ['big', 'small', 'old', 'new', 'wet', 'dry', 'soft', 'hard'];
const COUNT_WORDS = WORDS_BY_LABEL.animal; // three-letter words keep a seven-word list within ~40 bytes
export const SCENE_OBJECTS = ['sign', 'box', 'door', 'bus', 'cup', 'bag', 'cart', 'flag'];
export const SCENE_TEXTS = ['OPEN', 'STOP', 'EXIT', 'SALE', 'PUSH', 'PULL', 'FOOD', 'BANK', 'CAFE', 'TAXI', 'MAIL', 'GIFT'];

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
