// Runs `tune` in a worker thread: session.run blocks its thread, and the caller's (a CLI's progress
// bar, a server's RPCs) must keep running.
import { deserializeError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';
import type { TuneOptions } from './options.js';
import type { TrainEvent } from './events.js';
import type { TuneResult } from './trainer.js';

export function tuneInWorker(options: TuneOptions, onEvent: (e: TrainEvent) => void = () => {}, signal?: AbortSignal): Promise<TuneResult> {
  const worker = startWorker('tune-worker', import.meta.url, { options });
  return new Promise((resolve, reject) => {
    let settled = false;
    const cancel = () => worker.postMessage({ type: 'cancel' });
    signal?.addEventListener('abort', cancel, { once: true });
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', cancel);
      fn();
    };
    worker.on('message', (m: { type: string; event?: TrainEvent; result?: TuneResult; error?: unknown }) => {
      if (m.type === 'event') onEvent(m.event!);
      else if (m.type === 'result') finish(() => resolve(m.result!));
      else if (m.type === 'error') finish(() => reject(deserializeError(m.error)));
    });
    worker.on('error', (e) => finish(() => reject(e)));
    worker.on('exit', (code) => finish(() => reject(new Error(`training worker exited with code ${code} before finishing`))));
  });
}
