// The job store's PostgreSQL schema: an append-only list of migrations, applied in order on open and recorded in
// the narrowtune_schema table. Version N means the same tables and rules as SQLite's version N (schema.ts), so the
// two stores move in step. Numbers are BIGINT, as wide as SQLite's INTEGER (times in ms since the epoch), and JSON
// is kept as the text that was written.
import type pg from 'pg';
import { NarrowtuneError } from '../util/errors.js';

/** Migration i brings the schema from version i to i+1. Never edit one that has shipped; append a new one. */
export const PG_MIGRATIONS: readonly string[] = [
  `
  -- queue_order comes from a sequence, so it only grows and is never reused.
  CREATE TABLE jobs (
    queue_order      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    request_id       TEXT UNIQUE,
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    spec             TEXT NOT NULL,
    create_time      BIGINT NOT NULL,
    start_time       BIGINT,
    end_time         BIGINT,
    step             BIGINT NOT NULL DEFAULT 0,
    total_steps      BIGINT NOT NULL DEFAULT 0,
    trainable        TEXT NOT NULL DEFAULT '[]',
    error            TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    output_path      TEXT
  );
  CREATE INDEX jobs_by_create_time ON jobs (create_time DESC, queue_order DESC);
  CREATE INDEX jobs_by_state ON jobs (state, queue_order);

  CREATE TABLE checkpoints (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step        BIGINT NOT NULL,
    path        TEXT NOT NULL,
    final       BOOLEAN NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (job_id, step)
  );

  CREATE TABLE events (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence BIGINT NOT NULL,
    time     BIGINT NOT NULL,
    type     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
  );
  `,
  `
  -- What a finished job reports besides its output (e.g. the drift budget that stopped it), as JSON.
  ALTER TABLE jobs ADD COLUMN result TEXT;
  `,
  `
  -- Tenants: a request id is unique per tenant, not globally. tenant and creator_key_id are null for jobs made
  -- without authentication; request_hash is the SHA-256 of the StartTune request.
  ALTER TABLE jobs DROP CONSTRAINT jobs_request_id_key;
  ALTER TABLE jobs ADD COLUMN tenant TEXT, ADD COLUMN creator_key_id TEXT, ADD COLUMN request_hash TEXT,
                   ADD COLUMN cancel_requested_by TEXT, ADD COLUMN cancel_time BIGINT;
  CREATE INDEX jobs_by_tenant ON jobs (tenant, create_time DESC, queue_order DESC);
  -- '' stands for "no tenant": NULLs are distinct in a UNIQUE index, so they would never collide.
  CREATE UNIQUE INDEX jobs_by_request_id ON jobs (coalesce(tenant, ''), request_id) WHERE request_id IS NOT NULL;

  -- API keys. The secret is stored as its SHA-256 only; roots are JSON arrays of real paths ([] = the server's).
  CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'member', 'reader')),
    secret_sha256  BYTEA NOT NULL,
    create_time    BIGINT NOT NULL,
    expire_time    BIGINT,
    revoke_time    BIGINT,
    last_used_time BIGINT,
    model_roots    TEXT NOT NULL DEFAULT '[]',
    data_roots     TEXT NOT NULL DEFAULT '[]'
  );
  `,
  `
  -- Job leases: the worker training a job holds it until lease_expires and renews it by heartbeat; every claim
  -- increments lease_epoch, and a worker's writes are refused once the epoch moved on (fencing).
  ALTER TABLE jobs ADD COLUMN lease_owner TEXT, ADD COLUMN lease_expires BIGINT, ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
  UPDATE jobs SET lease_expires = 0, lease_epoch = 1 WHERE state = 'RUNNING';
  -- What a claim scans, in FIFO order, without the finished jobs (with 100k of them: 0.05 ms instead of 30 ms).
  CREATE INDEX jobs_claimable ON jobs (queue_order) WHERE state IN ('PENDING', 'RUNNING');
  -- Live leases per tenant, which claims count for tenantMaxRunning.
  CREATE INDEX jobs_running_by_tenant ON jobs (tenant, lease_expires) WHERE state = 'RUNNING';
  `,
];

// Any constant works; it only has to be the same for every process that migrates this database.
const MIGRATION_LOCK = 0x6e74_6d67; // "ntmg"

/**
 * Brings the database to PG_MIGRATIONS.length in one transaction, under an advisory lock, so replicas starting
 * together migrate once. `where` names the database in errors (without its password).
 */
export async function migratePostgres(client: pg.ClientBase, where: string): Promise<void> {
  await client.query('BEGIN');
  try {
    const [{ encoding }] = (await client.query<{ encoding: string }>(`SELECT current_setting('server_encoding') AS encoding`)).rows as [{ encoding: string }];
    if (encoding !== 'UTF8') {
      // Specs, paths and events are Unicode; another encoding would refuse some of them one write at a time.
      throw new NarrowtuneError('failed_precondition', `job database ${where} uses the encoding ${encoding}; narrowtune needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')`);
    }
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS narrowtune_schema (version INTEGER NOT NULL)');
    const { rows } = await client.query<{ version: number }>('SELECT version FROM narrowtune_schema');
    const current = rows[0]?.version ?? 0;
    if (current > PG_MIGRATIONS.length) {
      // A newer server wrote this database; guessing at its schema could corrupt it.
      throw new NarrowtuneError(
        'failed_precondition',
        `job database ${where} has schema version ${current}, newer than the ${PG_MIGRATIONS.length} this build knows; upgrade narrowtune`,
      );
    }
    for (let v = current; v < PG_MIGRATIONS.length; v++) await client.query(PG_MIGRATIONS[v]!);
    if (rows.length === 0) await client.query('INSERT INTO narrowtune_schema (version) VALUES ($1)', [PG_MIGRATIONS.length]);
    else if (current < PG_MIGRATIONS.length) await client.query('UPDATE narrowtune_schema SET version = $1', [PG_MIGRATIONS.length]);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}
