// Typed reads of config.json fields (text and LLaVA configs alike), each problem naming the file and the field.
import { ModelFileError } from '../util/errors.js';

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Typed reads of one JSON object; every problem is a ModelFileError naming the file and the field's path. */
export class JsonFields {
  constructor(
    readonly obj: Record<string, unknown>,
    private readonly file: string,
    private readonly prefix = '',
  ) {}

  fail(field: string, problem: string): ModelFileError {
    return new ModelFileError(this.file, `${this.prefix}${field} ${problem}`);
  }

  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }

  int(field: string, fallback: number, check: (v: number) => boolean = () => true, want = 'an integer'): number {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || !check(v)) throw this.fail(field, `must be ${want}, got ${JSON.stringify(v)}`);
    return v;
  }

  /** Without a fallback the field is required. */
  positiveInt(field: string, fallback?: number): number {
    if (fallback === undefined && !this.has(field)) throw this.fail(field, 'is missing (required)');
    return this.int(field, fallback ?? 0, (v) => v > 0, 'a positive integer');
  }

  /** Without a fallback the field is required. */
  positiveNumber(field: string, fallback?: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw this.fail(field, 'is missing (required)');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.fail(field, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  oneOf<T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      throw this.fail(field, `${JSON.stringify(v)} is not supported; supported: ${allowed.join(', ')}`);
    }
    return v as T;
  }

  string(field: string): string | null {
    const v = this.obj[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') throw this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  object(field: string): Record<string, unknown> | null {
    const v = this.obj[field];
    if (v === undefined || v === null) return null;
    if (!isPlainObject(v)) throw this.fail(field, 'must be an object');
    return v;
  }
}
