// Follows a job's metric events: the stored backlog, then live ones, in sequence order with no gaps or duplicates, until the job rests.
import { isResting, jobNotFound, type JobStore, type MetricEvent } from './job-store.js';

// Backlog reads are paged so a long job's history never has to sit in memory at once.
export const FOLLOW_BATCH_SIZE = 500;
// Past this many unconsumed live events the buffer is dropped and the store re-read: the store has them all anyway.
export const LIVE_BUFFER_LIMIT = 10_000;
// Notifications may be missed (SQLite's are in-process only; a PostgreSQL LISTEN connection can drop): this re-check
// catches writes the notifications did not announce.
export const FALLBACK_POLL_MS = 1000;

export async function* followEvents(store: JobStore, jobId: string, fromSequence: number, signal?: AbortSignal): AsyncGenerator<MetricEvent> {
  if (signal?.aborted) return;
  const live: MetricEvent[] = [];
  let notified = false;
  // The store is read at the start, after a gap in the live events, on a state change and on each fallback poll;
  // contiguous live events need no read (with many streams per job, a read per event per stream is most of the
  // database's work).
  let mustRead = true;
  let wake: (() => void) | null = null;
  const poke = () => {
    notified = true;
    wake?.();
  };
  // Subscribe before the first read, so nothing appended between the read and the subscription is missed.
  const unsubscribe = store.subscribe(jobId, (n) => {
    if (n.kind === 'event') {
      if (live.length >= LIVE_BUFFER_LIMIT) live.length = 0;
      live.push(n.event);
    } else {
      mustRead = true;
    }
    poke();
  });
  signal?.addEventListener('abort', poke);
  try {
    if (!(await store.getJob(jobId))) throw jobNotFound(jobId);
    let last = Math.max(0, Math.floor(fromSequence));
    for (;;) {
      // An abort during a store read only set `notified`: without this the loop would go on to wait a full poll.
      if (signal?.aborted) return;
      notified = false;
      // Live events first: in order and contiguous they save a store read.
      while (live.length > 0 && live[0]!.sequence <= last + 1) {
        const e = live.shift()!;
        if (e.sequence <= last) continue; // already yielded from the backlog
        yield e;
        last = e.sequence;
        if (signal?.aborted) return;
      }
      // Anything still buffered starts past a gap; the store is the source of truth for filling it.
      if (live.length > 0) {
        live.length = 0;
        mustRead = true;
      }
      if (mustRead) {
        mustRead = false;
        // Read the state before the last sequence: the store refuses events for resting jobs, so once resting the count is final.
        const job = await store.getJob(jobId);
        if (!job) throw jobNotFound(jobId); // deleted out from under us
        const stored = await store.lastSequence(jobId);
        if (stored > last) {
          const batch = await store.readEvents(jobId, last, FOLLOW_BATCH_SIZE);
          for (const e of batch) {
            if (e.sequence <= last) continue;
            yield e;
            last = e.sequence;
            if (signal?.aborted) return;
          }
          mustRead = true; // there may be more
          continue;
        }
        if (isResting(job.state)) return;
      }
      if (notified) continue; // something arrived while we were reading or yielding
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          mustRead = true;
          resolve();
        }, FALLBACK_POLL_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
      if (signal?.aborted) return;
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener('abort', poke);
  }
}
