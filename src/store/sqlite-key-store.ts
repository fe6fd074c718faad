// API keys in the SQLite job store's database (same connection, same migrations).
import type Database from 'better-sqlite3';
import { storeClosed } from './job-store.js';
import { judgeKey, keyNotFound, lastUsedNeedsUpdate, mintKey, parseSecret, toKey, type KeyCheck, type KeyRecord, type KeyRow, type KeyStore, type NewKey } from './key-store.js';

export class SqliteKeyStore implements KeyStore {
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
  ) {}

  private stmt(sql: string): Database.Statement {
    if (!this.db.open) throw storeClosed();
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  // async: a synchronous throw (bad tenant, closed store) becomes a rejection, as callers of the interface expect.
  async create(k: NewKey): Promise<{ key: KeyRecord; secret: string }> {
    const { id, digest, presented } = mintKey(k);
    this.stmt(
      `INSERT INTO api_keys (id, tenant, role, secret_sha256, create_time, expire_time, model_roots, data_roots) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(id, k.tenant, k.role, digest, this.now(), k.expireTime ?? null, JSON.stringify(k.modelRoots ?? []), JSON.stringify(k.dataRoots ?? []));
    return { key: this.getSync(id)!, secret: presented };
  }

  async get(id: string): Promise<KeyRecord | null> {
    return this.getSync(id);
  }

  private getSync(id: string): KeyRecord | null {
    const r = this.stmt('SELECT * FROM api_keys WHERE id = ?').get(id) as KeyRow | undefined;
    return r ? toKey(r) : null;
  }

  async list(): Promise<KeyRecord[]> {
    return (this.stmt('SELECT * FROM api_keys ORDER BY create_time, id').all() as KeyRow[]).map(toKey);
  }

  async revoke(id: string): Promise<KeyRecord> {
    const info = this.stmt('UPDATE api_keys SET revoke_time = coalesce(revoke_time, ?) WHERE id = ?').run(this.now(), id);
    if (info.changes === 0) throw keyNotFound(id);
    return this.getSync(id)!;
  }

  async check(presented: string): Promise<KeyCheck> {
    const parsed = parseSecret(presented);
    if (!parsed) return { ok: false, reason: 'malformed' };
    const now = this.now();
    const verdict = judgeKey(this.stmt('SELECT * FROM api_keys WHERE id = ?').get(parsed.id) as KeyRow | undefined, parsed.digest, now);
    if (verdict.ok && lastUsedNeedsUpdate(verdict.key, now)) {
      this.stmt('UPDATE api_keys SET last_used_time = ? WHERE id = ?').run(now, verdict.key.id);
      verdict.key.lastUsedTime = now;
    }
    return verdict;
  }
}
