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
  | 'aborted' // a write lost a race it cannot retry (e.g. a worker's job lease moved on)
  | 'internal';

export interface FieldViolation {
  field: string;
  description: string;
}

/** One limit a request ran into (google.rpc.QuotaFailure.Violation): which subject, which limit. */
export interface QuotaViolation {
  subject: string;
  description: string;
}

/** Rich-error details beyond field violations; the gRPC layer sends them as QuotaFailure and RetryInfo. */
export interface ErrorDetails {
  quotaViolations?: QuotaViolation[];
  /** How long the caller should wait before retrying. */
  retryDelayMs?: number;
}

export class NarrowtuneError extends Error {
  readonly kind: ErrorKind;
  readonly violations: FieldViolation[];
  readonly details: ErrorDetails;

  constructor(
    kind: ErrorKind,
    message: string,
    violations: FieldViolation[] = [],
    options?: { cause?: unknown; details?: ErrorDetails },
  ) {
    super(message, options);
    this.name = 'NarrowtuneError';
    this.kind = kind;
    this.violations = violations;
    this.details = options?.details ?? {};
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

/** How much of one client-supplied value an error message quotes. */
export const MAX_QUOTED_CHARS = 200;

/**
 * `s` cut to at most `max` UTF-16 units, ending in an ellipsis when cut, for quoting client input in messages.
 * Never splits a surrogate pair, and replaces lone surrogates: grpc-js's encodeURI of grpc-message throws on them.
 */
export function clip(s: string, max = MAX_QUOTED_CHARS): string {
  if (s.length <= max) return wellFormed(s);
  let end = Math.max(0, max - 1);
  if (end > 0 && /[\uD800-\uDBFF]/.test(s[end - 1]!)) end--;
  return `${wellFormed(s.slice(0, end))}…`;
}

function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * A client-supplied value in double quotes for a message, cut by clip(). Control characters are escaped so one
 * value stays on one line; backslashes are kept as sent, so a pattern reads as the user wrote it.
 */
export function quote(s: string, max = MAX_QUOTED_CHARS): string {
  return `"${clip(s, max).replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1))}"`;
}

export function invalidArgument(field: string, description: string): NarrowtuneError {
  return new NarrowtuneError('invalid_argument', `${field}: ${description}`, [{ field, description }]);
}

/** A limit is reached: RESOURCE_EXHAUSTED naming the limit (QuotaFailure) and, when known, when to retry (RetryInfo). */
export function quotaExceeded(subject: string, description: string, retryDelayMs?: number): NarrowtuneError {
  const details: ErrorDetails = { quotaViolations: [{ subject, description }] };
  if (retryDelayMs !== undefined) details.retryDelayMs = retryDelayMs;
  const retry = retryDelayMs === undefined ? '' : `; retry in ${Math.max(1, Math.ceil(retryDelayMs / 1000))} s`;
  return new NarrowtuneError('resource_exhausted', `${description}${retry}`, [], { details });
}

/** Plain-object form of an error, for crossing a worker or process boundary. */
export function serializeError(e: unknown): {
  name: string;
  message: string;
  kind?: ErrorKind;
  violations?: FieldViolation[];
  details?: ErrorDetails;
  stack?: string;
} {
  if (e instanceof NarrowtuneError) {
    return { name: e.name, message: e.message, kind: e.kind, violations: e.violations, details: e.details, stack: e.stack };
  }
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: String(e) };
}

export function deserializeError(raw: unknown): Error {
  const o = (raw ?? {}) as ReturnType<typeof serializeError>;
  const e = o.kind ? new NarrowtuneError(o.kind, o.message, o.violations ?? [], { details: o.details }) : new Error(o.message);
  e.name = o.name ?? e.name;
  if (o.stack) e.stack = o.stack;
  return e;
}
