// Domain errors. Each names what was wrong and where; the CLI prints the message, the gRPC layer maps
// `kind` to a status code and `violations` to BadRequest field violations.

export type ErrorKind =
  | 'invalid_argument' // the caller sent something unusable (bad flag, bad file, bad pattern)
  | 'not_found'
  | 'failed_precondition'
  | 'unavailable' // e.g. an execution provider that is not installed
  | 'already_exists'
  | 'resource_exhausted' // e.g. the server's concurrent-job limit is reached
  | 'unauthenticated' // no, unknown, expired or revoked credentials
  | 'permission_denied' // the caller's role or tenant does not allow it (also for another tenant's job: AIP-211)
  | 'cancelled' // the client went away or its deadline passed
  | 'internal';

export interface FieldViolation {
  field: string;
  description: string;
}

export class NarrowtuneError extends Error {
  readonly kind: ErrorKind;
  readonly violations: FieldViolation[];

  constructor(kind: ErrorKind, message: string, violations: FieldViolation[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NarrowtuneError';
    this.kind = kind;
    this.violations = violations;
  }
}

/** A model directory or one of its files is unusable; the message names the file. */
export class ModelFileError extends NarrowtuneError {
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super('invalid_argument', `${file}: ${problem}`, [{ field: 'model', description: `${file}: ${problem}` }], options);
    this.name = 'ModelFileError';
  }
}

/** A dataset line is unusable; the message names the file and the 1-based line. */
export class DataFileError extends NarrowtuneError {
  constructor(file: string, line: number | null, problem: string, field = 'data') {
    const where = line === null ? file : `${file}:${line}`;
    super('invalid_argument', `${where}: ${problem}`, [{ field, description: `${where}: ${problem}` }]);
    this.name = 'DataFileError';
  }
}

export function invalidArgument(field: string, description: string): NarrowtuneError {
  return new NarrowtuneError('invalid_argument', `${field}: ${description}`, [{ field, description }]);
}

/** Plain-object form of an error, for crossing a worker or process boundary. */
export function serializeError(e: unknown): { name: string; message: string; kind?: ErrorKind; violations?: FieldViolation[]; stack?: string } {
  if (e instanceof NarrowtuneError) return { name: e.name, message: e.message, kind: e.kind, violations: e.violations, stack: e.stack };
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: String(e) };
}

export function deserializeError(raw: unknown): Error {
  const o = (raw ?? {}) as ReturnType<typeof serializeError>;
  const e = o.kind ? new NarrowtuneError(o.kind, o.message, o.violations ?? []) : new Error(o.message);
  e.name = o.name ?? e.name;
  if (o.stack) e.stack = o.stack;
  return e;
}
