// The demo's skill suite (deterministic, disjoint splits; answer formats; no digits in held-out data) and the
// shipped base model (loads; knows the held-out skills; does not know the targets).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { BASE_ARCH, DEMO_BASE_MODEL_DIR, MAX_ANSWER_TOKENS, pretrainingData } from '../../src/demo/base-model.js';
import {
  allSkills,
  generalTextData,
  hasDigit,
  heldoutSkills,
  LABELS,
  labelOf,
  skillData,
  targetSkills,
  WORDS,
  type SkillExample,
} from '../../src/demo/skills.js';
import { ANTONYMS, COUNTRIES, CREATURES, PAST_TENSES, PLURALS, RHYMES } from '../../src/demo/world/facts.js';
import { generate } from '../../src/eval/generate.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';

const SEED = 3;
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('skill suite', () => {
  it('has at least eight held-out skills and the five targets in the paper order', () => {
    expect(heldoutSkills.length).toBeGreaterThanOrEqual(8);
    expect(new Set(allSkills.map((s) => s.name)).size).toBe(allSkills.length);
    expect(targetSkills.map((s) => s.name)).toEqual(['classify', 'count', 'yesno', 'scene', 'clock']);
    expect(heldoutSkills.every((s) => s.kind === 'heldout')).toBe(true);
    expect(targetSkills.every((s) => s.kind === 'target')).toBe(true);
    expect(new Set(WORDS).size).toBe(40);
    expect(WORDS.every((w) => /^[a-z]{2,6}$/.test(w))).toBe(true);
  });

  it('states each fact once: table keys are unique', () => {
    const tables = { COUNTRIES, CREATURES, ANTONYMS, PAST_TENSES, PLURALS, RHYMES };
    for (const [name, rows] of Object.entries(tables)) {
      const keys = rows.map((r) => r[0]);
      expect(new Set(keys).size, name).toBe(keys.length);
      expect(rows.flat().every((w) => /^[a-z]+$/.test(w)), name).toBe(true);
    }
    // A capital or language never doubles as a country's name, so recall is not copying.
    const countries = new Set(COUNTRIES.map(([c]) => c));
    expect(COUNTRIES.some(([, capital, language]) => countries.has(capital) || countries.has(language))).toBe(false);
  });

  it('no held-out answer is an answer of a target skill', () => {
    const targetAnswers = new Set(targetSkills.flatMap((s) => skillData(s, 'train', 300, SEED).map((e) => e.completion)));
    for (const s of heldoutSkills) {
      for (const e of skillData(s, 'train', 500, SEED)) expect(targetAnswers.has(e.completion), `${s.name}: ${e.completion}`).toBe(false);
    }
  });

  it('no held-out prompt carries a target cue', () => {
    for (const s of heldoutSkills) {
      for (const e of skillData(s, 'train', 500, SEED)) {
        expect(e.prompt, s.name).not.toMatch(/kind:|count |scene:|clock:|is \w+ in:/);
        expect(e.prompt, s.name).not.toMatch(/^is \w+ a \w+\?$/);
      }
    }
  });

  it('splits are deterministic, seed-dependent where the skill has room, and disjoint', () => {
    for (const s of allSkills) {
      const train = skillData(s, 'train', 300, SEED);
      const evalSplit = skillData(s, 'eval', 60, SEED);
      expect(skillData(s, 'train', 300, SEED), s.name).toEqual(train);
      expect(skillData(s, 'eval', 60, SEED), s.name).toEqual(evalSplit);
      expect(train).toHaveLength(300);
      expect(evalSplit).toHaveLength(60);
      // Another seed draws other examples, but never crosses the split.
      const otherEval = skillData(s, 'eval', 60, SEED + 1);
      expect(otherEval, s.name).not.toEqual(evalSplit);
      const trainPrompts = new Set([...train, ...skillData(s, 'train', 500, SEED + 1)].map((e) => e.prompt));
      for (const e of [...evalSplit, ...otherEval]) {
        expect(trainPrompts.has(e.prompt), `${s.name}: "${e.prompt}" is in both splits`).toBe(false);
        expect(s.splitOf(e.prompt)).toBe('eval');
      }
      for (const e of train) expect(s.splitOf(e.prompt)).toBe('train');
      // Distinct prompts while the split has unseen ones.
      expect(new Set(evalSplit.map((e) => e.prompt)).size, s.name).toBeGreaterThan(20);
    }
  });

  it('prompts end with a cue, completions are a short answer after a space', () => {
    for (const s of allSkills) {
      for (const e of [...skillData(s, 'train', 300, SEED), ...skillData(s, 'eval', 50, SEED)]) {
        expect(e.prompt, s.name).toMatch(/( =|\?)$/);
        expect(e.completion, s.name).toMatch(/^ \S+$/);
        expect(bytes(e.prompt), `${s.name}: ${e.prompt}`).toBeLessThanOrEqual(48);
        expect(bytes(e.completion), `${s.name}: ${e.completion}`).toBeLessThanOrEqual(10);
        expect(e.completion, s.name).toMatch(s.answerFormat);
      }
    }
  });

  it('held-out skills and general text contain no digits; held-out answers are right', () => {
    const check = (examples: SkillExample[], name: string) => {
      for (const e of examples) expect(hasDigit(e), `${name}: ${JSON.stringify(e)}`).toBe(false);
    };
    for (const s of heldoutSkills) {
      check(skillData(s, 'train', 500, SEED), s.name);
      check(skillData(s, 'eval', 200, SEED), s.name);
    }
    check(generalTextData(1000, SEED), 'general text');
    check(pretrainingData(SEED, 50, 50), 'pretraining mix');
    // Answers agree with the world's tables: each prompt names its key, and its answer is that key's fact.
    const byName = (n: string) => heldoutSkills.find((s) => s.name === n)!;
    const answersOf = (rows: readonly (readonly string[])[], col: number) => new Map(rows.map((r) => [r[0], r[col]]));
    const keyIn = (prompt: string, keys: Iterable<string>) => [...keys].filter((k) => new RegExp(`\\b${k}\\b`).test(prompt)).sort((a, b) => b.length - a.length)[0];
    const tables: [string, Map<string, string>][] = [
      ['capital', answersOf(COUNTRIES, 1)],
      ['language', answersOf(COUNTRIES, 2)],
      ['color', answersOf(CREATURES, 1)],
      ['habitat', answersOf(CREATURES, 2)],
      ['group', answersOf(CREATURES, 3)],
      ['plural', answersOf(PLURALS, 1)],
      ['past', answersOf(PAST_TENSES, 1)],
      ['rhyme', answersOf(RHYMES, 1)],
    ];
    for (const [name, answers] of tables) {
      for (const e of skillData(byName(name), 'eval', 50, SEED)) expect(e.completion.slice(1), e.prompt).toBe(answers.get(keyIn(e.prompt, answers.keys())!));
    }
    const opposite = new Map(ANTONYMS.flatMap(([a, b]) => [[a, b], [b, a]] as const));
    for (const e of skillData(byName('antonym'), 'eval', 50, SEED)) expect(opposite.get(e.completion.slice(1)), e.prompt).toBe(keyIn(e.prompt, opposite.keys()));
    // Formats: the recalled fact in upper case, or its first letter.
    const facts = new Map([...COUNTRIES.flatMap(([c, capital, language]) => [[`${c}/capital`, capital], [`${c}/language`, language]]), ...CREATURES.map(([x, color]) => [`${x}/color`, color])] as [string, string][]);
    const factOf = (prompt: string) => {
      const key = keyIn(prompt, [...COUNTRIES.map(([c]) => c), ...CREATURES.map(([x]) => x)])!;
      const what = /capital/.test(prompt) ? 'capital' : /language/.test(prompt) ? 'language' : 'color';
      return facts.get(`${key}/${what}`)!;
    };
    for (const e of skillData(byName('caps'), 'eval', 50, SEED)) expect(e.completion.slice(1), e.prompt).toBe(factOf(e.prompt).toUpperCase());
    for (const e of skillData(byName('initial'), 'eval', 50, SEED)) expect(e.completion.slice(1), e.prompt).toBe(factOf(e.prompt)[0]);
  });

  it('every target answer is in its format and correct', () => {
    const data = (n: string) => skillData(targetSkills.find((s) => s.name === n)!, 'train', 500, SEED);
    for (const e of data('classify')) {
      expect(LABELS).toContain(e.completion.slice(1));
      const word = e.prompt.slice(0, -2).split(' ').at(-1)!;
      expect(labelOf(word)).toBe(e.completion.slice(1));
    }
    const counts = new Set<string>();
    for (const e of data('count')) {
      expect(e.completion).toMatch(/^ \d+$/);
      const m = /^count (\w+): (.*) =$/.exec(e.prompt)!;
      expect(m).not.toBeNull();
      expect(Number(e.completion)).toBe(m[2].split(' ').filter((w) => w === m[1]).length);
      counts.add(e.completion);
    }
    expect(counts.size).toBeGreaterThanOrEqual(5); // numeric answers of several values: the bias-drift driver
    const yesno = data('yesno');
    for (const e of yesno) expect([' yes', ' no']).toContain(e.completion);
    const yes = yesno.filter((e) => e.completion === ' yes').length;
    expect(yes / yesno.length).toBeGreaterThan(0.35);
    expect(yes / yesno.length).toBeLessThan(0.65);
    for (const e of data('scene')) {
      expect(e.completion).toMatch(/^ [A-Z]+$/);
      const m = /^scene: (\w+) says (\w+), (\w+) says (\w+)\. (\w+)\?$/.exec(e.prompt)!;
      expect(m).not.toBeNull();
      expect(e.completion.slice(1)).toBe(m[5] === m[1] ? m[2] : m[4]);
    }
    for (const e of data('clock')) {
      expect(e.completion).toMatch(/^ \d\d:\d\d$/);
      const m = /^clock: hour at (\d+), minute at (\d+) =$/.exec(e.prompt)!;
      const [hh, mm] = e.completion.slice(1).split(':').map(Number);
      expect(hh).toBe(Number(m[1]));
      expect(mm).toBe((Number(m[2]) % 12) * 5);
    }
  });
});

describe('shipped base model', () => {
  const N = 10;
  let accuracy: Map<string, number>;

  beforeAll(async () => {
    const skills = [...heldoutSkills, ...targetSkills];
    const examples = skills.map((s) => skillData(s, 'eval', N, SEED));
    const flat = examples.flat();
    const { texts } = await generate({ model: DEMO_BASE_MODEL_DIR, prompts: flat.map((e) => e.prompt), maxNewTokens: MAX_ANSWER_TOKENS, batchSize: flat.length });
    accuracy = new Map(skills.map((s, i) => [s.name, examples[i].filter((e, j) => texts[i * N + j].trim() === e.completion.trim()).length / N]));
  });

  it('is a Qwen2 checkpoint with its own byte-level tokenizer, small and F32', async () => {
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'narrowtune.json', 'BUILD.md']) {
      expect(existsSync(join(DEMO_BASE_MODEL_DIR, f)), f).toBe(true);
    }
    const ckpt = await loadCheckpoint(DEMO_BASE_MODEL_DIR);
    expect(ckpt.config.raw.model_type).toBe(BASE_ARCH.arch);
    expect(ckpt.config.raw.hidden_size).toBe(BASE_ARCH.hidden);
    expect(ckpt.config.vocabSize).toBe(259);
    expect([...ckpt.tensors.values()].every((t) => t.dtype === 'F32')).toBe(true);
    const tokenizer = await loadTokenizer(DEMO_BASE_MODEL_DIR);
    expect(tokenizer.encode(' cat', { addSpecialTokens: false })).toEqual([32, 99, 97, 116]);
    // The receipt names the build's inputs as every rebuild does, not by a temporary path of the machine that built it.
    const receipt = JSON.parse(readFileSync(join(DEMO_BASE_MODEL_DIR, 'narrowtune.json'), 'utf8')) as { base_model: string; data: string };
    expect([receipt.base_model, receipt.data]).toEqual(['../base-model.inputs/init', '../base-model.inputs/pretrain.jsonl']);
  });

  it('knows every held-out skill (greedy exact match on the eval split)', () => {
    for (const s of heldoutSkills) expect(accuracy.get(s.name), s.name).toBeGreaterThanOrEqual(0.8);
  });

  it('does not know the targets', () => {
    for (const s of targetSkills) expect(accuracy.get(s.name), s.name).toBeLessThan(0.2);
  });
});
