// Runs mergeModels in a worker thread (the service's MergeModels). A merge nobody waits for any more still
// finishes: it writes its output atomically, and stopping it half way would only leave a temporary directory.
import { deserializeError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';
import type { MergeOptions, MergeReceipt } from './merge.js';

export function mergeInWorker(options: MergeOptions): Promise<MergeReceipt> {
  const worker = startWorker('merge-worker', import.meta.url, options);
  return new Promise((resolve, reject) => {
    let answered = false;
    worker.once('message', (m: { type: string; receipt?: MergeReceipt; error?: unknown }) => {
      answered = true;
      if (m.type === 'result') resolve(m.receipt!);
      else reject(deserializeError(m.error));
      void worker.terminate();
    });
    worker.once('error', (e) => {
      answered = true;
      reject(e);
    });
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`merge worker exited with code ${code}`));
    });
  });
}
