// Translates domain errors into Connect errors, through the same google.rpc.Status that the gRPC port sends
// (grpc-errors.ts maps kinds to codes and bounds the details once): the code, the message, and each detail
// (BadRequest, QuotaFailure, RetryInfo). connect-node then writes them as Connect's JSON error body or, for
// gRPC-Web, the `grpc-status-details-bin` trailer.
import { createRegistry, type DescMessage, fromBinary } from '@bufbuild/protobuf';
import { type Code, ConnectError } from '@connectrpc/connect';
import { file_google_rpc_error_details } from '../gen/es/google/rpc/error_details_pb.js';
import { statusFromError } from './grpc-errors.js';

/** Details sent typed, so that a Connect JSON error carries them readable (`debug`) beside their bytes. */
const KNOWN_DETAILS = createRegistry(file_google_rpc_error_details);

type Detail = ConnectError['details'][number];

function detail(typeUrl: string, value: Uint8Array): Detail {
  // Any's type URL is "type.googleapis.com/<full name>"; Connect names details by the full name alone.
  const type = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  const desc: DescMessage | undefined = KNOWN_DETAILS.getMessage(type);
  if (desc === undefined) return { type, value };
  return { desc, value: fromBinary(desc, value) } as Detail;
}

export function toConnectError(e: unknown): ConnectError {
  const status = statusFromError(e);
  // google.rpc.Code numbers the codes for gRPC and Connect alike, so a gRPC status code is a Connect Code.
  const error = new ConnectError(status.message, status.code as Code, undefined, undefined, e);
  // Set after construction: the constructor takes typed details only, an unknown type travels as its bytes.
  error.details = status.details.map((d) => detail(d.typeUrl, d.value));
  return error;
}
