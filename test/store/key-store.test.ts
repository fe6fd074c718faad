// API keys in the job store's database, tenants on jobs, and the schema migration that added both.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { DB_FILE, JobStore } from '../../src/store/job-store.js';
import { LAST_USED_RESOLUTION_MS } from '../../src/store/key-store.js';
import { MIGRATIONS } from '../../src/store/schema.js';
import { caught, checkpoint, spec, step, storeHarness } from './fixtures.js';

const { memStore, onCleanup, tempDir } = storeHarness();

describe('KeyStore', () => {
  it('shows a secret once, stores only its hash, and checks it', () => {
    const s = memStore(() => 1000);
    const { key, secret } = s.keys.create({ tenant: 'acme', role: 'member' });
    expect(secret).toMatch(new RegExp(`^nt_${key.id}_[A-Za-z0-9_-]{43}$`));
    expect(key).toMatchObject({ tenant: 'acme', role: 'member', createTime: 1000, expireTime: null, revokeTime: null, lastUsedTime: null, modelRoots: [], dataRoots: [] });
    const raw = (s as unknown as { db: Database.Database }).db.prepare('SELECT * FROM api_keys').all() as Record<string, unknown>[];
    expect(JSON.stringify(raw)).not.toContain(secret.split('_').slice(2).join('_'));
    expect(s.keys.check(secret)).toMatchObject({ ok: true, key: { id: key.id, lastUsedTime: 1000 } });
  });

  it('tells unknown, malformed, wrong-secret, expired and revoked keys apart only when the secret matches', () => {
    let t = 1000;
    const s = memStore(() => t);
    const { key, secret } = s.keys.create({ tenant: 'acme', role: 'reader', expireTime: 5000 });
    const wrong = `nt_${key.id}_${'A'.repeat(43)}`;
    expect(s.keys.check('hello')).toEqual({ ok: false, reason: 'malformed' });
    expect(s.keys.check(`nt_aaaaaaaaaaaa_${'A'.repeat(43)}`)).toEqual({ ok: false, reason: 'unknown' });
    expect(s.keys.check(wrong)).toEqual({ ok: false, reason: 'unknown' });
    t = 5000;
    expect(s.keys.check(secret)).toMatchObject({ ok: false, reason: 'expired' });
    expect(s.keys.check(wrong)).toEqual({ ok: false, reason: 'unknown' });
    const other = s.keys.create({ tenant: 'acme', role: 'admin' });
    t = 6000;
    expect(s.keys.revoke(other.key.id).revokeTime).toBe(6000);
    t = 7000;
    expect(s.keys.revoke(other.key.id).revokeTime).toBe(6000); // the first revocation stands
    expect(s.keys.check(other.secret)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(caught(() => s.keys.revoke('nope')).kind).toBe('not_found');
  });

  it('records the last use at most once per resolution', () => {
    let t = 1000;
    const s = memStore(() => t);
    const { key, secret } = s.keys.create({ tenant: 'acme', role: 'member' });
    s.keys.check(secret);
    t += LAST_USED_RESOLUTION_MS - 1;
    s.keys.check(secret);
    expect(s.keys.get(key.id)!.lastUsedTime).toBe(1000);
    t += 1;
    s.keys.check(secret);
    expect(s.keys.get(key.id)!.lastUsedTime).toBe(t);
  });

  it('refuses bad tenant names and roles', () => {
    const s = memStore();
    expect(caught(() => s.keys.create({ tenant: 'a b', role: 'member' })).violations[0]!.field).toBe('tenant');
    expect(caught(() => s.keys.create({ tenant: 'acme', role: 'owner' as 'admin' })).violations[0]!.field).toBe('role');
  });
});

describe('jobs of tenants', () => {
  it('scopes request ids per tenant and refuses one reused with a different request', () => {
    const s = memStore();
    const a = s.createJob({ tenant: 'acme', creatorKeyId: 'k1', requestId: 'r1', requestHash: 'h1', spec: spec('a') });
    const b = s.createJob({ tenant: 'beta', creatorKeyId: 'k2', requestId: 'r1', requestHash: 'h1', spec: spec('b') });
    const none = s.createJob({ requestId: 'r1', requestHash: 'h1', spec: spec('n') });
    expect(new Set([a.job.id, b.job.id, none.job.id]).size).toBe(3);
    expect(a.job).toMatchObject({ tenant: 'acme', creatorKeyId: 'k1' });
    expect(none.job).toMatchObject({ tenant: null, creatorKeyId: null });

    expect(s.createJob({ tenant: 'acme', requestId: 'r1', requestHash: 'h1', spec: spec('a') })).toMatchObject({ created: false, job: { id: a.job.id } });
    expect(s.findRequest('acme', 'r1', 'h1')!.id).toBe(a.job.id);
    expect(s.findRequest('acme', 'r2', 'h1')).toBeNull();
    for (const fn of [() => s.createJob({ tenant: 'acme', requestId: 'r1', requestHash: 'h2', spec: spec('a') }), () => s.findRequest('acme', 'r1', 'h2')]) {
      const e = caught(fn);
      expect(e.kind).toBe('already_exists');
      expect(e.message).toContain(`jobs/${a.job.id}`);
      expect(e.violations[0]!.field).toBe('request_id');
    }
  });

  it('lists and counts one tenant, with page tokens bound to the filter', () => {
    const s = memStore();
    for (const t of ['acme', 'beta', 'acme', null, 'acme']) s.createJob({ tenant: t, spec: spec() });
    expect(s.countInStates(['PENDING'])).toBe(5);
    expect(s.countInStates(['PENDING'], 'acme')).toBe(3);
    const first = s.listJobs({ tenant: 'acme', pageSize: 2 });
    expect(first.jobs.map((j) => j.tenant)).toEqual(['acme', 'acme']);
    const rest = s.listJobs({ tenant: 'acme', pageSize: 2, pageToken: first.nextPageToken });
    expect(rest.jobs.map((j) => j.tenant)).toEqual(['acme']);
    expect(rest.nextPageToken).toBe('');
    expect(caught(() => s.listJobs({ tenant: 'beta', pageToken: first.nextPageToken })).kind).toBe('invalid_argument');
    expect(s.listJobs({}).jobs).toHaveLength(5);
  });

  it('records who cancelled and when, keeping the first request', () => {
    let t = 1000;
    const s = memStore(() => t);
    const pending = s.createJob({ tenant: 'acme', spec: spec() }).job;
    t = 2000;
    expect(s.requestCancel(pending.id, 'k1')).toMatchObject({ state: 'CANCELLED', cancelRequestedBy: 'k1', cancelTime: 2000, endTime: 2000 });
    const running = s.createJob({ tenant: 'acme', spec: spec() }).job;
    s.markRunning(running.id);
    t = 3000;
    s.requestCancel(running.id, 'k2');
    t = 4000;
    expect(s.requestCancel(running.id, 'k3')).toMatchObject({ state: 'RUNNING', cancelRequested: true, cancelRequestedBy: 'k2', cancelTime: 3000 });
    const open = s.createJob({ spec: spec() }).job;
    expect(s.getJob(open.id)).toMatchObject({ cancelRequestedBy: null, cancelTime: null });
  });
});

describe('schema migration 3 (tenants, keys)', () => {
  it('keeps every job, checkpoint, event and the queue order of a version-2 database', () => {
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

    const s = JobStore.open(dir);
    onCleanup(() => s.close());
    const job = s.getJob('oldjob')!;
    expect(job).toMatchObject({ tenant: null, creatorKeyId: null, requestId: 'req-1', state: 'RUNNING', queueOrder: 1, cancelRequestedBy: null });
    expect(job.checkpoints).toEqual([{ step: 3, path: '/ck/3', final: false, createTime: 150 }]);
    expect(s.readEvents('oldjob', 0)).toHaveLength(1);
    // An old job has no request hash: a retry with its request id returns it, whatever the hash.
    expect(s.createJob({ requestId: 'req-1', requestHash: 'any', spec: spec('m') })).toMatchObject({ created: false, job: { id: 'oldjob' } });
    // queue_order is never reused, even for the deleted newest job.
    expect(s.createJob({ spec: spec('m') }).job.queueOrder).toBe(3);
    expect(s.keys.list()).toEqual([]);
    // The cascade still works after the rebuild.
    (s as unknown as { db: Database.Database }).db.prepare(`DELETE FROM jobs WHERE id = 'oldjob'`).run();
    expect(s.readEvents('oldjob', 0)).toEqual([]);
    expect(s.appendEvent(s.createJob({ spec: spec() }).job.id, checkpoint(1)).sequence).toBe(1);
  });
});
