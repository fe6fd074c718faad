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
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
