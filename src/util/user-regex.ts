// Regular expressions from users (policy include/exclude, token classes, answer_regex), compiled by re2js: RE2
// matches in time linear in the input whatever the pattern, where JavaScript's backtracking engine can take hours
// on `^(.|.)*X$`. RE2 syntax has no backreferences and no lookaround; its \s, \d, \w and \b are ASCII.
import { RE2JS } from 're2js';
import { clip, invalidArgument, quote } from './errors.js';

export const MAX_USER_REGEX_CHARS = 512;
/**
 * Instructions of a compiled pattern. Matching costs up to this many steps per input character, so a size cap
 * keeps "linear" cheap: real patterns compile to tens (`^model\.layers\.\d+\.mlp\.(gate|up)_proj\.(weight|bias)$`
 * is 52), `.{1000}` to 1,002.
 */
export const MAX_USER_REGEX_PROGRAM = 1200;
const RE2_ERROR_PREFIX = /^error parsing regexp: /;
/** JavaScript-only syntax that RE2 refuses, with what to write instead. */
const HINTS: readonly [RegExp, string][] = [
  [/\\u/, 'write \\x{00e9} for \\u00e9'],
  [/\(\?<?[=!]/, 'lookahead and lookbehind are not supported'],
  [/\\[1-9]/, 'backreferences are not supported'],
  [/\\p\{\w{2,}/, 'use short Unicode class names such as \\p{L}, \\p{N}, \\p{Greek}'],
];

/** A compiled user pattern. Searches are unanchored, as RegExp.prototype.test's. */
export interface UserRegex {
  readonly source: string;
  test(text: string): boolean;
  /** The first match as [whole match, group 1, …] (null for a group that took no part), or null. */
  exec(text: string): (string | null)[] | null;
}

/**
 * Compiles `source` as RE2 or throws INVALID_ARGUMENT on `field` naming what is wrong, e.g.
 * `"(a" is not a valid RE2 regular expression: missing closing ): `(a``.
 */
export function compileUserRegex(source: string, field: string, maxChars = MAX_USER_REGEX_CHARS): UserRegex {
  if (typeof source !== 'string' || source.length === 0 || source.length > maxChars) {
    throw invalidArgument(field, `pattern must be 1 to ${maxChars} characters`);
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (e) {
    const reason = clip((e instanceof Error ? e.message : String(e)).replace(RE2_ERROR_PREFIX, ''));
    const hint = HINTS.find(([syntax]) => syntax.test(source));
    throw invalidArgument(field, `${quote(source)} is not a valid RE2 regular expression: ${reason}${hint ? ` (${hint[1]})` : ''}`);
  }
  const size = re.re2().prog.numInst();
  if (size > MAX_USER_REGEX_PROGRAM) {
    throw invalidArgument(field, `${quote(source)} is too large: it compiles to ${size} instructions, at most ${MAX_USER_REGEX_PROGRAM}`);
  }
  return {
    source,
    test: (text) => re.test(text),
    exec: (text) => {
      const m = re.matcher(text);
      if (!m.find()) return null;
      return Array.from({ length: m.groupCount() + 1 }, (_, g) => m.group(g));
    },
  };
}
