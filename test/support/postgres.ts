// A throwaway PostgreSQL server for tests: initdb into a temporary directory, run it on a unix socket in that
// directory (no port to collide on), trust auth, durability off. One server per test file, a fresh database per
// store; the server is killed with its test process even when that process dies without cleaning up.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { POSTGRES_ROOT, postgresBin } from './system-tools.js';

// Only one server per directory, so the port only names the socket file (.s.PGSQL.<port>).
const PORT = 5432;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
// Not the server's defaults: a test database is thrown away, so nothing needs to reach the disk.
const SETTINGS: Record<string, string> = {
  listen_addresses: '',
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  shared_buffers: '32MB',
  max_connections: '200',
  max_parallel_workers_per_gather: '0',
  log_min_messages: 'warning',
};

/** PostgreSQL refuses to run as root; as root the server runs as this user. */
function serverUser(): { name: string; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  for (const name of ['postgres', 'nobody']) {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${name}:`));
    if (line) {
      const [, , uid, gid] = line.split(':');
      return { name, uid: Number(uid), gid: Number(gid) };
    }
  }
  throw new Error('running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as');
}

// setpriv execs (runuser would stay in between as the parent), so the death signal lands on the postmaster itself:
// SIGQUIT is PostgreSQL's immediate shutdown, which takes its backends along.
function asServer(bin: string, args: string[]): [string, string[]] {
  const user = serverUser();
  const drop = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups'] : [];
  return ['setpriv', [...drop, '--pdeathsig', 'SIGQUIT', bin, ...args]];
}

export interface TestPostgres {
  /** The socket directory. */
  readonly host: string;
  /** Time to initdb and start, in ms. */
  readonly startMs: number;
  /** A URL for a database on this server. */
  url(database: string): string;
  /** A new database, empty or a copy of `template` (a URL from this server that nobody is connected to); returns its URL. */
  createDatabase(template?: string): Promise<string>;
  /** Runs SQL on the maintenance database (tests that break a connection on purpose). */
  admin<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<T>>;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error(`PostgreSQL is not installed (no ${POSTGRES_ROOT}/*/bin/postgres)`);
  const version = Number(bin.split('/').at(-2));
  const started = performance.now();
  const user = serverUser();
  const runDir = toolCache();
  // In the run's tool cache when there is one, so the run's teardown also removes what a killed test process left.
  // The server user must pass through it: traverse only, no listing.
  if (runDir && user) chmodSync(runDir, 0o711);
  const dir = mkdtempSync(join(runDir ?? tmpdir(), 'narrowtune-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  let server: ChildProcess | null = null;
  const cleanup = () => {
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGQUIT');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    initdb(bin, data, version);
    const settings = Object.entries(SETTINGS).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
    const [pcmd, pargs] = asServer(join(bin, 'postgres'), ['-D', data, '-k', dir, '-p', String(PORT), ...settings]);
    server = spawn(pcmd, pargs, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    server.stderr!.setEncoding('utf8').on('data', (s: string) => (log = (log + s).slice(-4000)));
    const exited = new Promise<never>((_, reject) =>
      server!.once('exit', (code, signal) => reject(new Error(`postgres exited with ${code ?? signal} while starting:\n${log}`))),
    );
    exited.catch(() => {});
    await Promise.race([waitReady(dir), exited]);
  } catch (e) {
    cleanup();
    throw e;
  }
  const proc = server;
  // Kept in case the test process exits without afterAll (a crash): the death signal then ends the server,
  // and this removes its files.
  process.once('exit', cleanup);
  const url = (database: string) => `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(dir)}`;
  let admin: pg.Pool | null = null;
  const adminPool = () => {
    if (!admin) {
      admin = new pg.Pool({ connectionString: url('postgres'), max: 2 });
      admin.on('error', () => {}); // an idle connection ended by stop()
    }
    return admin;
  };
  let n = 0;
  return {
    host: dir,
    startMs: performance.now() - started,
    url,
    async createDatabase(template?: string) {
      const name = `t${process.pid}_${++n}`;
      const from = template ? ` TEMPLATE ${pg.escapeIdentifier(new URL(template).pathname.slice(1))}` : '';
      // FILE_COPY copies the template's few files; the default (WAL_LOG) writes them all to the WAL, about twice as slow.
      await adminPool().query(`CREATE DATABASE ${name}${from}${version >= 15 ? ' STRATEGY FILE_COPY' : ''}`);
      return url(name);
    },
    admin: (sql, params) => adminPool().query(sql, params),
    async stop() {
      process.removeListener('exit', cleanup);
      await admin?.end().catch(() => {});
      admin = null;
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGQUIT'); // immediate shutdown: no checkpoint, which a cluster about to be deleted does not need
        const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await gone;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The run's tool cache directory (tool-cache.ts), or null outside a vitest run. */
function toolCache(): string | null {
  try {
    return inject('systemToolsCache') || null;
  } catch {
    return null;
  }
}

/**
 * A new cluster in `data`. initdb takes 1-3 s; the first server of a test run keeps a copy of its fresh cluster in the
 * run's tool cache (test/support/tool-cache.ts, removed after the run), and later ones copy that (~0.1 s).
 */
function initdb(bin: string, data: string, version: number): void {
  const runDir = toolCache();
  const cache = runDir && join(runDir, `postgres-${version}-cluster`);
  // cp -a keeps owners and modes: the copy is the server user's, as initdb left it.
  const copy = (from: string, to: string) => spawnSync('cp', ['-a', from, to], { encoding: 'utf8' });
  if (cache && existsSync(cache) && copy(cache, data).status === 0) return;
  rmSync(data, { recursive: true, force: true });
  const [cmd, args] = asServer(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C']);
  const init = spawnSync(cmd, args, { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.error?.message ?? init.stderr.trim()}`);
  if (cache && !existsSync(cache)) {
    // Renamed into place whole, so a concurrent reader never copies half a cluster.
    const partial = `${cache}.${process.pid}`;
    if (copy(data, partial).status === 0) renameSync(partial, cache);
    else rmSync(partial, { recursive: true, force: true });
  }
}

async function waitReady(dir: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const c = new pg.Client({ host: dir, port: PORT, user: 'postgres', database: 'postgres' });
    try {
      await c.connect();
      await c.end();
      return;
    } catch (e) {
      await c.end().catch(() => {});
      // ENOENT: no socket yet; 57P03: "the database system is starting up".
      if (Date.now() > deadline) throw new Error(`PostgreSQL did not accept connections within ${START_TIMEOUT_MS} ms: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/**
 * One server for the calling test file, started on first use and stopped after the file's tests: files whose
 * PostgreSQL tests are all skipped or filtered out start none.
 */
export function postgresPerFile(): () => Promise<TestPostgres> {
  let server: Promise<TestPostgres> | null = null;
  afterAll(async () => {
    const s = server;
    server = null;
    if (s) await (await s.catch(() => null))?.stop();
  });
  return () => (server ??= startPostgres());
}
