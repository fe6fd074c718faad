// Collects the field violations of one request so that a single INVALID_ARGUMENT lists them all.
import { type FieldViolation, NarrowtuneError } from '../util/errors.js';
import { MAX_FIELD_VIOLATIONS } from './grpc-errors.js';

export class Violations {
  readonly list: FieldViolation[] = [];
  /** Violations past the bound, counted only: a request with a million bad entries costs no memory for them. */
  private omitted = 0;

  add(field: string, description: string): void {
    if (this.list.length < MAX_FIELD_VIOLATIONS) this.list.push({ field, description });
    else this.omitted++;
  }

  /** Adds an error's violations (fields renamed by `rename`); other errors (NOT_FOUND, bugs) propagate. */
  addError(e: unknown, rename: (field: string) => string = (f) => f): void {
    if (!(e instanceof NarrowtuneError) || e.kind !== 'invalid_argument') throw e;
    if (e.violations.length === 0) this.add(rename(''), e.message);
    for (const x of e.violations) this.add(rename(x.field), x.description);
  }

  /** Runs `fn`, turning its INVALID_ARGUMENT into violations instead of throwing. */
  async collect<T>(fn: () => T | Promise<T>, rename?: (field: string) => string): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      this.addError(e, rename);
      return undefined;
    }
  }

  collectSync<T>(fn: () => T, rename?: (field: string) => string): T | undefined {
    try {
      return fn();
    } catch (e) {
      this.addError(e, rename);
      return undefined;
    }
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  throwIfAny(): void {
    if (this.empty) return;
    const lines = this.list.map((v) => `${v.field}: ${v.description}`);
    if (this.omitted > 0) lines.push(`(${this.omitted} more field violations not listed)`);
    throw new NarrowtuneError('invalid_argument', lines.join('\n'), this.list);
  }
}
