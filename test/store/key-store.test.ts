// API keys in the job store's database, tenants on jobs, and the SQLite schema migrations that added them and leases.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { DB_FILE } from '../../src/store/job-store.js';
import { LAST_USED_RESOLUTION_MS } from '../../src/store/key-store.js';
import { MIGRATIONS } from '../../src/store/schema.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { caught, checkpoint, claim, spec, startJob, step, tempDirs } from './fixtures.js';
import { describeStores, storeFactories } from './stores.js';

const factories = storeFactories();
const tempDir = tempDirs();

describeStores(factories, (f) => {
  describe('KeyStore', () => {
    it('shows a secret once and checks it', async () => {
      const s = await f.fresh({ now: () => 1000 });
      const { key, secret } = await s.keys.create({ tenant: 'acme', role: 'member' });
      expect(secret).toMatch(new RegExp(`^nt_${key.id}_[A-Za-z0-9_-]{43}$`));
      expect(key).toMatchObject({ tenant: 'acme', role: 'member', createTime: 1000, expireTime: null, revokeTime: null, lastUsedTime: null, modelRoots: [], dataRoots: [] });
      expect(await s.keys.check(secret)).toMatchObject({ ok: true, key: { id: key.id, lastUsedTime: 1000 } });
    });

    it('tells unknown, malformed, wrong-secret, expired and revoked keys apart only when the secret matches', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const { key, secret } = await s.keys.create({ tenant: 'acme', role: 'reader', expireTime: 5000 });
      const wrong = `nt_${key.id}_${'A'.repeat(43)}`;
      expect(await s.keys.check('hello')).toEqual({ ok: false, reason: 'malformed' });
      expect(await s.keys.check(`nt_aaaaaaaaaaaa_${'A'.repeat(43)}`)).toEqual({ ok: false, reason: 'unknown' });
      expect(await s.keys.check(wrong)).toEqual({ ok: false, reason: 'unknown' });
      t = 5000;
      expect(await s.keys.check(secret)).toMatchObject({ ok: false, reason: 'expired' });
      expect(await s.keys.check(wrong)).toEqual({ ok: false, reason: 'unknown' });
      const other = await s.keys.create({ tenant: 'acme', role: 'admin' });
      t = 6000;
      expect((await s.keys.revoke(other.key.id)).revokeTime).toBe(6000);
      t = 7000;
      expect((await s.keys.revoke(other.key.id)).revokeTime).toBe(6000); // the first revocation stands
      expect(await s.keys.check(other.secret)).toMatchObject({ ok: false, reason: 'revoked' });
      expect((await caught(() => s.keys.revoke('nope'))).kind).toBe('not_found');
    });

    it('records the last use at most once per resolution', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const { key, secret } = await s.keys.create({ tenant: 'acme', role: 'member' });
      await s.keys.check(secret);
      t += LAST_USED_RESOLUTION_MS - 1;
      await s.keys.check(secret);
      expect((await s.keys.get(key.id))!.lastUsedTime).toBe(1000);
      t += 1;
      await s.keys.check(secret);
      expect((await s.keys.get(key.id))!.lastUsedTime).toBe(t);
    });

    it('refuses bad tenant names and roles', async () => {
      const s = await f.fresh();
      expect((await caught(() => s.keys.create({ tenant: 'a b', role: 'member' }))).violations[0]!.field).toBe('tenant');
      expect((await caught(() => s.keys.create({ tenant: 'acme', role: 'owner' as 'admin' }))).violations[0]!.field).toBe('role');
    });
  });

  describe('jobs of tenants', () => {
    it('scopes request ids per tenant and refuses one reused with a different request', async () => {
      const s = await f.fresh();
      const a = await s.createJob({ tenant: 'acme', creatorKeyId: 'k1', requestId: 'r1', requestHash: 'h1', spec: spec('a') });
      const b = await s.createJob({ tenant: 'beta', creatorKeyId: 'k2', requestId: 'r1', requestHash: 'h1', spec: spec('b') });
      const none = await s.createJob({ requestId: 'r1', requestHash: 'h1', spec: spec('n') });
      expect(new Set([a.job.id, b.job.id, none.job.id]).size).toBe(3);
      expect(a.job).toMatchObject({ tenant: 'acme', creatorKeyId: 'k1' });
      expect(none.job).toMatchObject({ tenant: null, creatorKeyId: null });

      expect(await s.createJob({ tenant: 'acme', requestId: 'r1', requestHash: 'h1', spec: spec('a') })).toMatchObject({ created: false, job: { id: a.job.id } });
      expect((await s.findRequest('acme', 'r1', 'h1'))!.id).toBe(a.job.id);
      expect(await s.findRequest('acme', 'r2', 'h1')).toBeNull();
      for (const fn of [() => s.createJob({ tenant: 'acme', requestId: 'r1', requestHash: 'h2', spec: spec('a') }), () => s.findRequest('acme', 'r1', 'h2')]) {
        const e = await caught(fn);
        expect(e.kind).toBe('already_exists');
        expect(e.message).toContain(`jobs/${a.job.id}`);
        expect(e.violations[0]!.field).toBe('request_id');
      }
    });

    it('lists and counts one tenant, with page tokens bound to the filter', async () => {
      const s = await f.fresh();
      for (const t of ['acme', 'beta', 'acme', null, 'acme']) await s.createJob({ tenant: t, spec: spec() });
      expect(await s.countInStates(['PENDING'])).toBe(5);
      expect(await s.countInStates(['PENDING'], 'acme')).toBe(3);
      const first = await s.listJobs({ tenant: 'acme', pageSize: 2 });
      expect(first.jobs.map((j) => j.tenant)).toEqual(['acme', 'acme']);
      const rest = await s.listJobs({ tenant: 'acme', pageSize: 2, pageToken: first.nextPageToken });
      expect(rest.jobs.map((j) => j.tenant)).toEqual(['acme']);
      expect(rest.nextPageToken).toBe('');
      expect((await caught(() => s.listJobs({ tenant: 'beta', pageToken: first.nextPageToken }))).kind).toBe('invalid_argument');
      expect((await s.listJobs({})).jobs).toHaveLength(5);
    });

    it('records who cancelled and when, keeping the first request', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const pending = (await s.createJob({ tenant: 'acme', spec: spec() })).job;
      t = 2000;
      expect(await s.requestCancel(pending.id, 'k1')).toMatchObject({ state: 'CANCELLED', cancelRequestedBy: 'k1', cancelTime: 2000, endTime: 2000 });
      const running = (await startJob(s, { tenant: 'acme' })).job;
      t = 3000;
      await s.requestCancel(running.id, 'k2');
      t = 4000;
      expect(await s.requestCancel(running.id, 'k3')).toMatchObject({ state: 'RUNNING', cancelRequested: true, cancelRequestedBy: 'k2', cancelTime: 3000 });
      const open = (await s.createJob({ spec: spec() })).job;
      expect(await s.getJob(open.id)).toMatchObject({ cancelRequestedBy: null, cancelTime: null });
    });
  });
});

describe('SQLite schema migrations', () => {
  it('3 (tenants, keys) keeps every job, checkpoint, event and the queue order of a version-2 database', async () => {
    const dir = tempDir('narrowtune-migrate-');
    // A database as version 2 left it: two jobs (the newer one deleted by hand), a checkpoint and events.
    const db = new Database(join(dir, DB_FILE));
    db.pragma('foreign_keys = ON');
    for (const m of MIGRATIONS.slice(0, 2)) db.exec(m);
    db.pragma('user_version = 2');
    const insert = db.prepare(`INSERT INTO jobs (id, request_id, state, spec, create_time) VALUES (?, ?, 'RUNNING', ?, ?)`);
    insert.run('oldjob', 'req-1', JSON.stringify(spec('m')), 100);
    insert.run('gonejob', null, JSON.stringify(spec('m')), 200);
    db.prepare(`DELETE FROM jobs WHERE id = 'gonejob'`).run();
    db.prepare(`INSERT INTO checkpoints (job_id, step, path, final, create_time) VALUES ('oldjob', 3, '/ck/3', 0, 150)`).run();
    db.prepare(`INSERT INTO events (job_id, sequence, time, type, payload) VALUES ('oldjob', 1, 120, 'step', ?)`).run(JSON.stringify({ ...step(1), type: undefined }));
    db.close();

    const s = SqliteJobStore.open(dir);
    try {
      await checkVersion2(s);
    } finally {
      await s.close();
    }
  });

  async function checkVersion2(s: SqliteJobStore): Promise<void> {
    const job = (await s.getJob('oldjob'))!;
    expect(job).toMatchObject({ tenant: null, creatorKeyId: null, requestId: 'req-1', state: 'RUNNING', queueOrder: 1, cancelRequestedBy: null });
    expect(job.checkpoints).toEqual([{ step: 3, path: '/ck/3', final: false, createTime: 150 }]);
    expect(await s.readEvents('oldjob', 0)).toHaveLength(1);
    // An old job has no request hash: a retry with its request id returns it, whatever the hash.
    expect(await s.createJob({ requestId: 'req-1', requestHash: 'any', spec: spec('m') })).toMatchObject({ created: false, job: { id: 'oldjob' } });
    // queue_order is never reused, even for the deleted newest job.
    expect((await s.createJob({ spec: spec('m') })).job.queueOrder).toBe(3);
    expect(await s.keys.list()).toEqual([]);
    // The cascade still works after the rebuild.
    (s as unknown as { db: Database.Database }).db.prepare(`DELETE FROM jobs WHERE id = 'oldjob'`).run();
    expect(await s.readEvents('oldjob', 0)).toEqual([]);
    // With oldjob deleted, the next claim is the job created above, and its writes work.
    const lease = await claim(s);
    expect((await s.appendEvent(lease, checkpoint(1))).sequence).toBe(1);
  }

  it('4 (leases) makes a job a pre-lease server left RUNNING claimable at once, as epoch 2', async () => {
    const dir = tempDir('narrowtune-migrate-');
    const db = new Database(join(dir, DB_FILE));
    for (const m of MIGRATIONS.slice(0, 3)) db.exec(m);
    db.pragma('user_version = 3');
    const insert = db.prepare(`INSERT INTO jobs (id, state, spec, create_time, start_time, step) VALUES (?, ?, ?, 100, ?, ?)`);
    insert.run('wasrunning', 'RUNNING', JSON.stringify(spec('m')), 110, 7);
    insert.run('waspending', 'PENDING', JSON.stringify(spec('m')), null, 0);
    db.prepare(`INSERT INTO checkpoints (job_id, step, path, final, create_time) VALUES ('wasrunning', 6, '/old/checkpoints/step-6', 0, 150)`).run();
    db.close();

    const s = SqliteJobStore.open(dir);
    try {
      expect(await s.getJob('wasrunning')).toMatchObject({ state: 'RUNNING', leaseOwner: null, leaseExpires: 0, leaseEpoch: 1 });
      expect(await s.getJob('waspending')).toMatchObject({ state: 'PENDING', leaseOwner: null, leaseExpires: null, leaseEpoch: 0 });
      const lease = await claim(s);
      expect(lease).toMatchObject({ jobId: 'wasrunning', epoch: 2 });
      expect(lease.job).toMatchObject({ startTime: 110, step: 7 });
      expect((await claim(s)).jobId).toBe('waspending');
    } finally {
      await s.close();
    }
  });

  it('stores only the hash of a key secret', async () => {
    const s = SqliteJobStore.openInMemory();
    try {
      const { secret } = await s.keys.create({ tenant: 'acme', role: 'member' });
      const raw = (s as unknown as { db: Database.Database }).db.prepare('SELECT * FROM api_keys').all() as Record<string, unknown>[];
      expect(JSON.stringify(raw)).not.toContain(secret.split('_').slice(2).join('_'));
    } finally {
      await s.close();
    }
  });
});
