// Whether a server may listen where it was asked to: plaintext and unauthenticated calls are safe only on
// loopback. Beyond it a server needs both an encrypted channel (TLS) and authenticated callers (API keys or
// client certificates); --allow-insecure waives that for meshes whose sidecar terminates TLS.
import { BlockList, isIP } from 'node:net';

export const AUTH_MODES = ['none', 'api-key'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

export interface Exposure {
  host: string;
  tls: boolean;
  /** TLS with a client CA: every caller holds a certificate the server trusts. */
  mutualTls: boolean;
  auth: AuthMode;
  allowInsecure: boolean;
}

export interface ExposureVerdict {
  /** Why the server must not start, or null. */
  refuse: string | null;
  /** What an allowed but insecure configuration exposes (to log at start), or null. */
  warn: string | null;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (any spelling, IPv4-mapped, bracketed) and localhost; any other name may resolve beyond the host. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === 'localhost.') return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
}

/** The authentication a server uses when none is asked for: keys everywhere but on loopback. */
export function defaultAuth(host: string): AuthMode {
  return isLoopbackHost(host) ? 'none' : 'api-key';
}

export function exposureVerdict(e: Exposure): ExposureVerdict {
  if (isLoopbackHost(e.host)) return { refuse: null, warn: null };
  const gaps: string[] = [];
  const fixes: string[] = [];
  if (!e.tls) {
    gaps.push(e.auth === 'api-key' ? 'without TLS (API keys would cross the network in clear)' : 'without TLS');
    fixes.push('--tls-cert FILE --tls-key FILE');
  }
  if (e.auth === 'none' && !e.mutualTls) {
    gaps.push('without authentication (anyone who reaches the port could start and cancel jobs and read the files under the roots)');
    fixes.push('--auth api-key (or client certificates: --tls-client-ca FILE)');
  }
  if (gaps.length === 0) return { refuse: null, warn: null };
  const what = `listening on ${e.host} ${gaps.join(' and ')}`;
  if (e.allowInsecure) return { refuse: null, warn: `${what}, as --allow-insecure asks` };
  return {
    refuse: `refusing to start: ${what}. Add ${fixes.join(' and ')}, listen on 127.0.0.1, or pass --allow-insecure where a sidecar or mesh terminates TLS`,
    warn: null,
  };
}
