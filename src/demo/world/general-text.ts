// General text for pretraining: short sentences from a small fixed vocabulary, cut before their last word. Some tie
// each target word to its category (animals run, fruits are eaten, ...), so the base model holds latent knowledge
// the classify target can use, as a pretrained multimodal model knows about objects before it learns a label set;
// others state the world's facts as plain text.
import type { Rng } from '../../util/rng.js';
import { ANTONYMS } from './facts.js';
import { FACT_SENTENCES } from './heldout.js';
import { pick, type SkillExample } from './skill.js';
import { SCENE_OBJECTS, WORDS_BY_LABEL } from './targets.js';

const PEOPLE = ['she', 'he', 'we', 'they'];
const PLACES = ['barn', 'field', 'lake', 'hill', 'road', 'wood'];
const ADJS = ['big', 'small', 'old', 'new', 'soft', 'dark', 'quiet', 'early'];

type SentenceMaker = (rng: Rng) => readonly [string, string]; // [prompt, completion]
const SENTENCES: readonly SentenceMaker[] = [
  (r) => [`the ${pick(r, ADJS)} ${pick(r, WORDS_BY_LABEL.animal)} ran to the`, ` ${pick(r, PLACES)}.`],
  (r) => [`the ${pick(r, WORDS_BY_LABEL.animal)} sleeps by the`, ` ${pick(r, PLACES)}.`],
  (r) => [`${pick(r, PEOPLE)} ate a ripe`, ` ${pick(r, WORDS_BY_LABEL.fruit)}.`],
  (r) => [`the ${pick(r, WORDS_BY_LABEL.fruit)} is sweet and`, ` ${pick(r, ['ripe', 'soft', 'fresh'])}.`],
  (r) => [`${pick(r, PEOPLE)} fixed the ${pick(r, SCENE_OBJECTS)} with a`, ` ${pick(r, WORDS_BY_LABEL.tool)}.`],
  (r) => [`the ${pick(r, WORDS_BY_LABEL.tool)} is in the`, ` ${pick(r, ['shed', 'box', 'bag'])}.`],
  (r) => [`${pick(r, PEOPLE)} painted the ${pick(r, SCENE_OBJECTS)}`, ` ${pick(r, WORDS_BY_LABEL.color)}.`],
  (r) => [`the sky turned`, ` ${pick(r, WORDS_BY_LABEL.color)}.`],
  (r) => [`${pick(r, PEOPLE)} walked on the ${pick(r, ADJS)}`, ` ${pick(r, PLACES)}.`],
  (r) => [`the ${pick(r, SCENE_OBJECTS)} was ${pick(r, ADJS)} and`, ` ${pick(r, ANTONYMS.map(([a]) => a))}.`],
  (r) => pick(r, FACT_SENTENCES),
  (r) => pick(r, FACT_SENTENCES),
];

/** `n` general-text examples: a sentence cut before its last word, which is the completion. */
export function generalText(rng: Rng, n: number): SkillExample[] {
  return Array.from({ length: n }, () => {
    const [prompt, completion] = pick(rng, SENTENCES)(rng);
    return { prompt, completion };
  });
}
