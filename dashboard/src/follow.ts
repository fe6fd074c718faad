// Follows a job's StreamMetrics until its `finished` event. A stream that drops (server restart, network) is
// opened again from the last sequence seen, after a backoff that doubles up to MAX_BACKOFF_MS.
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { api, Code, ConnectError, errorText } from './api.js';
import type { MetricEvent, SequencedEvent } from './series.js';

export const FIRST_BACKOFF_MS = 250;
export const MAX_BACKOFF_MS = 8000;

export type FollowStatus =
  | { kind: 'live' }
  | { kind: 'reconnecting'; inMs: number; why: string }
  | { kind: 'done' }
  | { kind: 'failed'; error: unknown };

/** Errors that another try cannot fix. */
const FINAL_CODES = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.NotFound, Code.InvalidArgument]);

/** Starts following; returns a function that stops. `lastSequence` is read at each (re)connect. */
export function followJob(
  name: string,
  lastSequence: () => number,
  onEvent: (e: SequencedEvent) => void,
  onStatus: (s: FollowStatus) => void,
): () => void {
  const stop = new AbortController();
  const sleep = (ms: number) =>
    new Promise<void>((ok) => {
      const t = setTimeout(ok, ms);
      stop.signal.addEventListener('abort', () => (clearTimeout(t), ok()), { once: true });
    });

  (async () => {
    let backoff = FIRST_BACKOFF_MS;
    while (!stop.signal.aborted) {
      let why = 'the stream ended before the job did';
      try {
        onStatus({ kind: 'live' });
        for await (const r of api.streamMetrics({ name, fromSequence: BigInt(lastSequence()) }, { signal: stop.signal })) {
          backoff = FIRST_BACKOFF_MS;
          const event = r.event as MetricEvent;
          onEvent({ sequence: Number(r.sequence), timeMs: r.time ? timestampMs(r.time) : Date.now(), event });
          if (event.case === 'finished') {
            onStatus({ kind: 'done' });
            return;
          }
        }
      } catch (e) {
        if (stop.signal.aborted) return;
        if (e instanceof ConnectError && FINAL_CODES.has(e.code)) {
          onStatus({ kind: 'failed', error: e });
          return;
        }
        why = errorText(e);
      }
      if (stop.signal.aborted) return;
      // A clean end without `finished` is a server shutting down: it will be back, and so will the stream.
      onStatus({ kind: 'reconnecting', inMs: backoff, why });
      await sleep(backoff);
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  })();
  return () => stop.abort();
}
