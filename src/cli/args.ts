// Flag parsing helpers: every bad value is an error that names the flag and what it expected.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { invalidArgument } from '../util/errors.js';
import { closest } from './suggest.js';

export type Flags = Record<string, string | boolean | string[] | undefined>;
type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/** `--lr -1` means the value -1: Node's parser would call it ambiguous (is -1 a flag?). */
const NEGATIVE_NUMBER = /^-\.?\d/;

/**
 * Parses `--name value` and `--name=value` flags. Unknown flags, values that are missing or look like flags
 * fail here with the flag's name (and the flag that was probably meant) rather than in Node's parser wording.
 */
export function parseFlags(argv: string[], options: FlagOptions): Flags {
  const args = [...argv];
  for (let i = 0; i < args.length && args[i] !== '--'; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const option = Object.hasOwn(options, name) ? options[name] : undefined;
    if (option === undefined) {
      const guess = closest(name, Object.keys(options));
      throw invalidArgument(`--${name}`, `unknown option${guess ? `; did you mean --${guess}?` : ''} (--help lists the options)`);
    }
    if (option.type !== 'string' || eq >= 0) continue;
    const value = args[i + 1];
    if (value !== undefined && NEGATIVE_NUMBER.test(value)) args.splice(i, 2, `--${name}=${value}`);
    else if (value === undefined || value === '--') throw invalidArgument(`--${name}`, 'takes a value');
    else if (value.startsWith('-')) throw invalidArgument(`--${name}`, `takes a value; to pass one that starts with "-", write --${name}=${value}`);
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Flags;
  } catch (e) {
    throw invalidArgument('arguments', (e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

export function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** A file or directory flag: undefined when absent; an empty value is an error. */
export function pathFlag(flags: Flags, name: string): string | undefined {
  const v = str(flags, name);
  if (v === '') throw invalidArgument(`--${name}`, 'expected a path');
  return v;
}

export function required(flags: Flags, name: string): string {
  const v = str(flags, name);
  if (v === undefined || v === '') throw invalidArgument(`--${name}`, 'is required');
  return v;
}

export function num(flags: Flags, name: string): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw invalidArgument(`--${name}`, `expected a number, got "${v}"`);
  return x;
}

export function int(flags: Flags, name: string): number | undefined {
  const x = num(flags, name);
  if (x !== undefined && !Number.isInteger(x)) throw invalidArgument(`--${name}`, `expected an integer, got "${str(flags, name)}"`);
  return x;
}

export function list(flags: Flags, name: string): string[] {
  const v = flags[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export function oneOf<T extends string>(flags: Flags, name: string, allowed: readonly T[]): T | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T)) throw invalidArgument(`--${name}`, `expected one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}
