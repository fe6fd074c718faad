// Translates domain errors into gRPC statuses, once, at the service boundary: code, readable message, and a
// google.rpc.Status with BadRequest field violations, QuotaFailure and RetryInfo in the `grpc-status-details-bin`
// trailer.

import * as grpc from '@grpc/grpc-js';
import { Any } from '../gen/google/protobuf/any.js';
import { BadRequest, QuotaFailure, RetryInfo } from '../gen/google/rpc/error_details.js';
import { Status } from '../gen/google/rpc/status.js';
import { NarrowtuneError, clip as truncate, type ErrorDetails, type ErrorKind, type FieldViolation, type QuotaViolation } from '../util/errors.js';

/** The trailer that gRPC's rich error model (google.rpc.Status) travels in; `-bin` makes it binary metadata. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const BAD_REQUEST_TYPE_URL = 'type.googleapis.com/google.rpc.BadRequest';
export const QUOTA_FAILURE_TYPE_URL = 'type.googleapis.com/google.rpc.QuotaFailure';
export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';
/** Prefixed to messages of errors we did not anticipate, so clients can tell a bug from a bad request. */
export const INTERNAL_MESSAGE = 'internal error';
const VIOLATION_SEPARATOR = '; ';

/**
 * Bounds on one error's size. Its message travels twice in the trailers (percent-encoded as grpc-message, and
 * inside the base64 Status), and gRPC's C-core, Go and Java clients refuse metadata above 8 KiB by default:
 * a request with thousands of bad fields, or one huge value echoed in a description, must still get a readable
 * reply. Worst case (every character outside ASCII): 1 KiB of grpc-message + base64 of about 1 + 3.5 KiB of
 * Status, about 7 KiB. The first violations are kept; the message says how many were left out.
 */
export const MAX_FIELD_VIOLATIONS = 32;
export const MAX_QUOTA_VIOLATIONS = 8;
export const MAX_FIELD_CHARS = 128;
export const MAX_DESCRIPTION_CHARS = 512;
/** Of grpc-message as sent: encodeURI's length, which grows to 9 characters for some code points. */
export const MAX_MESSAGE_WIRE_CHARS = 1024;
/** UTF-8 bytes of all kept violations (field and quota) together. */
const MAX_VIOLATION_BYTES_TOTAL = 3072;
/** Per violation in the encoded Status: tags, lengths and the message framing around it. */
const VIOLATION_OVERHEAD_BYTES = 8;

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
  aborted: grpc.status.ABORTED,
  internal: grpc.status.INTERNAL,
};

/** An error as stored with a job (see serializeError): `kind` may be absent or, from old rows, unfamiliar. */
export interface JobError {
  kind?: string;
  message: string;
  violations?: readonly FieldViolation[];
  details?: ErrorDetails;
}

/** The google.rpc.Status for a job's error, as TuneJob.error and JobFinished.error carry it. */
export function statusFromJobError(err: JobError): Status {
  const code = codeForKind(err.kind);
  const { kept: violations, quota, omitted } = boundDetails(err.violations ?? [], err.details?.quotaViolations ?? []);
  const suffix = omitted > 0 ? ` (${omitted} more field violation${omitted === 1 ? '' : 's'} not listed)` : '';
  // Without a known kind nobody classified the failure; say so rather than pass it off as the caller's fault.
  const message = code === undefined ? `${INTERNAL_MESSAGE}: ${err.message}` : readableMessage(err.message, violations);
  const details: Any[] = [];
  if (violations.length > 0) details.push(badRequestAny(violations));
  if (quota.length > 0) details.push(quotaFailureAny(quota));
  const retryDelayMs = err.details?.retryDelayMs;
  if (retryDelayMs !== undefined && Number.isFinite(retryDelayMs) && retryDelayMs >= 0) details.push(retryInfoAny(retryDelayMs));
  return { code: code ?? grpc.status.INTERNAL, message: truncateForWire(message, MAX_MESSAGE_WIRE_CHARS - encodeURI(suffix).length) + suffix, details };
}

/** The longest prefix whose grpc-message form (encodeURI) fits `maxWire`, with an ellipsis when cut. */
function truncateForWire(s: string, maxWire: number): string {
  s = truncate(s, maxWire);
  if (encodeURI(s).length <= maxWire) return s;
  const ELLIPSIS_WIRE = encodeURI('…').length;
  let wire = 0;
  let end = 0;
  for (const ch of s) {
    const w = encodeURI(ch).length;
    if (wire + w > maxWire - ELLIPSIS_WIRE) break;
    wire += w;
    end += ch.length;
  }
  return `${s.slice(0, end)}…`;
}

/** The first field and quota violations that fit the bounds above, each cut to length, and how many were left out. */
function boundDetails(
  fields: readonly FieldViolation[],
  quotas: readonly QuotaViolation[],
): { kept: FieldViolation[]; quota: QuotaViolation[]; omitted: number } {
  let bytes = 0;
  const fits = (a: string, b: string): boolean => {
    bytes += Buffer.byteLength(a) + Buffer.byteLength(b) + VIOLATION_OVERHEAD_BYTES;
    return bytes <= MAX_VIOLATION_BYTES_TOTAL;
  };
  // Quota violations first: there are few, and they say which limit was hit.
  const quota: QuotaViolation[] = [];
  for (const q of quotas.slice(0, MAX_QUOTA_VIOLATIONS)) {
    const subject = truncate(q.subject, MAX_FIELD_CHARS);
    const description = truncate(q.description, MAX_DESCRIPTION_CHARS);
    if (!fits(subject, description)) break;
    quota.push({ subject, description });
  }
  const kept: FieldViolation[] = [];
  for (const v of fields) {
    if (kept.length === MAX_FIELD_VIOLATIONS) break;
    const field = truncate(v.field, MAX_FIELD_CHARS);
    const description = truncate(v.description, MAX_DESCRIPTION_CHARS);
    if (!fits(field, description)) break;
    kept.push({ field, description });
  }
  return { kept, quota, omitted: fields.length - kept.length };
}

/** The first violations that fit the bounds above, each cut to length, and how many were left out. */
export function boundViolations(all: readonly FieldViolation[]): { kept: FieldViolation[]; omitted: number } {
  const { kept, omitted } = boundDetails(all, []);
  return { kept, omitted };
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

export interface DecodedStatusDetails {
  status: Status;
  badRequest: BadRequest | null;
  quotaFailure: QuotaFailure | null;
  /** RetryInfo's delay in milliseconds. */
  retryDelayMs: number | null;
}

/** Decodes the `grpc-status-details-bin` trailer of a failed call; null when absent or unreadable. */
export function decodeStatusDetails(metadata: grpc.Metadata): DecodedStatusDetails | null {
  const raw = metadata.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Uint8Array)) return null;
  try {
    const status = Status.decode(raw);
    const find = (typeUrl: string): Uint8Array | undefined => status.details.find((d) => d.typeUrl === typeUrl)?.value;
    const badRequest = find(BAD_REQUEST_TYPE_URL);
    const quotaFailure = find(QUOTA_FAILURE_TYPE_URL);
    const retryInfo = find(RETRY_INFO_TYPE_URL);
    const delay = retryInfo ? RetryInfo.decode(retryInfo).retryDelay : undefined;
    return {
      status,
      badRequest: badRequest ? BadRequest.decode(badRequest) : null,
      quotaFailure: quotaFailure ? QuotaFailure.decode(quotaFailure) : null,
      retryDelayMs: delay ? delay.seconds * 1000 + Math.round(delay.nanos / 1e6) : null,
    };
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

function quotaFailureAny(violations: readonly QuotaViolation[]): Any {
  return { typeUrl: QUOTA_FAILURE_TYPE_URL, value: Buffer.from(QuotaFailure.encode({ violations: [...violations] }).finish()) };
}

function retryInfoAny(ms: number): Any {
  const whole = Math.ceil(ms);
  const retryDelay = { seconds: Math.floor(whole / 1000), nanos: (whole % 1000) * 1e6 };
  return { typeUrl: RETRY_INFO_TYPE_URL, value: Buffer.from(RetryInfo.encode({ retryDelay }).finish()) };
}

// Clients that ignore the details trailer still see every violation in the message; messages already naming
// them all (as invalidArgument's do) are kept as they are.
function readableMessage(message: string, violations: readonly FieldViolation[]): string {
  if (violations.every((v) => message.includes(v.description))) return message;
  const joined = violations.map((v) => `${v.field}: ${v.description}`).join(VIOLATION_SEPARATOR);
  return message === '' ? joined : `${message}: ${joined}`;
}
