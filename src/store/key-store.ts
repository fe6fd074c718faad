// API keys: who may call the service, for which tenant, with which role and roots. Kept in the job store's
// database (same connection, same migrations); the service sees only this class's few methods.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { newJobId } from './job-id.js';

export type KeyRole = 'admin' | 'member' | 'reader';
export const KEY_ROLES: readonly KeyRole[] = ['admin', 'member', 'reader'];

export interface KeyRecord {
  id: string;
  tenant: string;
  role: KeyRole;
  createTime: number;
  expireTime: number | null;
  revokeTime: number | null;
  lastUsedTime: number | null;
  /** Real paths; empty: the server's roots. */
  modelRoots: string[];
  dataRoots: string[];
}

export interface NewKey {
  tenant: string;
  role: KeyRole;
  expireTime?: number | null;
  modelRoots?: string[];
  dataRoots?: string[];
}

/** Why a presented secret does not authenticate; 'unknown' also covers a wrong secret for a known id. */
export type KeyCheck = { ok: true; key: KeyRecord } | { ok: false; reason: 'malformed' | 'unknown' } | { ok: false; reason: 'expired' | 'revoked'; key: KeyRecord };

const SECRET_PREFIX = 'nt_';
const SECRET_BYTES = 32;
/** Tenant names go into logs, filters and QuotaFailure subjects: keep them plain. */
export const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// `nt_<id>_<secret>`: the id is base32 (no "_"), the secret base64url, so the first "_" after the prefix splits them.
const SECRET_FORMAT = /^nt_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;
/** last_used_time is kept to this resolution: one write per key per minute, not one per call. */
export const LAST_USED_RESOLUTION_MS = 60_000;

interface KeyRow {
  id: string;
  tenant: string;
  role: KeyRole;
  secret_sha256: Buffer;
  create_time: number;
  expire_time: number | null;
  revoke_time: number | null;
  last_used_time: number | null;
  model_roots: string;
  data_roots: string;
}

// The secret has 256 random bits: a single SHA-256 cannot be brute-forced, so no slow password hash (bcrypt, scrypt) is
// needed, and checking a key on every call stays cheap.
function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function toKey(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    tenant: r.tenant,
    role: r.role,
    createTime: r.create_time,
    expireTime: r.expire_time,
    revokeTime: r.revoke_time,
    lastUsedTime: r.last_used_time,
    modelRoots: JSON.parse(r.model_roots) as string[],
    dataRoots: JSON.parse(r.data_roots) as string[],
  };
}

export class KeyStore {
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
  ) {}

  private stmt(sql: string): Database.Statement {
    if (!this.db.open) throw new NarrowtuneError('unavailable', 'the key store is closed');
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  /** Creates a key; the secret is returned here only; the store keeps its hash. */
  create(k: NewKey): { key: KeyRecord; secret: string } {
    if (!TENANT_NAME.test(k.tenant)) throw invalidArgument('tenant', `"${k.tenant.slice(0, 80)}" must match ${TENANT_NAME}`);
    if (!KEY_ROLES.includes(k.role)) throw invalidArgument('role', `expected one of ${KEY_ROLES.join(', ')}, got "${k.role}"`);
    const id = newJobId();
    const secret = randomBytes(SECRET_BYTES).toString('base64url');
    this.stmt(
      `INSERT INTO api_keys (id, tenant, role, secret_sha256, create_time, expire_time, model_roots, data_roots) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(id, k.tenant, k.role, sha256(secret), this.now(), k.expireTime ?? null, JSON.stringify(k.modelRoots ?? []), JSON.stringify(k.dataRoots ?? []));
    return { key: this.get(id)!, secret: `${SECRET_PREFIX}${id}_${secret}` };
  }

  get(id: string): KeyRecord | null {
    const r = this.stmt('SELECT * FROM api_keys WHERE id = ?').get(id) as KeyRow | undefined;
    return r ? toKey(r) : null;
  }

  /** Every key, oldest first. */
  list(): KeyRecord[] {
    return (this.stmt('SELECT * FROM api_keys ORDER BY create_time, id').all() as KeyRow[]).map(toKey);
  }

  /** Revokes a key from now on; revoking it again keeps the first time. */
  revoke(id: string): KeyRecord {
    const info = this.stmt('UPDATE api_keys SET revoke_time = coalesce(revoke_time, ?) WHERE id = ?').run(this.now(), id);
    if (info.changes === 0) throw new NarrowtuneError('not_found', `no API key ${id.slice(0, 80)}`, [{ field: 'KEY_ID', description: 'no such key' }]);
    return this.get(id)!;
  }

  /**
   * Checks a presented secret. Only a secret that matches says anything about its key (expired, revoked): a
   * caller who knows just an id learns nothing. Records the use, at LAST_USED_RESOLUTION_MS.
   */
  check(presented: string): KeyCheck {
    const m = SECRET_FORMAT.exec(presented);
    if (!m) return { ok: false, reason: 'malformed' };
    const r = this.stmt('SELECT * FROM api_keys WHERE id = ?').get(m[1]) as KeyRow | undefined;
    // Compare digests, not secrets: equal lengths, and the time taken says nothing about how much matched.
    if (!r || !timingSafeEqual(r.secret_sha256, sha256(m[2]!))) return { ok: false, reason: 'unknown' };
    const key = toKey(r);
    const now = this.now();
    if (key.revokeTime !== null && key.revokeTime <= now) return { ok: false, reason: 'revoked', key };
    if (key.expireTime !== null && key.expireTime <= now) return { ok: false, reason: 'expired', key };
    if (key.lastUsedTime === null || now - key.lastUsedTime >= LAST_USED_RESOLUTION_MS) {
      this.stmt('UPDATE api_keys SET last_used_time = ? WHERE id = ?').run(now, key.id);
      key.lastUsedTime = now;
    }
    return { ok: true, key };
  }
}
