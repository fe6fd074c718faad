// `--database-url` (or NARROWTUNE_DATABASE_URL) on serve, worker and keys: the PostgreSQL job store that several
// machines share; without either, SQLite in --data-dir. Imports nothing heavy, so help texts can use it.
import { type Flags, str } from './args.js';

export const DATABASE_URL_ENV = 'NARROWTUNE_DATABASE_URL';

/** The flag, else the environment variable (which keeps a password out of `ps`), else undefined (SQLite). */
export function databaseUrl(f: Flags, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = (str(f, 'database-url') ?? env[DATABASE_URL_ENV])?.trim();
  return url ? url : undefined;
}

/** The help lines for the flag, the same in every command that takes it. */
export const DATABASE_URL_HELP = `  --database-url URL       the PostgreSQL job store shared by every replica and worker
                           (postgres://USER:PASSWORD@HOST:PORT/DB; ?host=/dir for a unix socket); default
                           the ${DATABASE_URL_ENV} variable, which keeps the password out of \`ps\`;
                           without either, SQLite in --data-dir`;
