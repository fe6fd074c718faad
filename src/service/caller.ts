// Who is calling: what every transport (gRPC, Connect) resolves from a request's headers before the
// service runs, and what the service checks access against. Transport-neutral: no gRPC types here.
import { NarrowtuneError } from '../util/errors.js';

export type Role = 'admin' | 'member' | 'reader';

export interface Caller {
  /** The API key's id; null when the server runs without authentication. */
  keyId: string | null;
  /** The key's tenant; null when the server runs without authentication (every job is visible). */
  tenant: string | null;
  role: Role;
  /** Real paths requests of this caller may read models and data from (the server's, or a key's narrower ones). */
  modelRoots: string[];
  dataRoots: string[];
}

/** One call as the service sees it, whatever the transport. */
export interface CallContext {
  caller: Caller;
  /** Aborted when the client cancels, its deadline passes, or the server shuts down. */
  signal: AbortSignal;
}

/**
 * Resolves a request's `authorization` header value (undefined when absent) to its caller, or throws
 * UNAUTHENTICATED. Every transport calls the same one.
 */
export type Authenticator = (authorization: string | undefined) => Promise<Caller>;

/** The authenticator of a server without authentication: every caller is an admin with the server's roots. */
export function openAuthenticator(roots: { modelRoots: string[]; dataRoots: string[] }): Authenticator {
  const caller: Caller = { keyId: null, tenant: null, role: 'admin', ...roots };
  return async () => caller;
}

export function unauthenticated(message: string): NarrowtuneError {
  return new NarrowtuneError('unauthenticated', message);
}
