// API keys: who may call the service, for which tenant, with which role and roots. Kept in the job store's
// database (same connection, same migrations) by each store implementation (sqlite-key-store.ts, postgres); this
// file is their contract and the checks they share, so a key behaves alike in both.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
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

/** An api_keys row as both stores read it (PostgreSQL: bytea → Buffer, bigint times → number). */
export interface KeyRow {
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
export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export function toKey(r: KeyRow): KeyRecord {
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

/**
 * Every method is one statement or transaction; once the store is closed each fails with 'unavailable'.
 */
export interface KeyStore {
  /**
   * Creates a key (tenant must match TENANT_NAME, role one of KEY_ROLES: invalid_argument on 'tenant'/'role'); the
   * secret `nt_<id>_<secret>` is returned here only, the store keeps its SHA-256. Roots default to [].
   */
  create(k: NewKey): Promise<{ key: KeyRecord; secret: string }>;

  /** The key, or null. */
  get(id: string): Promise<KeyRecord | null>;

  /** Every key, oldest first (createTime, then id). */
  list(): Promise<KeyRecord[]>;

  /** Revokes a key from now on; revoking it again keeps the first time. not_found (field KEY_ID) for an unknown id. */
  revoke(id: string): Promise<KeyRecord>;

  /**
   * Checks a presented secret (judgeKey says how). Only a secret that matches says anything about its key (expired,
   * revoked): a caller who knows just an id learns nothing. Records the use when lastUsedNeedsUpdate says so.
   */
  check(presented: string): Promise<KeyCheck>;
}

/** Checks a new key's fields and makes its id and secret; the store inserts `digest`, returns `presented` once. */
export function mintKey(k: NewKey): { id: string; digest: Buffer; presented: string } {
  if (!TENANT_NAME.test(k.tenant)) throw invalidArgument('tenant', `"${k.tenant.slice(0, 80)}" must match ${TENANT_NAME}`);
  if (!KEY_ROLES.includes(k.role)) throw invalidArgument('role', `expected one of ${KEY_ROLES.join(', ')}, got "${k.role}"`);
  const id = newJobId();
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { id, digest: sha256(secret), presented: `${SECRET_PREFIX}${id}_${secret}` };
}

/** The key id a presented secret names, with the digest of its secret part; null when it is not a key's shape. */
export function parseSecret(presented: string): { id: string; digest: Buffer } | null {
  const m = SECRET_FORMAT.exec(presented);
  return m ? { id: m[1]!, digest: sha256(m[2]!) } : null;
}

/** What check() answers for a presented digest against the row its id names (undefined: no such key). */
export function judgeKey(r: KeyRow | undefined, digest: Buffer, now: number): KeyCheck {
  // Compare digests, not secrets: equal lengths, and the time taken says nothing about how much matched.
  if (!r || !timingSafeEqual(r.secret_sha256, digest)) return { ok: false, reason: 'unknown' };
  const key = toKey(r);
  if (key.revokeTime !== null && key.revokeTime <= now) return { ok: false, reason: 'revoked', key };
  if (key.expireTime !== null && key.expireTime <= now) return { ok: false, reason: 'expired', key };
  return { ok: true, key };
}

/** Whether a successful check at `now` should record the use (once per LAST_USED_RESOLUTION_MS). */
export function lastUsedNeedsUpdate(key: KeyRecord, now: number): boolean {
  return key.lastUsedTime === null || now - key.lastUsedTime >= LAST_USED_RESOLUTION_MS;
}

export function keyNotFound(id: string): NarrowtuneError {
  return new NarrowtuneError('not_found', `no API key ${id.slice(0, 80)}`, [{ field: 'KEY_ID', description: 'no such key' }]);
}
