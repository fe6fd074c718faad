// The held-out skills the base model is pretrained on: recall of the world's facts, English word knowledge, and
// instruction formats applied to recalled facts. Answers are lowercase (or, for `caps`, upper-case) words, never
// digits, so a rise of number-token probability on their prompts is a clean drift signal.
import { ANTONYMS, COUNTRIES, CREATURES, PAST_TENSES, PLURALS, RHYMES } from './facts.js';
import { askAll, questionSkill, type Question, type Skill } from './skill.js';

/** Lead-ins that vary how a question is put, so each fact is asked in many distinct prompts. */
const LEADS = ['', 'q: ', 'quiz: ', 'say, ', 'now, ', 'tell me, '];

type Phrase = (key: string) => string;

const CAPITAL: Phrase[] = [
  (c) => `capital of ${c}?`,
  (c) => `${c}'s capital?`,
  (c) => `capital: ${c} =`,
  (c) => `name the capital of ${c}?`,
  (c) => `the capital of ${c} is?`,
  (c) => `${c}, capital city?`,
];
const LANGUAGE: Phrase[] = [
  (c) => `language of ${c}?`,
  (c) => `${c}'s language?`,
  (c) => `language: ${c} =`,
  (c) => `what do they speak in ${c}?`,
  (c) => `people in ${c} speak?`,
  (c) => `${c}, spoken tongue?`,
];
const COLOR: Phrase[] = [
  (x) => `color of a ${x}?`,
  (x) => `a ${x}'s color?`,
  (x) => `color: ${x} =`,
  (x) => `what color is a ${x}?`,
  (x) => `a ${x} is what color?`,
  (x) => `${x}, its color?`,
];
const HABITAT: Phrase[] = [
  (x) => `where does a ${x} live?`,
  (x) => `home of a ${x}?`,
  (x) => `habitat: ${x} =`,
  (x) => `a ${x} lives in a?`,
  (x) => `the ${x}'s home?`,
  (x) => `${x}, found where?`,
];
const GROUP: Phrase[] = [
  (x) => `class of a ${x}?`,
  (x) => `a ${x} is a type of?`,
  (x) => `group: ${x} =`,
  (x) => `what sort of creature is a ${x}?`,
  (x) => `the ${x} belongs to?`,
  (x) => `${x}, which class?`,
];
const ANTONYM: Phrase[] = [
  (w) => `opposite of ${w}?`,
  (w) => `antonym: ${w} =`,
  (w) => `${w}, the opposite?`,
  (w) => `not ${w} but?`,
  (w) => `the reverse of ${w}?`,
  (w) => `what is the opposite of ${w}?`,
];
const PLURAL: Phrase[] = [
  (w) => `plural of ${w}?`,
  (w) => `plural: ${w} =`,
  (w) => `one ${w}, many?`,
  (w) => `more than one ${w}?`,
  (w) => `${w}, in the plural?`,
  (w) => `the plural of ${w} is?`,
];
const PAST: Phrase[] = [
  (w) => `past of ${w}?`,
  (w) => `past tense: ${w} =`,
  (w) => `today i ${w}, yesterday i?`,
  (w) => `${w}, in the past?`,
  (w) => `the past tense of ${w}?`,
  (w) => `what is the past of ${w}?`,
];
const RHYME: Phrase[] = [
  (w) => `rhymes with ${w}?`,
  (w) => `rhyme: ${w} =`,
  (w) => `a rhyme for ${w}?`,
  (w) => `${w} rhymes with?`,
  (w) => `what rhymes with ${w}?`,
  (w) => `find a rhyme for ${w}?`,
];

const capitals = COUNTRIES.map(([c, capital]) => [c, capital] as const);
const languages = COUNTRIES.map(([c, , language]) => [c, language] as const);
const colors = CREATURES.map(([x, color]) => [x, color] as const);
const habitats = CREATURES.map(([x, , home]) => [x, home] as const);
const groups = CREATURES.map(([x, , , group]) => [x, group] as const);
const antonyms = ANTONYMS.flatMap(([a, b]) => [
  [a, b] as const,
  [b, a] as const,
]);

/** Facts asked inside an instruction format: the three shortest phrasings of three fact tables. */
const INNER: Question[] = [
  ...askAll(capitals, [''], CAPITAL.slice(0, 3)).map((q) => ({ ...q, fact: `capital/${q.fact}` })),
  ...askAll(languages, [''], LANGUAGE.slice(0, 3)).map((q) => ({ ...q, fact: `language/${q.fact}` })),
  ...askAll(colors, [''], COLOR.slice(0, 3)).map((q) => ({ ...q, fact: `color/${q.fact}` })),
];

/** An instruction format applied to a recalled fact: every (instruction, inner question) pair. */
function formatted(instructions: readonly string[], answer: (fact: string) => string): Question[] {
  return instructions.flatMap((ins) => INNER.map((q) => ({ fact: q.fact, prompt: `${ins}${q.prompt}`, answer: answer(q.answer) })));
}

const CAPS = ['in caps, ', 'upper case: ', 'caps please: ', 'shout it: ', 'answer in caps: ', 'all caps: '];
const INITIAL = ['first letter: ', 'initial only: ', 'just the initial: ', 'first letter only: ', 'one letter: ', 'answer with a letter: '];

const WORD = /^ [a-z]+$/;

export const heldoutSkills: readonly Skill[] = [
  questionSkill('capital', askAll(capitals, LEADS, CAPITAL), WORD),
  questionSkill('language', askAll(languages, LEADS, LANGUAGE), WORD),
  questionSkill('color', askAll(colors, LEADS, COLOR), WORD),
  questionSkill('habitat', askAll(habitats, LEADS, HABITAT), WORD),
  questionSkill('group', askAll(groups, LEADS, GROUP), WORD),
  questionSkill('antonym', askAll(antonyms, LEADS, ANTONYM), WORD),
  questionSkill('plural', askAll(PLURALS, LEADS, PLURAL), WORD),
  questionSkill('past', askAll(PAST_TENSES, LEADS, PAST), WORD),
  questionSkill('rhyme', askAll(RHYMES, LEADS, RHYME), WORD),
  questionSkill('caps', formatted(CAPS, (a) => a.toUpperCase()), /^ [A-Z]+$/),
  questionSkill('initial', formatted(INITIAL, (a) => a[0]), /^ [a-z]$/),
];

/** The world's facts stated as plain sentences, for the general-text mix: knowledge in text, not only in Q&A. */
export const FACT_SENTENCES: readonly (readonly [string, string])[] = [
  ...COUNTRIES.flatMap(([c, capital, language]): [string, string][] => [
    [`${capital} is the chief city of`, ` ${c}.`],
    [`the folk of ${c} talk in`, ` ${language}.`],
  ]),
  ...CREATURES.flatMap(([x, color, home, group]): [string, string][] => [
    [`the ${color} ${x} lives in the`, ` ${home}.`],
    [`every ${x} is a`, ` ${group}.`],
  ]),
];
