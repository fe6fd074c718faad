// The job store's SQLite schema: an append-only list of migrations, applied in order and recorded in `PRAGMA user_version`.
import type Database from 'better-sqlite3';
import { NarrowtuneError } from '../util/errors.js';

/** Migration i brings the schema from version i to i+1. Never edit one that has shipped; append a new one. */
export const MIGRATIONS: readonly string[] = [
  `
  -- queue_order is the rowid with AUTOINCREMENT so it is never reused, even after the newest job is deleted by hand.
  CREATE TABLE jobs (
    queue_order      INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    request_id       TEXT UNIQUE,
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    spec             TEXT NOT NULL,
    create_time      INTEGER NOT NULL,
    start_time       INTEGER,
    end_time         INTEGER,
    step             INTEGER NOT NULL DEFAULT 0,
    total_steps      INTEGER NOT NULL DEFAULT 0,
    trainable        TEXT NOT NULL DEFAULT '[]',
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    output_path      TEXT
  );
  CREATE INDEX jobs_by_create_time ON jobs (create_time DESC, queue_order DESC);
  CREATE INDEX jobs_by_state ON jobs (state, queue_order);

  CREATE TABLE checkpoints (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    path        TEXT NOT NULL,
    final       INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (job_id, step)
  ) WITHOUT ROWID;

  CREATE TABLE events (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL,
    time     INTEGER NOT NULL,
    type     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
  ) WITHOUT ROWID;
  `,
  `
  -- What a finished job reports besides its output (e.g. the drift budget that stopped it), as JSON.
  ALTER TABLE jobs ADD COLUMN result TEXT;
  `,
  `
  -- Tenants. A request id is unique per tenant, not globally (two tenants may both send "retry-1"), and a column's
  -- UNIQUE cannot be dropped in SQLite: the jobs table is rebuilt (the documented 12-step procedure; migrate()
  -- turns foreign keys off around it so the drop does not cascade to checkpoints and events).
  -- tenant and creator_key_id are null for jobs made without authentication; request_hash is the SHA-256 of the
  -- StartTune request, null for jobs from before this version (a retry of those is taken as the same request).
  CREATE TABLE jobs_v3 (
    queue_order         INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    tenant              TEXT,
    creator_key_id      TEXT,
    request_id          TEXT,
    request_hash        TEXT,
    state               TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    spec                TEXT NOT NULL,
    create_time         INTEGER NOT NULL,
    start_time          INTEGER,
    end_time            INTEGER,
    step                INTEGER NOT NULL DEFAULT 0,
    total_steps         INTEGER NOT NULL DEFAULT 0,
    trainable           TEXT NOT NULL DEFAULT '[]',
    error               TEXT,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    cancel_requested_by TEXT,
    cancel_time         INTEGER,
    output_path         TEXT,
    result              TEXT
  );
  INSERT INTO jobs_v3 (queue_order, id, request_id, state, spec, create_time, start_time, end_time, step, total_steps,
                       trainable, error, cancel_requested, output_path, result)
    SELECT queue_order, id, request_id, state, spec, create_time, start_time, end_time, step, total_steps,
           trainable, error, cancel_requested, output_path, result FROM jobs;
  -- Keep AUTOINCREMENT's high-water mark: queue_order is never reused, even for a deleted newest job.
  INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_v3', 0
    WHERE EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs') AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs_v3');
  UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'jobs')) WHERE name = 'jobs_v3';
  DROP TABLE jobs;
  ALTER TABLE jobs_v3 RENAME TO jobs;
  CREATE INDEX jobs_by_create_time ON jobs (create_time DESC, queue_order DESC);
  CREATE INDEX jobs_by_state ON jobs (state, queue_order);
  CREATE INDEX jobs_by_tenant ON jobs (tenant, create_time DESC, queue_order DESC);
  -- '' stands for "no tenant": NULLs are distinct in a UNIQUE index, so they would never collide.
  CREATE UNIQUE INDEX jobs_by_request_id ON jobs (coalesce(tenant, ''), request_id) WHERE request_id IS NOT NULL;

  -- API keys. The secret is stored as its SHA-256 only; roots are JSON arrays of real paths ([] = the server's).
  CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'member', 'reader')),
    secret_sha256  BLOB NOT NULL,
    create_time    INTEGER NOT NULL,
    expire_time    INTEGER,
    revoke_time    INTEGER,
    last_used_time INTEGER,
    model_roots    TEXT NOT NULL DEFAULT '[]',
    data_roots     TEXT NOT NULL DEFAULT '[]'
  ) WITHOUT ROWID;
  `,
  `
  -- Job leases: the worker training a job holds it until lease_expires and renews it by heartbeat; every claim
  -- increments lease_epoch, and a worker's writes are refused once the epoch moved on (fencing). A job left RUNNING
  -- by a server from before leases is expired at once, so the next claim resumes it.
  ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
  ALTER TABLE jobs ADD COLUMN lease_expires INTEGER;
  ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
  UPDATE jobs SET lease_expires = 0, lease_epoch = 1 WHERE state = 'RUNNING';
  `,
];

export function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    // A newer server wrote this file; guessing at its schema could corrupt it.
    throw new NarrowtuneError(
      'failed_precondition',
      `job database ${db.name} has schema version ${current}, newer than the ${MIGRATIONS.length} this build knows; upgrade narrowtune`,
    );
  }
  if (current === MIGRATIONS.length) return;
  // Table rebuilds drop a table others reference; with foreign keys on, that drop would delete their rows. The
  // pragma is a no-op inside a transaction, so it is set around them, and the references are checked before commit.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    for (let v = current; v < MIGRATIONS.length; v++) {
      db.transaction(() => {
        db.exec(MIGRATIONS[v]!);
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) throw new NarrowtuneError('internal', `schema migration ${v + 1} of ${db.name} broke ${broken.length} foreign key references`);
        db.pragma(`user_version = ${v + 1}`);
      }).immediate();
    }
  } finally {
    db.pragma(`foreign_keys = ${foreignKeys ? 'ON' : 'OFF'}`);
  }
}
