// The JobStore contract, against every store implementation.
import { describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/store/job-events.js';
import type { JobRecord, JobStore } from '../../src/store/job-store.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { caught, checkpoint, claim, LEASE_MS, spec, startJob, step, tempDirs } from './fixtures.js';
import { describeStores, storeFactories } from './stores.js';

const factories = storeFactories();
const tempDir = tempDirs();

describeStores(factories, (f) => {
  describe('createJob', () => {
    it('creates a PENDING job with a url-safe id and returns the parsed spec', async () => {
      const s = await f.fresh();
      const { job, created } = await s.createJob({ spec: spec('m') });
      expect(created).toBe(true);
      expect(job.id).toMatch(/^[a-z2-7]{12}$/);
      expect(job).toMatchObject({ state: 'PENDING', requestId: null, step: 0, totalSteps: 0, trainable: [], error: null });
      expect(job).toMatchObject({ cancelRequested: false, checkpoints: [], outputPath: null, startTime: null, endTime: null });
      expect(job).toMatchObject({ leaseOwner: null, leaseExpires: null, leaseEpoch: 0 });
      expect(job.spec).toEqual(spec('m'));
      expect(await s.getJob(job.id)).toEqual(job);
      expect(await s.getJob('nope')).toBeNull();
    });

    it('returns the existing job for a repeated requestId', async () => {
      const s = await f.fresh();
      const a = await s.createJob({ requestId: 'r1', spec: spec('a') });
      const b = await s.createJob({ requestId: 'r1', spec: spec('b') });
      expect(a.created).toBe(true);
      expect(b.created).toBe(false);
      expect(b.job).toEqual(a.job);
      // An empty request id is proto3's "unset", not a key.
      expect((await s.createJob({ requestId: '', spec: spec() })).created).toBe(true);
      expect((await s.createJob({ requestId: '', spec: spec() })).created).toBe(true);
      expect(await s.countInStates(['PENDING'])).toBe(3);
    });

    it('counts queue limits in the insert, so concurrent creates on two stores never overshoot', async () => {
      const db = await f.newDatabase();
      const [a, b] = [await f.open(db), await f.open(db)];
      const limits = { maxPending: 2, tenantMaxPending: 1 };
      const tries = Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).createJob({ tenant: i < 6 ? 'acme' : 'zeta', spec: spec(), limits }));
      const results = await Promise.allSettled(tries);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2); // one per tenant, two in all
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as { kind: string }] : []));
      expect(refused.every((e) => e.kind === 'resource_exhausted')).toBe(true);
      expect(await a.countInStates(['PENDING'], 'acme')).toBe(1);
      expect(await a.countInStates(['PENDING'], 'zeta')).toBe(1);
      const full = await caught(() => a.createJob({ tenant: 'new', spec: spec(), limits }));
      expect(full.message).toMatch(/queue is full \(2 pending jobs\)/);
      // A retry of an accepted request is answered before the limits.
      const kept = await a.createJob({ tenant: 'acme', requestId: 'r', spec: spec() });
      expect(kept.created).toBe(true);
      expect((await b.createJob({ tenant: 'acme', requestId: 'r', spec: spec(), limits })).job.id).toBe(kept.job.id);
    });

    it('keeps queueOrder increasing', async () => {
      const s = await f.fresh();
      const orders: number[] = [];
      for (let i = 0; i < 3; i++) orders.push((await s.createJob({ spec: spec() })).job.queueOrder);
      expect(orders[1]! > orders[0]! && orders[2]! > orders[1]!).toBe(true);
    });
  });

  describe('a database opened again', () => {
    it('keeps jobs, idempotency, leases, checkpoints and events', async () => {
      const db = await f.newDatabase();
      let s = await f.open(db);
      const { job } = await s.createJob({ requestId: 'req-7', spec: spec('x1') });
      const lease = await claim(s);
      await s.updateProgress(lease, { step: 3, totalSteps: 10, trainable: ['layers.0.mlp.up_proj.weight'] });
      await s.addCheckpoint(lease, { step: 3, path: '/ck/3', final: false });
      await s.appendEvent(lease, step(1, 1.5));
      await s.appendEvent(lease, step(2, 1.25));
      await s.close();

      s = await f.open(db);
      const again = await s.createJob({ requestId: 'req-7', spec: spec('x2') });
      expect(again.created).toBe(false);
      expect(again.job).toMatchObject({ id: job.id, state: 'RUNNING', step: 3, totalSteps: 10, trainable: ['layers.0.mlp.up_proj.weight'], spec: spec('x1') });
      expect(again.job).toMatchObject({ leaseOwner: 'w1', leaseEpoch: 1 });
      expect(again.job.checkpoints).toEqual([{ step: 3, path: '/ck/3', final: false, createTime: expect.any(Number) }]);
      expect((await s.readEvents(job.id, 0)).map((e) => e.event)).toEqual([step(1, 1.5), step(2, 1.25)]);
      // The lease outlives the process that took it: the worker writes on through a new connection.
      expect((await s.appendEvent(lease, step(3))).sequence).toBe(3);
      expect(await s.countInStates(['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'])).toBe(1);
    });
  });

  describe('state transitions', () => {
    it('runs PENDING → RUNNING → SUCCEEDED with times and output', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const { job } = await s.createJob({ spec: spec() });
      t = 2000;
      const lease = await claim(s, 'w1', 500);
      expect(lease).toMatchObject({ jobId: job.id, workerId: 'w1', epoch: 1 });
      expect(lease.job).toMatchObject({ state: 'RUNNING', startTime: 2000, leaseOwner: 'w1', leaseExpires: 2500, leaseEpoch: 1 });
      await s.updateProgress(lease, { totalSteps: 5 });
      t = 4000;
      const done = await s.finish(lease, 'SUCCEEDED', { outputPath: '/out/model' });
      expect(done).toMatchObject({ state: 'SUCCEEDED', createTime: 1000, startTime: 2000, endTime: 4000, outputPath: '/out/model', error: null, totalSteps: 5 });
      // Finishing ends the lease but keeps its epoch, for the record.
      expect(done).toMatchObject({ leaseOwner: null, leaseExpires: null, leaseEpoch: 1 });
    });

    it('records the error of a failed job', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      const error = { kind: 'invalid_argument', message: 'data.jsonl:3: bad line', violations: [{ field: 'data', description: 'data.jsonl:3: bad line' }] };
      expect(await s.finish(lease, 'FAILED', { error })).toMatchObject({ state: 'FAILED', error });
    });

    it('refuses to leave a resting state, naming it', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      await s.finish(lease, 'SUCCEEDED');
      for (const fn of [
        () => s.finish(lease, 'FAILED'),
        () => s.requestCancel(lease.jobId),
        () => s.updateProgress(lease, { step: 1 }),
        () => s.addCheckpoint(lease, { step: 1, path: 'p', final: false }),
        () => s.appendEvent(lease, step(1)),
      ]) {
        const e = await caught(fn);
        expect(e.kind).toBe('failed_precondition');
        expect(e.message).toBe(`job jobs/${lease.jobId} is already SUCCEEDED`);
      }
      expect(await s.releaseLease(lease)).toBe(false);
      expect(await s.renewLease(lease, 1000)).toBe(false);
      expect(await s.claimJob({ workerId: 'w2', leaseMs: 1000 })).toBeNull();
    });

    it('refuses a finish into a state that is not resting', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      expect((await caught(() => s.finish(lease, 'RUNNING' as 'FAILED'))).violations[0]!.field).toBe('state');
      expect((await s.getJob(lease.jobId))!.state).toBe('RUNNING');
    });

    it('cancels a PENDING job at once, with its closing event, and flags a RUNNING one for its worker', async () => {
      const s = await f.fresh();
      const pending = (await s.createJob({ spec: spec() })).job;
      expect(await s.requestCancel(pending.id)).toMatchObject({ state: 'CANCELLED', cancelRequested: true, endTime: expect.any(Number) });
      expect((await s.readEvents(pending.id, 0)).map((e) => e.event)).toEqual([{ type: 'finished', state: 'CANCELLED' }]);
      expect(await s.claimJob({ workerId: 'w1', leaseMs: 1000 })).toBeNull();

      const lease = await startJob(s);
      expect(await s.requestCancel(lease.jobId)).toMatchObject({ state: 'RUNNING', cancelRequested: true, endTime: null, leaseOwner: 'w1' });
      expect((await s.requestCancel(lease.jobId)).cancelRequested).toBe(true); // asking twice is fine
      expect(await s.readEvents(lease.jobId, 0)).toEqual([]); // the worker writes the running job's last event
      expect((await s.finish(lease, 'CANCELLED')).state).toBe('CANCELLED');
      expect((await caught(() => s.requestCancel(lease.jobId))).message).toBe(`job jobs/${lease.jobId} is already CANCELLED`);
    });

    it('says not_found for unknown jobs', async () => {
      const s = await f.fresh();
      const ghost = { jobId: 'missing', workerId: 'w1', epoch: 1, job: null as unknown as JobRecord };
      for (const fn of [
        () => s.requestCancel('missing'),
        () => s.finish(ghost, 'FAILED'),
        () => s.updateProgress(ghost, {}),
        () => s.appendEvent(ghost, step(1)),
        () => s.addCheckpoint(ghost, { step: 1, path: 'p', final: false }),
      ]) {
        expect((await caught(fn)).kind).toBe('not_found');
      }
      expect(await s.renewLease(ghost, 1000)).toBe(false);
      expect(await s.releaseLease(ghost)).toBe(false);
      expect(await s.expireLease('missing', 1)).toBe(false);
    });

    it('upserts checkpoints by step, ascending', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      await s.addCheckpoint(lease, { step: 20, path: '/ck/20', final: false });
      await s.addCheckpoint(lease, { step: 10, path: '/ck/10', final: false });
      await s.addCheckpoint(lease, { step: 20, path: '/ck/20b', final: true });
      expect((await s.getJob(lease.jobId))!.checkpoints.map(({ step, path, final }) => ({ step, path, final }))).toEqual([
        { step: 10, path: '/ck/10', final: false },
        { step: 20, path: '/ck/20b', final: true },
      ]);
    });

    it('notifies subscribers of state changes and events, until unsubscribed', async () => {
      const s = await f.fresh();
      const { job } = await s.createJob({ spec: spec() });
      const seen: string[] = [];
      const off = s.subscribe(job.id, (n) => seen.push(n.kind === 'event' ? `event:${n.event.sequence}` : `state:${n.job.state}`));
      const lease = await claim(s);
      await s.appendEvent(lease, step(1));
      await s.requestCancel(job.id);
      await expect.poll(() => seen).toEqual(['state:RUNNING', 'event:1', 'state:RUNNING']);
      off();
      await s.finish(lease, 'CANCELLED');
      await new Promise((r) => setTimeout(r, 50));
      expect(seen).toHaveLength(3);
    });
  });

  describe('leases', () => {
    it('claims FIFO, each job once, and nothing when the queue is empty', async () => {
      const s = await f.fresh();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await s.createJob({ spec: spec(`m${i}`) })).job.id);
      const claims = await Promise.all([1, 2, 3, 4].map((w) => s.claimJob({ workerId: `w${w}`, leaseMs: 60_000 })));
      const taken = claims.flatMap((l) => (l ? [l.jobId] : []));
      expect(taken.sort()).toEqual([...ids].sort());
      expect(claims.filter((l) => l === null)).toHaveLength(1);
      // Sequential claims go in queue order.
      const t = await f.fresh();
      const order: string[] = [];
      for (let i = 0; i < 3; i++) order.push((await t.createJob({ spec: spec() })).job.id);
      expect([(await claim(t)).jobId, (await claim(t)).jobId, (await claim(t)).jobId]).toEqual(order);
    });

    it('two stores on one database never claim the same job', async () => {
      const db = await f.newDatabase();
      const [a, b] = [await f.open(db), await f.open(db)];
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push((await a.createJob({ spec: spec() })).job.id);
      const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).claimJob({ workerId: `w${i}`, leaseMs: 60_000 })));
      const taken = claims.flatMap((l) => (l ? [l.jobId] : []));
      expect(taken).toHaveLength(6);
      expect(new Set(taken)).toEqual(new Set(ids));
    });

    it('reclaims an expired lease with the next epoch, and fences the old holder', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const old = await startJob(s);
      await s.appendEvent(old, step(1));
      await s.addCheckpoint(old, { step: 1, path: '/a1/ck/1', final: false });
      expect(await s.claimJob({ workerId: 'w2', leaseMs: LEASE_MS })).toBeNull(); // still held
      t += 60_000; // the holder stopped renewing
      // Expired but not yet taken: nobody else trains it, so the holder may still renew and write.
      expect(await s.renewLease(old, LEASE_MS)).toBe(true);
      t += 60_000 + 1;
      const next = await claim(s, 'w2');
      expect(next).toMatchObject({ jobId: old.jobId, workerId: 'w2', epoch: 2 });
      expect(next.job).toMatchObject({ state: 'RUNNING', leaseOwner: 'w2', leaseEpoch: 2, startTime: 1000, step: 0 });
      expect(next.job.checkpoints.map((c) => c.path)).toEqual(['/a1/ck/1']);

      for (const fn of [
        () => s.updateProgress(old, { step: 2 }),
        () => s.addCheckpoint(old, { step: 2, path: '/a1/ck/2', final: false }),
        () => s.appendEvent(old, step(2)),
        () => s.finish(old, 'SUCCEEDED', { outputPath: '/a1/model' }),
      ]) {
        const e = await caught(fn);
        expect(e.kind).toBe('aborted');
        expect(e.message).toMatch(/lease lost/);
      }
      expect(await s.renewLease(old, LEASE_MS)).toBe(false);
      expect(await s.releaseLease(old)).toBe(false);
      // Nothing of the stale worker landed; the new holder continues the sequence.
      expect((await s.appendEvent(next, step(2))).sequence).toBe(2);
      expect((await s.getJob(old.jobId))!.checkpoints.map((c) => c.path)).toEqual(['/a1/ck/1']);
      expect(await s.finish(next, 'SUCCEEDED')).toMatchObject({ state: 'SUCCEEDED', leaseEpoch: 2 });
    });

    it('renewal pushes the expiry out, so a live holder keeps its job', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const lease = await startJob(s);
      t += 40_000;
      expect(await s.renewLease(lease, LEASE_MS)).toBe(true);
      expect((await s.getJob(lease.jobId))!.leaseExpires).toBe(t + LEASE_MS);
      t += 40_000; // past the first expiry, not the renewed one
      expect(await s.claimJob({ workerId: 'w2', leaseMs: LEASE_MS })).toBeNull();
      expect((await caught(() => s.renewLease(lease, 0))).kind).toBe('invalid_argument');
    });

    it('release puts the job back first in line, for any worker, and fences the releaser', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      const later = (await s.createJob({ spec: spec('later') })).job;
      await s.updateProgress(lease, { step: 4 });
      expect(await s.releaseLease(lease)).toBe(true);
      expect(await s.getJob(lease.jobId)).toMatchObject({ state: 'PENDING', leaseOwner: null, leaseExpires: null, leaseEpoch: 1, step: 4 });
      expect((await caught(() => s.appendEvent(lease, step(5)))).kind).toBe('aborted');
      expect(await s.releaseLease(lease)).toBe(false);
      const next = await claim(s, 'w2');
      expect(next).toMatchObject({ jobId: lease.jobId, epoch: 2 });
      expect((await claim(s, 'w3')).jobId).toBe(later.id);
    });

    it('expireLease lets the next claim take a job at once, only for the epoch given', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      expect(await s.expireLease(lease.jobId, lease.epoch + 1)).toBe(false);
      expect(await s.claimJob({ workerId: 'w2', leaseMs: LEASE_MS })).toBeNull();
      expect(await s.expireLease(lease.jobId, lease.epoch)).toBe(true);
      expect((await s.getJob(lease.jobId))!.leaseEpoch).toBe(1);
      expect(await claim(s, 'w2')).toMatchObject({ jobId: lease.jobId, epoch: 2 });
      expect((await caught(() => s.updateProgress(lease, { step: 1 }))).kind).toBe('aborted');
    });

    it('claims a job whose cancel was asked while its lease lapsed, for the worker to finish', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const old = await startJob(s);
      await s.requestCancel(old.jobId, 'k1');
      t += LEASE_MS + 1;
      const next = await claim(s, 'w2');
      expect(next.job).toMatchObject({ cancelRequested: true, cancelRequestedBy: 'k1', state: 'RUNNING' });
      expect((await s.finish(next, 'CANCELLED')).state).toBe('CANCELLED');
    });

    it('holds a tenant to tenantMaxRunning live leases across workers; the others and untenanted jobs go first', async () => {
      let t = 1000;
      const s = await f.fresh({ now: () => t });
      const make = async (tenant: string | null) => (await s.createJob({ tenant, spec: spec() })).job.id;
      const [a1, a2, b1, n1] = [await make('acme'), await make('acme'), await make('beta'), await make(null)];
      const take = async (w: string) => (await s.claimJob({ workerId: w, leaseMs: LEASE_MS, tenantMaxRunning: 1 }))?.jobId ?? null;
      expect([await take('w1'), await take('w2'), await take('w3'), await take('w4')]).toEqual([a1, b1, n1, null]);
      // Without the limit acme's second job is next.
      const unlimited = await s.claimJob({ workerId: 'w5', leaseMs: LEASE_MS });
      expect(unlimited?.jobId).toBe(a2);
      await s.releaseLease(unlimited!);
      // An expired lease no longer counts: acme's first job is reclaimable, and it comes first in line.
      t += LEASE_MS + 1;
      expect(await take('w6')).toBe(a1);
      expect(await take('w7')).toBe(b1);
      expect(await take('w8')).toBe(n1);
      expect(await take('w9')).toBeNull(); // a1 is live again, so a2 waits
    });
  });

  describe('listJobs', () => {
    async function seed(s: JobStore, n: number): Promise<JobRecord[]> {
      const jobs: JobRecord[] = [];
      for (let i = 0; i < n; i++) jobs.push((await s.createJob({ spec: spec(`m${i}`) })).job);
      return jobs;
    }

    it('pages newest first, covering every job exactly once', async () => {
      let t = 0;
      // Two jobs per millisecond so ties on createTime must be broken by queueOrder.
      const s = await f.fresh({ now: () => Math.floor(t++ / 2) });
      const jobs = await seed(s, 7);
      const seen: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const page = await s.listJobs({ pageSize: 2, pageToken: token });
        expect(page.jobs.length).toBeLessThanOrEqual(2);
        seen.push(...page.jobs.map((j) => j.id));
        token = page.nextPageToken;
        pages++;
      } while (token);
      expect(pages).toBe(4);
      expect(seen).toEqual(jobs.map((j) => j.id).reverse());
    });

    it('filters by state and keeps the filter across pages', async () => {
      const s = await f.fresh();
      const jobs = await seed(s, 6);
      // Claims go FIFO: take all six, then give back the odd ones.
      const leases = [];
      for (const j of jobs) {
        leases.push(await claim(s));
        expect(leases.at(-1)!.jobId).toBe(j.id);
      }
      for (const l of leases.filter((_, i) => i % 2 === 1)) await s.releaseLease(l);
      const first = await s.listJobs({ pageSize: 2, states: ['RUNNING'] });
      expect(first.jobs.every((j) => j.state === 'RUNNING')).toBe(true);
      const second = await s.listJobs({ pageSize: 2, states: ['RUNNING'], pageToken: first.nextPageToken });
      expect(second.nextPageToken).toBe('');
      expect([...first.jobs, ...second.jobs].map((j) => j.id)).toEqual([jobs[4]!.id, jobs[2]!.id, jobs[0]!.id]);
      const e = await caught(() => s.listJobs({ pageSize: 2, states: ['PENDING'], pageToken: first.nextPageToken }));
      expect(e.violations[0]!.field).toBe('page_token');
      expect((await s.jobsInStates(['PENDING'])).map((j) => j.id)).toEqual([jobs[1]!.id, jobs[3]!.id, jobs[5]!.id]);
    });

    it('rejects malformed page tokens and unknown states', async () => {
      const s = await f.fresh();
      await seed(s, 1);
      for (const token of ['garbage!', Buffer.from('{"t":"x"}').toString('base64url'), Buffer.from('null').toString('base64url')]) {
        const e = await caught(() => s.listJobs({ pageSize: 2, pageToken: token }));
        expect(e.kind).toBe('invalid_argument');
        expect(e.violations).toEqual([{ field: 'page_token', description: expect.any(String) }]);
      }
      for (const fn of [() => s.listJobs({ states: ['DONE' as 'FAILED'] }), () => s.countInStates(['DONE' as 'FAILED']), () => s.jobsInStates(['DONE' as 'FAILED'])]) {
        expect((await caught(fn)).violations[0]!.field).toBe('states');
      }
    });

    it('clamps the page size', async () => {
      const s = await f.fresh();
      await seed(s, 60);
      expect((await s.listJobs({ pageSize: 0 })).jobs).toHaveLength(50);
      expect((await s.listJobs({ pageSize: -3 })).jobs).toHaveLength(1);
      expect((await s.listJobs({ pageSize: 5000 })).jobs).toHaveLength(60);
      expect((await s.listJobs({ pageSize: 60 })).nextPageToken).toBe('');
    });
  });

  describe('events', () => {
    it('numbers events 1, 2, 3… per job, independently across jobs', async () => {
      const s = await f.fresh();
      await s.createJob({ spec: spec() });
      await s.createJob({ spec: spec() });
      const [a, b] = [await claim(s), await claim(s)];
      const seqA: number[] = [];
      const seqB: number[] = [];
      for (let i = 0; i < 5; i++) {
        seqA.push((await s.appendEvent(a, step(i + 1))).sequence);
        if (i % 2 === 0) seqB.push((await s.appendEvent(b, checkpoint(i))).sequence);
      }
      expect(seqA).toEqual([1, 2, 3, 4, 5]);
      expect(seqB).toEqual([1, 2, 3]);
      expect(await s.lastSequence(a.jobId)).toBe(5);
      expect(await s.lastSequence(b.jobId)).toBe(3);
      expect(await s.lastSequence('unknown')).toBe(0);
    });

    it('keeps sequences gapless under concurrent appends', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      const seqs = await Promise.all(Array.from({ length: 20 }, (_, i) => s.appendEvent(lease, step(i + 1)).then((e) => e.sequence)));
      expect(seqs.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    });

    it('reads exactly the events after a sequence, with limit', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      for (let i = 1; i <= 6; i++) await s.appendEvent(lease, step(i));
      const rest = await s.readEvents(lease.jobId, 3);
      expect(rest.map((e) => e.sequence)).toEqual([4, 5, 6]);
      expect(rest.map((e) => e.event)).toEqual([step(4), step(5), step(6)]);
      expect(rest[0]).toMatchObject({ jobId: lease.jobId, time: expect.any(Number) });
      expect((await s.readEvents(lease.jobId, 1, 2)).map((e) => e.sequence)).toEqual([2, 3]);
      expect(await s.readEvents(lease.jobId, 6)).toEqual([]);
      expect(await s.readEvents('unknown', 0)).toEqual([]);
    });

    it('refuses payloads that are not JSON', async () => {
      const s = await f.fresh();
      const lease = await startJob(s);
      // A bigint can only come from a caller that bypassed the types; the store must still refuse it whole.
      const bad = { ...step(1), loss: 1n } as unknown as JobEvent;
      expect((await caught(() => s.appendEvent(lease, bad))).violations[0]!.field).toBe('payload');
      expect(await s.lastSequence(lease.jobId)).toBe(0);
    });

    it('reports a closed store as unavailable', async () => {
      const s = await f.fresh();
      await s.close();
      expect((await caught(() => s.getJob('x'))).kind).toBe('unavailable');
      await s.close(); // twice is fine
    });
  });
});

describe('SQLite store', () => {
  it('refuses a database from a newer schema', async () => {
    const dir = tempDir();
    await SqliteJobStore.open(dir).close();
    // Simulate a newer build having migrated the file.
    const s = SqliteJobStore.open(dir);
    (s as unknown as { db: { pragma(p: string): void } }).db.pragma('user_version = 99');
    await s.close();
    const e = await caught(() => SqliteJobStore.open(dir));
    expect(e.kind).toBe('failed_precondition');
    expect(e.message).toMatch(/schema version 99/);
  });
});
