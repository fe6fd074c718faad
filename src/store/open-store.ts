// Opens the job store a process was configured with: PostgreSQL when given a database URL (several machines
// share it), else SQLite in the data directory (one machine, no server).
import { invalidArgument } from '../util/errors.js';
import { DB_FILE, type JobStore } from './job-store.js';
import { PostgresJobStore, redactDatabaseUrl } from './postgres-job-store.js';
import { SqliteJobStore } from './sqlite-job-store.js';

export interface OpenJobStoreOptions {
  /** Where SQLite keeps narrowtune.db when there is no database URL. */
  dataDir: string;
  /** postgres:// or postgresql:// (libpq's URL form; ?host=/dir for a unix socket); empty or absent: SQLite. */
  databaseUrl?: string | null;
  /** Clock in ms since epoch; tests pin it. */
  now?: () => number;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i;

/** The store's location as logs and errors may show it: the URL without its password, or the SQLite file. */
export function jobStoreLocation(o: OpenJobStoreOptions): string {
  const url = o.databaseUrl?.trim();
  return url ? `PostgreSQL ${redactDatabaseUrl(url)}` : `SQLite ${o.dataDir.replace(/\/+$/, '')}/${DB_FILE}`;
}

export async function openJobStore(o: OpenJobStoreOptions): Promise<JobStore> {
  const url = o.databaseUrl?.trim();
  if (!url) return SqliteJobStore.open(o.dataDir, { now: o.now });
  if (!POSTGRES_URL.test(url)) {
    throw invalidArgument('database_url', `expected a postgres:// or postgresql:// URL, got "${redactDatabaseUrl(url).slice(0, 200)}"`);
  }
  return PostgresJobStore.open(url, { now: o.now });
}
