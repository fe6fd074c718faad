// Translates domain errors into gRPC statuses, once, at the service boundary: code, readable message, and a
// google.rpc.Status with BadRequest field violations in the `grpc-status-details-bin` trailer.

import * as grpc from '@grpc/grpc-js';
import { Any } from '../gen/google/protobuf/any.js';
import { BadRequest } from '../gen/google/rpc/error_details.js';
import { Status } from '../gen/google/rpc/status.js';
import { NarrowtuneError, type ErrorKind, type FieldViolation } from '../util/errors.js';

/** The trailer that gRPC's rich error model (google.rpc.Status) travels in; `-bin` makes it binary metadata. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const BAD_REQUEST_TYPE_URL = 'type.googleapis.com/google.rpc.BadRequest';
/** Prefixed to messages of errors we did not anticipate, so clients can tell a bug from a bad request. */
export const INTERNAL_MESSAGE = 'internal error';
const VIOLATION_SEPARATOR = '; ';

/**
 * Bounds on one error's size. Its message and details travel in HTTP/2 trailers, which peers refuse above
 * 16 to 64 KiB; a request with thousands of bad fields (or one huge value echoed in a description) must still
 * get a readable reply. The first violations are kept; the message says how many were left out.
 */
export const MAX_FIELD_VIOLATIONS = 32;
export const MAX_FIELD_CHARS = 128;
export const MAX_DESCRIPTION_CHARS = 1024;
export const MAX_MESSAGE_CHARS = 4096;
/** Total characters of the kept violations: about 10 KiB of trailer once base64-encoded. */
const MAX_VIOLATION_CHARS_TOTAL = 8192;

// A Record over ErrorKind makes adding a kind without a code a type error.
const CODE_BY_KIND: Readonly<Record<ErrorKind, grpc.status>> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  not_found: grpc.status.NOT_FOUND,
  failed_precondition: grpc.status.FAILED_PRECONDITION,
  unavailable: grpc.status.UNAVAILABLE,
  already_exists: grpc.status.ALREADY_EXISTS,
  resource_exhausted: grpc.status.RESOURCE_EXHAUSTED,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  cancelled: grpc.status.CANCELLED,
  internal: grpc.status.INTERNAL,
};

/** An error as stored with a job (see serializeError): `kind` may be absent or, from old rows, unfamiliar. */
export interface JobError {
  kind?: string;
  message: string;
  violations?: readonly FieldViolation[];
}

/** The google.rpc.Status for a job's error, as TuneJob.error and JobFinished.error carry it. */
export function statusFromJobError(err: JobError): Status {
  const code = codeForKind(err.kind);
  const { kept: violations, omitted } = boundViolations(err.violations ?? []);
  // Without a known kind nobody classified the failure; say so rather than pass it off as the caller's fault.
  let message = code === undefined ? `${INTERNAL_MESSAGE}: ${err.message}` : readableMessage(err.message, violations);
  message = truncate(message, MAX_MESSAGE_CHARS);
  if (omitted > 0) message += ` (${omitted} more field violation${omitted === 1 ? '' : 's'} not listed)`;
  const details = violations.length === 0 ? [] : [badRequestAny(violations)];
  return { code: code ?? grpc.status.INTERNAL, message, details };
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** The first violations that fit the bounds above, each cut to length, and how many were left out. */
export function boundViolations(all: readonly FieldViolation[]): { kept: FieldViolation[]; omitted: number } {
  const kept: FieldViolation[] = [];
  let chars = 0;
  for (const v of all) {
    const field = truncate(v.field, MAX_FIELD_CHARS);
    const description = truncate(v.description, MAX_DESCRIPTION_CHARS);
    chars += field.length + description.length;
    if (kept.length === MAX_FIELD_VIOLATIONS || chars > MAX_VIOLATION_CHARS_TOTAL) break;
    kept.push({ field, description });
  }
  return { kept, omitted: all.length - kept.length };
}

/** The google.rpc.Status for any thrown value. Stacks never leave the process. */
export function statusFromError(e: unknown): Status {
  if (e instanceof NarrowtuneError) return statusFromJobError(e);
  return statusFromJobError({ message: e instanceof Error ? e.message : String(e) });
}

/**
 * A grpc-js ServiceError for `callback(err)` or, on a server stream, `call.emit('error', err)`, carrying the full
 * Status in its trailers. Not `call.destroy(err)`: grpc-js 1.14 then never sends a status and the client hangs.
 */
export function toGrpcError(e: unknown): grpc.ServiceError {
  const status = statusFromError(e);
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode(status).finish()));
  // grpc-js puts `details` on the wire as grpc-message; the Error's message mirrors it for server-side logs.
  return Object.assign(new Error(status.message), { code: status.code, details: status.message, metadata });
}

/** Decodes the `grpc-status-details-bin` trailer of a failed call; null when absent or unreadable. */
export function decodeStatusDetails(metadata: grpc.Metadata): { status: Status; badRequest: BadRequest | null } | null {
  const raw = metadata.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Uint8Array)) return null;
  try {
    const status = Status.decode(raw);
    const any = status.details.find((d) => d.typeUrl === BAD_REQUEST_TYPE_URL);
    return { status, badRequest: any ? BadRequest.decode(any.value) : null };
  } catch {
    // Error details are a courtesy; a corrupt trailer must not mask the status code the call already has.
    return null;
  }
}

function codeForKind(kind: string | undefined): grpc.status | undefined {
  return kind !== undefined && Object.hasOwn(CODE_BY_KIND, kind) ? CODE_BY_KIND[kind as ErrorKind] : undefined;
}

function badRequestAny(violations: readonly FieldViolation[]): Any {
  const fieldViolations = violations.map((v) => ({ field: v.field, description: v.description, reason: '' }));
  return { typeUrl: BAD_REQUEST_TYPE_URL, value: Buffer.from(BadRequest.encode({ fieldViolations }).finish()) };
}

// Clients that ignore the details trailer still see every violation in the message; messages already naming
// them all (as invalidArgument's do) are kept as they are.
function readableMessage(message: string, violations: readonly FieldViolation[]): string {
  if (violations.every((v) => message.includes(v.description))) return message;
  const joined = violations.map((v) => `${v.field}: ${v.description}`).join(VIOLATION_SEPARATOR);
  return message === '' ? joined : `${message}: ${joined}`;
}
