// Token classes for bias drift (probes, Evaluate): the paper's number tokens plus user regex classes, as a 0/1 [vocab, C] matrix.

import { NarrowtuneError, quote, type FieldViolation } from '../util/errors.js';
import { compileUserRegex, MAX_USER_REGEX_CHARS, type UserRegex } from '../util/user-regex.js';
import type { TextTokenizer } from '../data/tokenizer.js';

/** The built-in class of Zhu et al. (arXiv 2510.08564): the mass that drifts onto numbers after tuning on counting. */
export const NUMBER_CLASS = 'number';

export interface TokenClass {
  name: string;
  /** the user's regular expression; null for the built-in number class */
  pattern: string | null;
}

export interface UserTokenClass {
  name: string;
  pattern: string;
}

export interface CompiledTokenClasses {
  /** NUMBER_CLASS first, then the user classes in their order */
  names: string[];
  /** [vocabSize, names.length] row-major: matrix[id * C + c] = 1 when token id is in class c, else 0 */
  matrix: Float32Array;
  /** members per class, in the order of `names` */
  counts: number[];
}

const NAME_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;
const MAX_USER_CLASSES = 32;
const IN_CLASS = 1;

// The paper's number set, tested on the trimmed token text. No signs (`-5`), exponents or grouped decimals:
// the paper lists plain digits, comma-grouped numbers, decimals, simple ordinals and number words.
const DIGITS = /^[0-9]+$/;
// A first group of 1-3 digits, then one or more groups of exactly three: `1,000`, `12,345,678`.
const COMMA_GROUPED = /^[0-9]{1,3}(?:,[0-9]{3})+$/;
// `.5` counts: tokenizers often split `0.5` as `0` + `.5`, and `.5` alone still names a number.
const DECIMAL = /^[0-9]*\.[0-9]+$/;
// Suffix is checked against the number below; lower-case only (`1ST` is shouting, not an ordinal token).
const ORDINAL = /^([0-9]+)(st|nd|rd|th)$/;
// 11, 12 and 13 take "th" whatever their last digit says (11th, 112th).
const TEEN_ENDINGS = new Set(['11', '12', '13']);
const SUFFIX_BY_LAST_DIGIT: Readonly<Record<string, string>> = { '1': 'st', '2': 'nd', '3': 'rd' };
const DEFAULT_ORDINAL_SUFFIX = 'th';
const TEEN_ENDING_LENGTH = 2;
const NUMBER_WORDS = [
  'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten',
  'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen', 'twenty',
  'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety',
  'hundred', 'thousand', 'million', 'billion',
];
// Lower case and sentence case only: `SEVEN` is rare enough in text that the paper's set leaves it out.
const NUMBER_WORD_SET = new Set(NUMBER_WORDS.flatMap((w) => [w, w[0].toUpperCase() + w.slice(1)]));

function ordinalSuffix(digits: string): string {
  if (TEEN_ENDINGS.has(digits.slice(-TEEN_ENDING_LENGTH))) return DEFAULT_ORDINAL_SUFFIX;
  return SUFFIX_BY_LAST_DIGIT[digits[digits.length - 1]] ?? DEFAULT_ORDINAL_SUFFIX;
}

/** Whether a token's decoded text is a number in the paper's sense (surrounding white space ignored). */
export function isNumberToken(text: string): boolean {
  const t = text.trim();
  if (t.length === 0) return false;
  if (DIGITS.test(t) || COMMA_GROUPED.test(t) || DECIMAL.test(t) || NUMBER_WORD_SET.has(t)) return true;
  const ordinal = ORDINAL.exec(t);
  return ordinal !== null && ordinalSuffix(ordinal[1]) === ordinal[2];
}

interface VocabularyTexts {
  /** tokenText of every id below the tokenizer's vocabSize */
  texts: string[];
  /** ids of the number class */
  numberIds: number[];
}

// Decoding 150k ids costs a few hundred milliseconds; every evaluation of a job reuses the same tokenizer.
const vocabularyCache = new WeakMap<TextTokenizer, VocabularyTexts>();

function vocabularyTexts(tokenizer: TextTokenizer): VocabularyTexts {
  const cached = vocabularyCache.get(tokenizer);
  if (cached) return cached;
  const texts = new Array<string>(tokenizer.vocabSize);
  const numberIds: number[] = [];
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    texts[id] = tokenizer.tokenText(id);
    if (isNumberToken(texts[id])) numberIds.push(id);
  }
  const entry = { texts, numberIds };
  vocabularyCache.set(tokenizer, entry);
  return entry;
}

/**
 * Validates the user classes, collecting every problem; returns their compiled patterns in order. Patterns are
 * RE2 (user-regex.ts): linear-time on every token text, and RE2 matches code points, so `.` never splits an emoji.
 */
function validateUserClasses(user: readonly UserTokenClass[], violations: FieldViolation[]): (UserRegex | null)[] {
  if (user.length > MAX_USER_CLASSES) {
    violations.push({ field: 'token_classes', description: `at most ${MAX_USER_CLASSES} classes, got ${user.length}` });
  }
  const firstIndexOfName = new Map<string, number>();
  return user.map(({ name, pattern }, i) => {
    const nameField = `token_classes[${i}].name`;
    const patternField = `token_classes[${i}].pattern`;
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      violations.push({ field: nameField, description: `${quote(String(name))} must match ${NAME_PATTERN.source}` });
    } else if (name === NUMBER_CLASS) {
      violations.push({ field: nameField, description: `"${NUMBER_CLASS}" is the built-in class; choose another name` });
    } else if (firstIndexOfName.has(name)) {
      violations.push({ field: nameField, description: `"${name}" is already the name of token_classes[${firstIndexOfName.get(name)}]` });
    } else {
      firstIndexOfName.set(name, i);
    }
    try {
      return compileUserRegex(pattern, patternField, MAX_USER_REGEX_CHARS);
    } catch (e) {
      violations.push(...(e as NarrowtuneError).violations);
      return null;
    }
  });
}

/**
 * The indicator matrix of the number class and the user classes over a model's vocabulary. `vocabSize` is the
 * model's (its embedding may be padded past the tokenizer); ids the tokenizer lacks are in no class. User
 * patterns see the untrimmed token text, so they can tell ` yes` from `yes`. Throws one invalid_argument
 * NarrowtuneError listing every bad field.
 */
export function compileTokenClasses(
  tokenizer: TextTokenizer,
  vocabSize: number,
  user: readonly UserTokenClass[],
): CompiledTokenClasses {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
  const violations: FieldViolation[] = [];
  const regexes = validateUserClasses(user, violations);
  const { texts, numberIds } = vocabularyTexts(tokenizer);
  const covered = Math.min(vocabSize, texts.length);

  const memberLists: number[][] = [numberIds.filter((id) => id < covered)];
  regexes.forEach((re, i) => {
    if (re === null) return;
    const ids: number[] = [];
    for (let id = 0; id < covered; id++) if (re.test(texts[id])) ids.push(id);
    if (ids.length === 0) {
      violations.push({ field: `token_classes[${i}].pattern`, description: `${quote(user[i].pattern)} matches no token of this vocabulary` });
    }
    memberLists.push(ids);
  });
  if (violations.length > 0) {
    throw new NarrowtuneError('invalid_argument', violations.map((v) => `${v.field}: ${v.description}`).join('\n'), violations);
  }

  const names = [NUMBER_CLASS, ...user.map((c) => c.name)];
  const classCount = names.length;
  const matrix = new Float32Array(vocabSize * classCount);
  memberLists.forEach((ids, c) => {
    for (const id of ids) matrix[id * classCount + c] = IN_CLASS;
  });
  return { names, matrix, counts: memberLists.map((ids) => ids.length) };
}
