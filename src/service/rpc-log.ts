// The one log line per RPC, shared by every transport (grpc-handlers.ts; the Connect adapter): which method,
// the status code, how long it took, and who called. Never a request body, never a credential.
import type { Logger } from '../util/log.js';
import type { Caller } from './caller.js';

/** Canonical status code names, indexed by code (the same numbers in gRPC and Connect). */
const CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** Codes that mean the server failed, not the request: logged at error level with their message. */
const SERVER_FAULTS = new Set([2, 13, 15]);
/** Refused credentials or access: warn, so that probing stands out at the default level. */
const ACCESS_REFUSED = new Set([7, 16]);

export interface RpcOutcome {
  /** The RPC's method name as in the proto, e.g. "StartTune". */
  method: string;
  /** The canonical status code (0 = OK). */
  code: number;
  /** When the call arrived (performance.now()). */
  startedAt: number;
  /** null when authentication failed or had not finished. */
  caller: Caller | null;
  /** "grpc", "connect", "grpc-web". */
  transport: string;
  /** The client's address as the transport reports it. */
  peer?: string;
  /** The error's message, logged only for server faults (a client's error may quote its input). */
  message?: string;
  /** Messages a server stream sent. */
  sent?: number;
}

export function logRpc(log: Logger, o: RpcOutcome): void {
  const line = {
    rpc: o.method,
    code: CODE_NAMES[o.code] ?? String(o.code),
    ms: Math.round((performance.now() - o.startedAt) * 10) / 10,
    key: o.caller?.keyId ?? null,
    tenant: o.caller?.tenant ?? null,
    transport: o.transport,
    ...(o.peer !== undefined && { peer: o.peer }),
    ...(o.sent !== undefined && { sent: o.sent }),
  };
  if (SERVER_FAULTS.has(o.code)) log.error({ ...line, err: o.message }, 'rpc failed');
  else if (ACCESS_REFUSED.has(o.code)) log.warn(line, 'rpc refused');
  else log.info(line, 'rpc');
}
