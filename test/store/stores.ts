// The job store implementations as test factories, so one suite runs against each: SQLite (in memory, or a file
// in a temporary directory) and PostgreSQL (a database on this file's throwaway server; skipped, or under
// NARROWTUNE_REQUIRE_ALL_TOOLS=1 failed, where PostgreSQL is not installed).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { afterEach, describe, type TestOptions } from 'vitest';
import type { JobStore } from '../../src/store/job-store.js';
import { PostgresJobStore } from '../../src/store/postgres-job-store.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { postgresPerFile } from '../support/postgres.js';
import { needs } from '../support/system-tools.js';

export interface StoreOptions {
  /** Clock in ms since epoch; tests pin it to get ties, exact times and lease expiry. */
  now?: () => number;
}

export interface StoreFactory {
  readonly name: 'sqlite' | 'postgres';
  /** The suite's test options: PostgreSQL needs the server. */
  readonly options: TestOptions;
  /** A new, empty store, closed after the test (SQLite: in memory). */
  fresh(opts?: StoreOptions): Promise<JobStore>;
  /** A new, empty database that several stores can open (SQLite: a temporary directory; PostgreSQL: a URL). */
  newDatabase(): Promise<string>;
  /** A store on a database from newDatabase(), closed after the test; two of them act like two processes. */
  open(database: string, opts?: StoreOptions): Promise<JobStore>;
  /** Runs SQL (no parameters) on a store's own database connection and returns the rows: for tests that look under the API. */
  sql(store: JobStore, text: string): Promise<Record<string, unknown>[]>;
}

/**
 * The store factories for a test file; call it once at the top of the file (it registers the hooks that close the
 * test's stores and stop the file's PostgreSQL server, which starts on first use).
 */
export function storeFactories(): StoreFactory[] {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  const opened = <S extends JobStore>(s: S): S => {
    cleanups.push(() => s.close());
    return s;
  };
  const server = postgresPerFile();
  // A database the store has migrated, copied for each test: cheaper than migrating every new one. The next copy
  // is made while a test runs, so a test waits for none.
  let migrated: Promise<string> | null = null;
  let next: Promise<string> | null = null;
  const copy = async () => (await server()).createDatabase(await migrated!);
  const newPostgresDatabase = async () => {
    migrated ??= (async () => {
      const url = await (await server()).createDatabase();
      await (await PostgresJobStore.open(url)).close();
      return url;
    })();
    const url = await (next ?? copy());
    next = copy();
    next.catch(() => {}); // the file may end first: the server stops, and nobody wants this one
    return url;
  };
  return [
    {
      name: 'sqlite',
      options: {},
      fresh: async (opts = {}) => opened(SqliteJobStore.openInMemory(opts)),
      async newDatabase() {
        const dir = mkdtempSync(join(tmpdir(), 'narrowtune-store-'));
        cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
        return dir;
      },
      open: async (dir, opts = {}) => opened(SqliteJobStore.open(dir, opts)),
      async sql(store, text) {
        const db = (store as unknown as { db: Database.Database }).db;
        const stmt = db.prepare(text);
        return stmt.reader ? (stmt.all() as Record<string, unknown>[]) : (stmt.run(), []);
      },
    },
    {
      name: 'postgres',
      options: needs('postgres'),
      fresh: async (opts = {}) => opened(await PostgresJobStore.open(await newPostgresDatabase(), opts)),
      newDatabase: newPostgresDatabase,
      open: async (url, opts = {}) => opened(await PostgresJobStore.open(url, opts)),
      sql: async (store, text) => (await (store as unknown as { pool: pg.Pool }).pool.query(text)).rows as Record<string, unknown>[],
    },
  ];
}

/** describe.each over the factories, each kind as its own suite with its own options (so PostgreSQL's can skip). */
export function describeStores(factories: StoreFactory[], body: (f: StoreFactory) => void): void {
  for (const f of factories) describe(f.name, f.options, () => body(f));
}

/**
 * A new database for a server or CLI (ServerOptions, `--database-url`): for SQLite nothing, since the store lives
 * in the data directory the caller gives; for PostgreSQL the URL of a new database on the file's server.
 */
export async function serverDatabase(f: StoreFactory): Promise<{ databaseUrl?: string }> {
  return f.name === 'postgres' ? { databaseUrl: await f.newDatabase() } : {};
}
