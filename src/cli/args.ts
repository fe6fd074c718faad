// Flag parsing helpers: every bad value is an error that names the flag and what it expected.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { invalidArgument } from '../util/errors.js';

export type Flags = Record<string, string | boolean | string[] | undefined>;

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>): Flags {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Flags;
  } catch (e) {
    throw invalidArgument('arguments', (e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

export function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
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
