import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/store/job-events.js';
import { JobStore, type JobRecord } from '../../src/store/job-store.js';
import { caught, checkpoint, spec, step, storeHarness } from './fixtures.js';

const { memStore, onCleanup, tempDir } = storeHarness();

describe('createJob', () => {
  it('creates a PENDING job with a url-safe id and returns the parsed spec', () => {
    const s = memStore();
    const { job, created } = s.createJob({ spec: spec('m') });
    expect(created).toBe(true);
    expect(job.id).toMatch(/^[a-z2-7]{12}$/);
    expect(job).toMatchObject({ state: 'PENDING', requestId: null, step: 0, totalSteps: 0, trainable: [], error: null });
    expect(job).toMatchObject({ cancelRequested: false, checkpoints: [], outputPath: null, startTime: null, endTime: null });
    expect(job.spec).toEqual(spec('m'));
    expect(s.getJob(job.id)).toEqual(job);
    expect(s.getJob('nope')).toBeNull();
  });

  it('returns the existing job for a repeated requestId', () => {
    const s = memStore();
    const a = s.createJob({ requestId: 'r1', spec: spec('a') });
    const b = s.createJob({ requestId: 'r1', spec: spec('b') });
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(b.job).toEqual(a.job);
    // An empty request id is proto3's "unset", not a key.
    expect(s.createJob({ requestId: '', spec: spec() }).created).toBe(true);
    expect(s.createJob({ requestId: '', spec: spec() }).created).toBe(true);
    expect(s.countInStates(['PENDING'])).toBe(3);
  });

  it('keeps queueOrder increasing', () => {
    const s = memStore();
    const orders = [1, 2, 3].map(() => s.createJob({ spec: spec() }).job.queueOrder);
    expect(orders[1]! > orders[0]! && orders[2]! > orders[1]!).toBe(true);
  });
});

describe('file-backed store', () => {
  it('keeps jobs, idempotency, checkpoints and events across reopen', () => {
    const dir = join(tempDir(), 'nested', 'data');
    let s = JobStore.open(dir);
    const { job } = s.createJob({ requestId: 'req-7', spec: spec('x1') });
    s.markRunning(job.id, 10);
    s.updateProgress(job.id, { step: 3, trainable: ['layers.0.mlp.up_proj.weight'] });
    s.addCheckpoint(job.id, { step: 3, path: '/ck/3', final: false });
    s.appendEvent(job.id, step(1, 1.5));
    s.appendEvent(job.id, step(2, 1.25));
    s.close();

    s = JobStore.open(dir);
    onCleanup(() => s.close());
    const again = s.createJob({ requestId: 'req-7', spec: spec('x2') });
    expect(again.created).toBe(false);
    expect(again.job).toMatchObject({ id: job.id, state: 'RUNNING', step: 3, totalSteps: 10, trainable: ['layers.0.mlp.up_proj.weight'], spec: spec('x1') });
    expect(again.job.checkpoints).toEqual([{ step: 3, path: '/ck/3', final: false, createTime: expect.any(Number) }]);
    expect(s.readEvents(job.id, 0).map((e) => e.event)).toEqual([step(1, 1.5), step(2, 1.25)]);
    expect(s.appendEvent(job.id, step(3)).sequence).toBe(3);
    expect(s.countInStates(['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'])).toBe(1);
  });

  it('refuses a database from a newer schema', () => {
    const dir = tempDir();
    JobStore.open(dir).close();
    // Simulate a newer build having migrated the file.
    const s = JobStore.open(dir);
    (s as unknown as { db: { pragma(p: string): void } }).db.pragma('user_version = 99');
    s.close();
    const e = caught(() => JobStore.open(dir));
    expect(e.kind).toBe('failed_precondition');
    expect(e.message).toMatch(/schema version 99/);
  });
});

describe('state transitions', () => {
  it('runs PENDING → RUNNING → SUCCEEDED with times and output', () => {
    let t = 1000;
    const s = memStore(() => t);
    const { job } = s.createJob({ spec: spec() });
    t = 2000;
    expect(s.markRunning(job.id, 5)).toMatchObject({ state: 'RUNNING', startTime: 2000, totalSteps: 5 });
    t = 3000;
    // Resume after restart: RUNNING → RUNNING keeps the first start.
    expect(s.markRunning(job.id)).toMatchObject({ state: 'RUNNING', startTime: 2000, totalSteps: 5 });
    t = 4000;
    const done = s.finish(job.id, 'SUCCEEDED', { outputPath: '/out/model' });
    expect(done).toMatchObject({ state: 'SUCCEEDED', createTime: 1000, startTime: 2000, endTime: 4000, outputPath: '/out/model', error: null });
  });

  it('records the error of a failed job', () => {
    const s = memStore();
    const { job } = s.createJob({ spec: spec() });
    s.markRunning(job.id);
    const error = { kind: 'invalid_argument', message: 'data.jsonl:3: bad line', violations: [{ field: 'data', description: 'data.jsonl:3: bad line' }] };
    expect(s.finish(job.id, 'FAILED', { error })).toMatchObject({ state: 'FAILED', error });
  });

  it('refuses to leave a resting state, naming it', () => {
    const s = memStore();
    const { job } = s.createJob({ spec: spec() });
    s.finish(job.id, 'SUCCEEDED');
    for (const fn of [
      () => s.finish(job.id, 'FAILED'),
      () => s.markRunning(job.id),
      () => s.requestCancel(job.id),
      () => s.requeue(job.id),
      () => s.updateProgress(job.id, { step: 1 }),
      () => s.appendEvent(job.id, step(1)),
    ]) {
      const e = caught(fn);
      expect(e.kind).toBe('failed_precondition');
      expect(e.message).toBe(`job jobs/${job.id} is already SUCCEEDED`);
    }
  });

  it('cancels a PENDING job at once and flags a RUNNING one for its runner', () => {
    const s = memStore();
    const pending = s.createJob({ spec: spec() }).job;
    expect(s.requestCancel(pending.id)).toMatchObject({ state: 'CANCELLED', cancelRequested: true, endTime: expect.any(Number) });

    const running = s.createJob({ spec: spec() }).job;
    s.markRunning(running.id);
    expect(s.requestCancel(running.id)).toMatchObject({ state: 'RUNNING', cancelRequested: true, endTime: null });
    expect(s.requestCancel(running.id).cancelRequested).toBe(true); // asking twice is fine
    expect(s.finish(running.id, 'CANCELLED').state).toBe('CANCELLED');
    expect(caught(() => s.requestCancel(running.id)).message).toBe(`job jobs/${running.id} is already CANCELLED`);
  });

  it('says not_found for unknown jobs', () => {
    const s = memStore();
    for (const fn of [
      () => s.requestCancel('missing'),
      () => s.markRunning('missing'),
      () => s.finish('missing', 'FAILED'),
      () => s.requeue('missing'),
      () => s.updateProgress('missing', {}),
      () => s.appendEvent('missing', step(1)),
      () => s.addCheckpoint('missing', { step: 1, path: 'p', final: false }),
    ]) {
      expect(caught(fn).kind).toBe('not_found');
    }
  });

  it('requeues RUNNING jobs for recovery, keeping startTime and FIFO position', () => {
    const s = memStore();
    const a = s.createJob({ spec: spec('a') }).job;
    const b = s.createJob({ spec: spec('b') }).job;
    const started = s.markRunning(a.id);
    s.requeue(a.id);
    const back = s.getJob(a.id)!;
    expect(back).toMatchObject({ state: 'PENDING', startTime: started.startTime });
    expect(s.jobsInStates(['PENDING']).map((j) => j.id)).toEqual([a.id, b.id]);
    expect(s.countInStates(['RUNNING'])).toBe(0);
  });

  it('upserts checkpoints by step, ascending', () => {
    const s = memStore();
    const { job } = s.createJob({ spec: spec() });
    s.addCheckpoint(job.id, { step: 20, path: '/ck/20', final: false });
    s.addCheckpoint(job.id, { step: 10, path: '/ck/10', final: false });
    s.addCheckpoint(job.id, { step: 20, path: '/ck/20b', final: true });
    expect(s.getJob(job.id)!.checkpoints.map(({ step, path, final }) => ({ step, path, final }))).toEqual([
      { step: 10, path: '/ck/10', final: false },
      { step: 20, path: '/ck/20b', final: true },
    ]);
  });

  it('notifies subscribers of state changes and events, until unsubscribed', () => {
    const s = memStore();
    const { job } = s.createJob({ spec: spec() });
    const seen: string[] = [];
    const off = s.subscribe(job.id, (n) => seen.push(n.kind === 'event' ? `event:${n.event.sequence}` : `state:${n.job.state}`));
    s.markRunning(job.id);
    s.appendEvent(job.id, step(1));
    s.requestCancel(job.id);
    off();
    s.finish(job.id, 'CANCELLED');
    expect(seen).toEqual(['state:RUNNING', 'event:1', 'state:RUNNING']);
  });
});

describe('listJobs', () => {
  function seed(s: JobStore, n: number): JobRecord[] {
    return Array.from({ length: n }, (_, i) => s.createJob({ spec: spec(`m${i}`) }).job);
  }

  it('pages newest first, covering every job exactly once', () => {
    let t = 0;
    // Two jobs per millisecond so ties on createTime must be broken by queueOrder.
    const s = memStore(() => Math.floor(t++ / 2));
    const jobs = seed(s, 7);
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = s.listJobs({ pageSize: 2, pageToken: token });
      expect(page.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...page.jobs.map((j) => j.id));
      token = page.nextPageToken;
      pages++;
    } while (token);
    expect(pages).toBe(4);
    expect(seen).toEqual(jobs.map((j) => j.id).reverse());
  });

  it('filters by state and keeps the filter across pages', () => {
    const s = memStore();
    const jobs = seed(s, 6);
    for (const j of jobs.filter((_, i) => i % 2 === 0)) s.markRunning(j.id);
    const first = s.listJobs({ pageSize: 2, states: ['RUNNING'] });
    expect(first.jobs.every((j) => j.state === 'RUNNING')).toBe(true);
    const second = s.listJobs({ pageSize: 2, states: ['RUNNING'], pageToken: first.nextPageToken });
    expect(second.nextPageToken).toBe('');
    expect([...first.jobs, ...second.jobs].map((j) => j.id)).toEqual([jobs[4]!.id, jobs[2]!.id, jobs[0]!.id]);
    const e = caught(() => s.listJobs({ pageSize: 2, states: ['PENDING'], pageToken: first.nextPageToken }));
    expect(e.violations[0]!.field).toBe('page_token');
  });

  it('rejects malformed page tokens on page_token', () => {
    const s = memStore();
    seed(s, 1);
    for (const token of ['garbage!', Buffer.from('{"t":"x"}').toString('base64url'), Buffer.from('null').toString('base64url')]) {
      const e = caught(() => s.listJobs({ pageSize: 2, pageToken: token }));
      expect(e.kind).toBe('invalid_argument');
      expect(e.violations).toEqual([{ field: 'page_token', description: expect.any(String) }]);
    }
  });

  it('clamps the page size', () => {
    const s = memStore();
    seed(s, 60);
    expect(s.listJobs({ pageSize: 0 }).jobs).toHaveLength(50);
    expect(s.listJobs({ pageSize: -3 }).jobs).toHaveLength(1);
    expect(s.listJobs({ pageSize: 5000 }).jobs).toHaveLength(60);
    expect(s.listJobs({ pageSize: 60 }).nextPageToken).toBe('');
  });
});

describe('events', () => {
  it('numbers events 1, 2, 3… per job, independently across jobs', () => {
    const s = memStore();
    const a = s.createJob({ spec: spec() }).job;
    const b = s.createJob({ spec: spec() }).job;
    const seqA: number[] = [];
    const seqB: number[] = [];
    for (let i = 0; i < 5; i++) {
      seqA.push(s.appendEvent(a.id, step(i + 1)).sequence);
      if (i % 2 === 0) seqB.push(s.appendEvent(b.id, checkpoint(i)).sequence);
    }
    expect(seqA).toEqual([1, 2, 3, 4, 5]);
    expect(seqB).toEqual([1, 2, 3]);
    expect(s.lastSequence(a.id)).toBe(5);
    expect(s.lastSequence(b.id)).toBe(3);
    expect(s.lastSequence('unknown')).toBe(0);
  });

  it('reads exactly the events after a sequence, with limit', () => {
    const s = memStore();
    const { job } = s.createJob({ spec: spec() });
    for (let i = 1; i <= 6; i++) s.appendEvent(job.id, step(i));
    const rest = s.readEvents(job.id, 3);
    expect(rest.map((e) => e.sequence)).toEqual([4, 5, 6]);
    expect(rest.map((e) => e.event)).toEqual([step(4), step(5), step(6)]);
    expect(rest[0]).toMatchObject({ jobId: job.id, time: expect.any(Number) });
    expect(s.readEvents(job.id, 1, 2).map((e) => e.sequence)).toEqual([2, 3]);
    expect(s.readEvents(job.id, 6)).toEqual([]);
  });

  it('refuses payloads that are not JSON', () => {
    const s = memStore();
    const { job } = s.createJob({ spec: spec() });
    // A bigint can only come from a caller that bypassed the types; the store must still refuse it whole.
    const bad = { ...step(1), loss: 1n } as unknown as JobEvent;
    expect(caught(() => s.appendEvent(job.id, bad)).violations[0]!.field).toBe('payload');
    expect(s.lastSequence(job.id)).toBe(0);
  });

  it('reports a closed store as unavailable', () => {
    const s = JobStore.openInMemory();
    s.close();
    expect(caught(() => s.getJob('x')).kind).toBe('unavailable');
  });
});
