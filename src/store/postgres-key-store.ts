// API keys in the PostgreSQL job store's database (same pool, same migrations).
import { judgeKey, keyNotFound, lastUsedNeedsUpdate, mintKey, parseSecret, toKey, type KeyCheck, type KeyRecord, type KeyRow, type KeyStore, type NewKey } from './key-store.js';

/** Runs one statement on the store's pool, failing as the store does when it is closed or unreachable. */
export type PgQuery = <R>(sql: string, params: unknown[]) => Promise<R[]>;

export class PostgresKeyStore implements KeyStore {
  constructor(
    private readonly query: PgQuery,
    private readonly now: () => number,
  ) {}

  async create(k: NewKey): Promise<{ key: KeyRecord; secret: string }> {
    const { id, digest, presented } = mintKey(k);
    const [r] = await this.query<KeyRow>(
      `INSERT INTO api_keys (id, tenant, role, secret_sha256, create_time, expire_time, model_roots, data_roots)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
      [id, k.tenant, k.role, digest, this.now(), k.expireTime ?? null, JSON.stringify(k.modelRoots ?? []), JSON.stringify(k.dataRoots ?? [])],
    );
    return { key: toKey(r!), secret: presented };
  }

  async get(id: string): Promise<KeyRecord | null> {
    const [r] = await this.query<KeyRow>('SELECT * FROM api_keys WHERE id = $1', [id]);
    return r ? toKey(r) : null;
  }

  async list(): Promise<KeyRecord[]> {
    return (await this.query<KeyRow>('SELECT * FROM api_keys ORDER BY create_time, id', [])).map(toKey);
  }

  async revoke(id: string): Promise<KeyRecord> {
    const [r] = await this.query<KeyRow>('UPDATE api_keys SET revoke_time = coalesce(revoke_time, $1) WHERE id = $2 RETURNING *', [this.now(), id]);
    if (!r) throw keyNotFound(id);
    return toKey(r);
  }

  async check(presented: string): Promise<KeyCheck> {
    const parsed = parseSecret(presented);
    if (!parsed) return { ok: false, reason: 'malformed' };
    const now = this.now();
    const [r] = await this.query<KeyRow>('SELECT * FROM api_keys WHERE id = $1', [parsed.id]);
    const verdict = judgeKey(r, parsed.digest, now);
    if (verdict.ok && lastUsedNeedsUpdate(verdict.key, now)) {
      await this.query('UPDATE api_keys SET last_used_time = $1 WHERE id = $2', [now, verdict.key.id]);
      verdict.key.lastUsedTime = now;
    }
    return verdict;
  }
}
