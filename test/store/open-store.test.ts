// Which store a process opens: SQLite in the data directory without a database URL, PostgreSQL with one.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DB_FILE } from '../../src/store/job-store.js';
import { jobStoreLocation, openJobStore } from '../../src/store/open-store.js';
import { PostgresJobStore } from '../../src/store/postgres-job-store.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec } from './fixtures.js';
import { storeFactories } from './stores.js';

const [sqlite, postgres] = storeFactories();

describe('openJobStore', () => {
  it('opens SQLite in the data directory without a database URL, or with an empty one', async () => {
    for (const databaseUrl of [undefined, null, '', '  ']) {
      const dir = join(await sqlite!.newDatabase(), 'data');
      const s = await openJobStore({ dataDir: dir, databaseUrl });
      try {
        expect(s).toBeInstanceOf(SqliteJobStore);
        expect(existsSync(join(dir, DB_FILE))).toBe(true);
      } finally {
        await s.close();
      }
    }
  });

  it('refuses a URL of another database, without quoting its password', async () => {
    const e = await openJobStore({ dataDir: '/unused', databaseUrl: 'mysql://root:hunter2@db/nt' }).catch((e: unknown) => e);
    expect(e).toBeInstanceOf(NarrowtuneError);
    expect(e).toMatchObject({ kind: 'invalid_argument', violations: [{ field: 'database_url' }] });
    expect((e as Error).message).toContain('mysql://root:***@db/nt');
    expect((e as Error).message).not.toContain('hunter2');
  });

  it('names the location without the password', () => {
    expect(jobStoreLocation({ dataDir: '/srv/nt/', databaseUrl: 'postgres://nt:pw@db/nt' })).toBe('PostgreSQL postgres://nt:***@db/nt');
    expect(jobStoreLocation({ dataDir: '/srv/nt/' })).toBe(`SQLite /srv/nt/${DB_FILE}`);
  });

  it('opens PostgreSQL for a postgres:// or postgresql:// URL', postgres!.options, async () => {
    const url = await postgres!.newDatabase();
    for (const u of [url, url.replace(/^postgresql:/, 'postgres:')]) {
      const s = await openJobStore({ dataDir: '/unused', databaseUrl: u });
      try {
        expect(s).toBeInstanceOf(PostgresJobStore);
        expect((await s.createJob({ spec: spec() })).created).toBe(true);
      } finally {
        await s.close();
      }
    }
  });
});
