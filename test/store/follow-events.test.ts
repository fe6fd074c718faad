import { expect, it } from 'vitest';
import { followEvents } from '../../src/store/follow-events.js';
import type { JobStore, Lease, MetricEvent } from '../../src/store/job-store.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec, startJob, step } from './fixtures.js';
import { describeStores, storeFactories, type StoreFactory } from './stores.js';

const factories = storeFactories();

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

async function collect(gen: AsyncGenerator<MetricEvent>, onEach?: (e: MetricEvent) => unknown): Promise<number[]> {
  const seqs: number[] = [];
  for await (const e of gen) {
    seqs.push(e.sequence);
    await onEach?.(e);
  }
  return seqs;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describeStores(factories, (f: StoreFactory) => {
  async function setup(events = 0): Promise<{ s: JobStore; id: string; lease: Lease }> {
    const s = await f.fresh();
    const lease = await startJob(s);
    for (let i = 1; i <= events; i++) await s.appendEvent(lease, step(i));
    return { s, id: lease.jobId, lease };
  }

  it('yields the backlog, then live events, and ends when the job finishes', async () => {
    const { s, id, lease } = await setup(3);
    const done = collect(followEvents(s, id, 0));
    await tick();
    await s.appendEvent(lease, step(4));
    await tick();
    await s.appendEvent(lease, step(5));
    await s.appendEvent(lease, { type: 'finished', state: 'SUCCEEDED', outputPath: '/out' });
    await s.finish(lease, 'SUCCEEDED');
    expect(await done).toEqual(range(1, 6));
  });

  it('from a middle sequence yields exactly the missing events', async () => {
    const { s, id, lease } = await setup(5);
    await s.finish(lease, 'SUCCEEDED');
    expect(await collect(followEvents(s, id, 3))).toEqual([4, 5]);
    expect(await collect(followEvents(s, id, 5))).toEqual([]);
  });

  it('neither duplicates nor drops events appended while the backlog is being read', async () => {
    const { s, id, lease } = await setup(4);
    let next = 5;
    const seqs = await collect(followEvents(s, id, 0), async (e) => {
      // Append from inside the consumer: these land both in the live buffer and in later store reads.
      if (e.sequence === 2 || e.sequence === 6) for (let k = 0; k < 3; k++) await s.appendEvent(lease, step(next++));
      if (e.sequence === 10) await s.finish(lease, 'SUCCEEDED');
    });
    expect(seqs).toEqual(range(1, 10));
  });

  it('stays gapless across backlog batches with live events interleaved', async () => {
    const { s, id, lease } = await setup(1200); // more than one FOLLOW_BATCH_SIZE page
    const seqs = await collect(followEvents(s, id, 0), async (e) => {
      if (e.sequence % 400 === 0) await s.appendEvent(lease, step(e.sequence));
      if (e.sequence === 1203) await s.finish(lease, 'SUCCEEDED');
    });
    expect(seqs).toEqual(range(1, 1203));
  });

  it('ends promptly on abort', async () => {
    const { s, id } = await setup(2);
    const ac = new AbortController();
    let caughtUp!: () => void;
    const backlogRead = new Promise<void>((r) => (caughtUp = r));
    const done = collect(followEvents(s, id, 0, ac.signal), (e) => e.sequence === 2 && caughtUp());
    await backlogRead;
    await tick(); // now waiting for live events
    const started = Date.now();
    ac.abort();
    expect(await done).toEqual([1, 2]);
    expect(Date.now() - started).toBeLessThan(500);
    expect(await collect(followEvents(s, id, 0, ac.signal))).toEqual([]);
  });

  it('ends for a job cancelled while pending, with its closing event', async () => {
    const s = await f.fresh();
    const { job } = await s.createJob({ spec: spec() });
    const done = collect(followEvents(s, job.id, 0));
    await tick();
    await s.requestCancel(job.id);
    expect(await done).toEqual([1]);
  });

  it('ends for a job another worker finished, and skips a stale worker it never saw', async () => {
    const { s, id, lease } = await setup(2);
    const done = collect(followEvents(s, id, 0));
    await tick();
    await s.releaseLease(lease);
    const next = await s.claimJob({ workerId: 'w2', leaseMs: 60_000 });
    await s.appendEvent(next!, step(3));
    await s.finish(next!, 'SUCCEEDED');
    expect(await done).toEqual([1, 2, 3]);
  });

  it('throws not_found for an unknown job', async () => {
    const { s } = await setup();
    await expect(collect(followEvents(s, 'nope', 0))).rejects.toSatisfy((e) => e instanceof NarrowtuneError && e.kind === 'not_found');
  });
});
