// What a failed RPC tells a person at a terminal: the server's reasons, or that no server answered and how to
// get one.
import * as grpc from '@grpc/grpc-js';
import { decodeStatusDetails } from '../service/grpc-errors.js';
import { NarrowtuneError } from '../util/errors.js';

/**
 * The error when no server answered at `target` (nothing listens there, the name does not resolve, the connection
 * dropped), else null. A server can itself answer UNAVAILABLE (e.g. a device it lacks); its channel is then READY.
 */
export function serverUnreachable(e: grpc.ServiceError, client: grpc.Client, target: string, tls = false): NarrowtuneError | null {
  const connectionFailure = e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED;
  if (!connectionFailure || client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY) return null;
  const cause = (e.details || e.message)
    .replace(/^No connection established\. Last error: (Error: )?/, '')
    .replace(/\.? Resolution note:.*$/, '')
    .replace(/^[0-9A-F]+:error:[0-9A-F]+:SSL routines:[a-z0-9_]+:([^:]+):[\s\S]*$/, '$1'); // OpenSSL's record: its reason only
  const tlsHint = TLS_HINTS.find(([pattern]) => pattern.test(cause))?.[1];
  // A plaintext client that reached a TLS server sees the connection close, not a refusal.
  const maybeTls = !tls && !/ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(cause);
  const hint = tlsHint ?? `start one with \`narrowtune serve\` or pass --target HOST:PORT${maybeTls ? ' (with --tls-ca FILE, or --tls, if it serves TLS)' : ''}`;
  return new NarrowtuneError('unavailable', `could not reach a narrowtune server at ${target} (${cause}) — ${hint}`);
}

/** What a failed TLS handshake asks of the client, by the error it left. */
const TLS_HINTS: [RegExp, string][] = [
  [/alert (certificate required|bad certificate|unknown ca|certificate unknown)/, 'the server takes only clients with a certificate it trusts: pass --tls-cert FILE --tls-key FILE'],
  [/altnames/, "the server's certificate does not carry that name: pass --tls-server-name NAME with one it carries"],
  [/certificate|self.signed|unable to (get|verify)/i, "the server's certificate is not trusted here: pass --tls-ca FILE with the CA that signed it"],
];

/** An RPC error as the server meant it: code name, message and each field violation on its own line. */
export function serverError(e: grpc.ServiceError): NarrowtuneError {
  const details = e.metadata ? decodeStatusDetails(e.metadata) : null;
  const lines = [`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`];
  for (const v of details?.badRequest?.fieldViolations ?? []) lines.push(`  ${v.field}: ${v.description}`);
  return new NarrowtuneError(e.code === grpc.status.INVALID_ARGUMENT ? 'invalid_argument' : 'failed_precondition', lines.join('\n'));
}
