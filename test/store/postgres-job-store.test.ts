// What only the PostgreSQL store has to show: several stores on one database (replicas, workers) racing for the
// same rows, notifications between them, a dropped LISTEN connection, its schema table, and URLs without passwords.
import pg from 'pg';
import { describe, expect, it, vi } from 'vitest';
import { followEvents } from '../../src/store/follow-events.js';
import type { JobStore, Lease, StoreNotification } from '../../src/store/job-store.js';
import { openJobStore } from '../../src/store/open-store.js';
import { PostgresJobStore, redactDatabaseUrl } from '../../src/store/postgres-job-store.js';
import { PG_MIGRATIONS } from '../../src/store/postgres-schema.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec, step } from './fixtures.js';
import { storeFactories } from './stores.js';

const postgres = storeFactories().find((f) => f.name === 'postgres')!;
const LEASE_MS = 60_000;

/** Two stores on one new database, as two processes would have. */
async function twoStores(now?: () => number): Promise<[JobStore, JobStore, string]> {
  const url = await postgres.newDatabase();
  return [await postgres.open(url, { now }), await postgres.open(url, { now }), url];
}

async function rejection(p: Promise<unknown>): Promise<NarrowtuneError> {
  const e = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(NarrowtuneError);
  return e as NarrowtuneError;
}

/** Resolves with the first notification `accept` takes, or rejects after `ms`. */
function nextNotification(s: JobStore, jobId: string, accept: (n: StoreNotification) => boolean, ms = 5000): Promise<StoreNotification> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no notification for jobs/${jobId} within ${ms} ms`));
    }, ms);
    const off = s.subscribe(jobId, (n) => {
      if (!accept(n)) return;
      clearTimeout(timer);
      off();
      resolve(n);
    });
  });
}

async function claimAll(s: JobStore, workerId: string, tenantMaxRunning?: number): Promise<Lease[]> {
  const leases: Lease[] = [];
  for (let l = await s.claimJob({ workerId, leaseMs: LEASE_MS, tenantMaxRunning }); l; l = await s.claimJob({ workerId, leaseMs: LEASE_MS, tenantMaxRunning })) {
    leases.push(l);
  }
  return leases;
}

describe('PostgreSQL job store', postgres.options, () => {
  describe('replicas sharing one database', () => {
    it('creates one job for a request id sent to two replicas at once', async () => {
      const [a, b] = await twoStores();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).createJob({ tenant: 'acme', requestId: 'r1', requestHash: 'h', spec: spec() })),
      );
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.job.id)).size).toBe(1);
      expect(await a.countInStates(['PENDING'])).toBe(1);
    });

    it('never hands one job to two workers, and hands out every job', async () => {
      const [a, b] = await twoStores();
      const ids = new Set<string>();
      for (let i = 0; i < 24; i++) ids.add((await a.createJob({ spec: spec(`m${i}`) })).job.id);
      const workers = Array.from({ length: 6 }, (_, w) => claimAll(w % 2 ? a : b, `w${w}`));
      const claimed = (await Promise.all(workers)).flat();
      expect(claimed.map((l) => l.jobId).sort()).toEqual([...ids].sort());
      expect(claimed.every((l) => l.epoch === 1)).toBe(true);
    });

    it('counts a tenant’s running jobs across concurrent claims', async () => {
      const [a, b] = await twoStores();
      for (let i = 0; i < 6; i++) await a.createJob({ tenant: 'acme', spec: spec() });
      for (let i = 0; i < 3; i++) await a.createJob({ tenant: null, spec: spec() });
      const claimed = (await Promise.all(Array.from({ length: 6 }, (_, w) => claimAll(w % 2 ? a : b, `w${w}`, 2)))).flat();
      const acme = claimed.filter((l) => l.job.tenant === 'acme');
      expect(acme).toHaveLength(2);
      expect(claimed.filter((l) => l.job.tenant === null)).toHaveLength(3);
      expect(await a.countInStates(['RUNNING'], 'acme')).toBe(2);
    });

    it('numbers events without gaps while two connections append at once', async () => {
      const [a, b] = await twoStores();
      await a.createJob({ spec: spec() });
      const lease = (await a.claimJob({ workerId: 'w', leaseMs: LEASE_MS }))!;
      const seqs = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).appendEvent(lease, step(i + 1)).then((e) => e.sequence)));
      expect(seqs.sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect((await b.readEvents(lease.jobId, 0)).map((e) => e.sequence)).toEqual(seqs);
    });

    it('fences a worker whose expired lease another worker claimed', async () => {
      let t = 1000;
      const [a, b] = await twoStores(() => t);
      await a.createJob({ spec: spec() });
      const old = (await a.claimJob({ workerId: 'w1', leaseMs: 100 }))!;
      await a.appendEvent(old, step(1));
      t += 100;
      const next = (await b.claimJob({ workerId: 'w2', leaseMs: LEASE_MS }))!;
      expect(next).toMatchObject({ jobId: old.jobId, epoch: 2 });
      for (const write of [
        () => a.appendEvent(old, step(2)),
        () => a.updateProgress(old, { step: 2 }),
        () => a.addCheckpoint(old, { step: 2, path: '/ck/2', final: false }),
        () => a.finish(old, 'SUCCEEDED'),
      ]) {
        const e = await rejection(write());
        expect(e.kind).toBe('aborted');
        expect(e.message).toMatch(/lease lost/);
      }
      expect(await a.renewLease(old, LEASE_MS)).toBe(false);
      expect((await b.appendEvent(next, step(2))).sequence).toBe(2);
    });
  });

  describe('notifications between processes', () => {
    it('tells a subscriber on another store of events and state changes, with the event itself', async () => {
      const [worker, api] = await twoStores();
      const { job } = await api.createJob({ spec: spec() });
      const lease = (await worker.claimJob({ workerId: 'w', leaseMs: LEASE_MS }))!;
      const gotEvent = nextNotification(api, job.id, (n) => n.kind === 'event');
      await worker.appendEvent(lease, step(1, 0.5));
      expect(await gotEvent).toEqual({ kind: 'event', event: { jobId: job.id, sequence: 1, time: expect.any(Number), event: step(1, 0.5) } });
      const gotCancel = nextNotification(worker, job.id, (n) => n.kind === 'state' && n.job.cancelRequested);
      await api.requestCancel(job.id, 'k1');
      expect(await gotCancel).toMatchObject({ kind: 'state', job: { id: job.id, state: 'RUNNING', cancelRequestedBy: 'k1' } });
    });

    it('delivers an event too big for a NOTIFY by reading it back', async () => {
      const [worker, api] = await twoStores();
      const { job } = await api.createJob({ spec: spec() });
      const lease = (await worker.claimJob({ workerId: 'w', leaseMs: LEASE_MS }))!;
      const big = { type: 'probe', step: 1, prompt: 'x'.repeat(20_000), completion: 'y', loss: 1 } as never;
      const got = nextNotification(api, job.id, (n) => n.kind === 'event');
      const stored = await worker.appendEvent(lease, big);
      expect(await got).toEqual({ kind: 'event', event: stored });
    });

    it('streams a job written by another store to its end, gap-free', async () => {
      const [worker, api] = await twoStores();
      const { job } = await api.createJob({ spec: spec() });
      const lease = (await worker.claimJob({ workerId: 'w', leaseMs: LEASE_MS }))!;
      for (let i = 1; i <= 3; i++) await worker.appendEvent(lease, step(i));
      const seqs: number[] = [];
      const done = (async () => {
        for await (const e of followEvents(api, job.id, 0)) seqs.push(e.sequence);
      })();
      for (let i = 4; i <= 30; i++) await worker.appendEvent(lease, step(i));
      await worker.appendEvent(lease, { type: 'finished', state: 'SUCCEEDED' });
      await worker.finish(lease, 'SUCCEEDED');
      await done;
      expect(seqs).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
    });

    it('reconnects a dropped LISTEN connection and tells subscribers to look again', async () => {
      const [worker, api, url] = await twoStores();
      const { job } = await api.createJob({ spec: spec() });
      const lease = (await worker.claimJob({ workerId: 'w', leaseMs: LEASE_MS }))!;
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const admin = new pg.Client({ connectionString: url });
        await admin.connect();
        // Ends every LISTEN connection on this database: both stores reconnect.
        const { rowCount } = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`);
        // Subscribed after the drop, so only the reconnect (which takes at least its first backoff) can answer.
        const poked = nextNotification(api, job.id, (n) => n.kind === 'state');
        await admin.end();
        expect(rowCount).toBe(2);
        expect(await poked).toMatchObject({ kind: 'state', job: { id: job.id } });
        const got = nextNotification(api, job.id, (n) => n.kind === 'event');
        await worker.appendEvent(lease, step(1));
        expect(await got).toMatchObject({ kind: 'event', event: { sequence: 1 } });
        expect(warnings.some((w) => /LISTEN connection/.test(w))).toBe(true);
      } finally {
        process.off('warning', onWarning);
      }
    });
  });

  describe('schema', () => {
    it('migrates once when replicas start together, and records the version', async () => {
      const url = await postgres.newDatabase();
      await Promise.all([postgres.open(url), postgres.open(url), postgres.open(url)]);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        expect((await c.query('SELECT version FROM narrowtune_schema')).rows).toEqual([{ version: PG_MIGRATIONS.length }]);
      } finally {
        await c.end();
      }
    });

    it('refuses a database that is not UTF-8', async () => {
      const url = await postgres.newDatabase();
      const latin1 = url.replace(/\/(\w+)\?/, '/$1_latin1?');
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${new URL(latin1).pathname.slice(1)} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
      await admin.end();
      const e = await rejection(PostgresJobStore.open(latin1));
      expect(e.kind).toBe('failed_precondition');
      expect(e.message).toMatch(/uses the encoding LATIN1; narrowtune needs UTF8/);
    });

    it('refuses a database from a newer schema', async () => {
      const url = await postgres.newDatabase();
      await (await postgres.open(url)).close();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query('UPDATE narrowtune_schema SET version = 99');
      await c.end();
      const e = await rejection(PostgresJobStore.open(url));
      expect(e.kind).toBe('failed_precondition');
      expect(e.message).toMatch(/schema version 99, newer than the \d+ this build knows/);
    });
  });

  describe('values', () => {
    it('keeps numbers as wide as SQLite does', async () => {
      const now = 2 ** 41;
      const s = await postgres.fresh({ now: () => now });
      const { job } = await s.createJob({ spec: spec() });
      const lease = (await s.claimJob({ workerId: 'w', leaseMs: 2 ** 40 }))!;
      await s.updateProgress(lease, { step: 2 ** 40, totalSteps: 2 ** 50 });
      await s.addCheckpoint(lease, { step: 2 ** 40, path: '/ck', final: false });
      expect(await s.getJob(job.id)).toMatchObject({ createTime: now, leaseExpires: now + 2 ** 40, step: 2 ** 40, totalSteps: 2 ** 50, checkpoints: [{ step: 2 ** 40 }] });
      expect(await s.readEvents(job.id, 2 ** 40)).toEqual([]);
    });

    it('refuses a request id that PostgreSQL text cannot hold, on request_id', async () => {
      const s = await postgres.fresh();
      for (const call of [() => s.createJob({ requestId: 'a\0b', spec: spec() }), () => s.findRequest(null, 'a\0b', null)]) {
        const e = await rejection(call());
        expect(e.kind).toBe('invalid_argument');
        expect(e.violations[0]!.field).toBe('request_id');
      }
    });
  });

  describe('connections', () => {
    it('replaces pooled connections the server dropped', async () => {
      const s = await postgres.fresh();
      const { job } = await s.createJob({ spec: spec() });
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const killed = await postgres.sql(s, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
        expect(killed.length).toBeGreaterThan(0); // the LISTEN connection at least
        // Each dropped connection says so once the server's goodbye arrives; after that none is handed out again.
        const dropped = () => warnings.filter((w) => /idle connection dropped|LISTEN connection/.test(w)).length;
        await vi.waitFor(() => expect(dropped()).toBeGreaterThanOrEqual(killed.length), { timeout: 5000 });
        expect((await s.getJob(job.id))!.id).toBe(job.id);
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('names an unreachable database without its password', async () => {
      const url = 'postgresql://narrowtune:s3cret-pw@localhost/nowhere?host=/nonexistent-socket-dir';
      for (const open of [() => PostgresJobStore.open(url), () => openJobStore({ dataDir: '/unused', databaseUrl: url })]) {
        const e = await rejection(open());
        expect(e.kind).toBe('unavailable');
        expect(e.message).toContain('postgresql://narrowtune:***@localhost/nowhere');
        expect(`${e.message} ${e.stack} ${JSON.stringify(e)}`).not.toContain('s3cret');
      }
    });

    it('has the server end its sessions that stall inside a transaction, releasing their row locks', async () => {
      const s = await postgres.fresh();
      expect(await postgres.sql(s, 'SHOW idle_in_transaction_session_timeout')).toEqual([{ idle_in_transaction_session_timeout: '5s' }]);
    });

    it('reports a closed store as unavailable', async () => {
      const s = await postgres.fresh();
      await s.close();
      await s.close(); // idempotent
      expect((await rejection(s.getJob('x'))).kind).toBe('unavailable');
      expect((await rejection(s.keys.list())).kind).toBe('unavailable');
    });
  });
});

describe('redactDatabaseUrl', () => {
  it('hides passwords in the authority and in parameters, and nothing else', () => {
    expect(redactDatabaseUrl('postgres://u:pw@db.example:5432/nt')).toBe('postgres://u:***@db.example:5432/nt');
    expect(redactDatabaseUrl('postgresql://u:p@ss/w@rd@db/nt')).toBe('postgresql://u:***@db/nt');
    expect(redactDatabaseUrl('postgres://db/nt?user=u&password=pw&sslmode=require')).toBe('postgres://db/nt?user=u&password=***&sslmode=require');
    expect(redactDatabaseUrl('postgres://u@db/nt')).toBe('postgres://u@db/nt');
    expect(redactDatabaseUrl('postgres:///nt?host=/run/postgresql')).toBe('postgres:///nt?host=/run/postgresql');
  });
});
