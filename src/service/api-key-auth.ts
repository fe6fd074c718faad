// The API-key Authenticator: `authorization: Bearer nt_<id>_<secret>` → the key's caller (tenant, role, roots).
// Messages never quote what the client sent: a mistyped secret is still mostly a secret.
import { isAbsolute, relative, sep } from 'node:path';
import type { KeyRecord, KeyStore } from '../store/key-store.js';
import { NarrowtuneError } from '../util/errors.js';
import { type Authenticator, type Caller, unauthenticated } from './caller.js';

const BEARER = /^Bearer +(\S+)\s*$/i;
const HOW = 'send the metadata "authorization: Bearer <API key>" (`narrowtune keys create` makes a key)';

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * A key's roots may only narrow the server's: the ones inside a server root are kept (checked at every use, as the
 * server may have been restarted with fewer roots). A key whose every root falls outside gets none rather than the
 * server's, which would widen it.
 */
function narrow(keyRoots: string[], serverRoots: string[], key: KeyRecord, flag: string): string[] {
  if (keyRoots.length === 0) return serverRoots;
  const kept = keyRoots.filter((r) => serverRoots.some((s) => inside(s, r)));
  if (kept.length === 0) {
    throw new NarrowtuneError(
      'permission_denied',
      `API key ${key.id}: none of its ${flag} directories lies inside the server's ${flag} directories; create a key with roots inside them`,
    );
  }
  return kept;
}

export function apiKeyAuthenticator(keys: Pick<KeyStore, 'check'>, roots: { modelRoots: string[]; dataRoots: string[] }): Authenticator {
  return async (authorization) => {
    if (authorization === undefined || authorization === '') throw unauthenticated(`no API key: ${HOW}`);
    const m = BEARER.exec(authorization);
    if (!m) throw unauthenticated(`the authorization metadata is not "Bearer <API key>": ${HOW}`);
    const result = await keys.check(m[1]!);
    if (!result.ok) {
      switch (result.reason) {
        case 'malformed':
          throw unauthenticated('the API key is malformed (keys look like nt_<id>_<secret>)');
        case 'unknown':
          throw unauthenticated('unknown API key');
        case 'revoked':
          throw unauthenticated(`API key ${result.key.id} was revoked at ${new Date(result.key.revokeTime!).toISOString()}`);
        case 'expired':
          throw unauthenticated(`API key ${result.key.id} expired at ${new Date(result.key.expireTime!).toISOString()}`);
      }
    }
    const { key } = result;
    const caller: Caller = {
      keyId: key.id,
      tenant: key.tenant,
      role: key.role,
      modelRoots: narrow(key.modelRoots, roots.modelRoots, key, 'model-root'),
      dataRoots: narrow(key.dataRoots, roots.dataRoots, key, 'data-root'),
    };
    return caller;
  };
}
