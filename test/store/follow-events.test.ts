import { afterEach, describe, expect, it } from 'vitest';
import { followEvents } from '../../src/store/follow-events.js';
import { JobStore, type MetricEvent } from '../../src/store/job-store.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec, step } from './fixtures.js';

const stores: JobStore[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.close();
});

function setup(events = 0): { s: JobStore; id: string } {
  const s = JobStore.openInMemory();
  stores.push(s);
  const { job } = s.createJob({ spec: spec() });
  s.markRunning(job.id);
  for (let i = 1; i <= events; i++) s.appendEvent(job.id, step(i));
  return { s, id: job.id };
}

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

async function collect(gen: AsyncGenerator<MetricEvent>, onEach?: (e: MetricEvent) => void): Promise<number[]> {
  const seqs: number[] = [];
  for await (const e of gen) {
    seqs.push(e.sequence);
    onEach?.(e);
  }
  return seqs;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('followEvents', () => {
  it('yields the backlog, then live events, and ends when the job finishes', async () => {
    const { s, id } = setup(3);
    const done = collect(followEvents(s, id, 0));
    await tick();
    s.appendEvent(id, step(4));
    await tick();
    s.appendEvent(id, step(5));
    s.appendEvent(id, { type: 'finished', state: 'SUCCEEDED', outputPath: '/out' });
    s.finish(id, 'SUCCEEDED');
    expect(await done).toEqual(range(1, 6));
  });

  it('from a middle sequence yields exactly the missing events', async () => {
    const { s, id } = setup(5);
    s.finish(id, 'SUCCEEDED');
    expect(await collect(followEvents(s, id, 3))).toEqual([4, 5]);
    expect(await collect(followEvents(s, id, 5))).toEqual([]);
  });

  it('neither duplicates nor drops events appended while the backlog is being read', async () => {
    const { s, id } = setup(4);
    let next = 5;
    const seqs = await collect(followEvents(s, id, 0), (e) => {
      // Append from inside the consumer: these land both in the live buffer and in later store reads.
      if (e.sequence === 2 || e.sequence === 6) for (let k = 0; k < 3; k++) s.appendEvent(id, step(next++));
      if (e.sequence === 10) s.finish(id, 'SUCCEEDED');
    });
    expect(seqs).toEqual(range(1, 10));
  });

  it('stays gapless across backlog batches with live events interleaved', async () => {
    const { s, id } = setup(1200); // more than one FOLLOW_BATCH_SIZE page
    const seqs = await collect(followEvents(s, id, 0), (e) => {
      if (e.sequence % 400 === 0) s.appendEvent(id, step(e.sequence));
      if (e.sequence === 1203) s.finish(id, 'SUCCEEDED');
    });
    expect(seqs).toEqual(range(1, 1203));
  });

  it('ends promptly on abort', async () => {
    const { s, id } = setup(2);
    const ac = new AbortController();
    const started = Date.now();
    const done = collect(followEvents(s, id, 0, ac.signal));
    await tick();
    ac.abort();
    expect(await done).toEqual([1, 2]);
    expect(Date.now() - started).toBeLessThan(500);
    expect(await collect(followEvents(s, id, 0, ac.signal))).toEqual([]);
  });

  it('ends for a job cancelled while pending', async () => {
    const s = JobStore.openInMemory();
    stores.push(s);
    const { job } = s.createJob({ spec: spec() });
    const done = collect(followEvents(s, job.id, 0));
    await tick();
    s.requestCancel(job.id);
    expect(await done).toEqual([]);
  });

  it('throws not_found for an unknown job', async () => {
    const { s } = setup();
    await expect(collect(followEvents(s, 'nope', 0))).rejects.toSatisfy((e) => e instanceof NarrowtuneError && e.kind === 'not_found');
  });
});
