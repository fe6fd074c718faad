// Runs `evaluate` in a worker thread and returns its scores.
import { startWorker } from '../trainer/run-in-worker.js';
import { deserializeError } from '../util/errors.js';
import type { DatasetScore, EvaluateOptions } from './evaluate.js';

export function evaluateInWorker(options: EvaluateOptions): Promise<DatasetScore[]> {
  const worker = startWorker('eval-worker', import.meta.url, { options });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { type: string; result?: DatasetScore[]; error?: unknown }) => {
      if (m.type === 'result') resolve(m.result!);
      else reject(deserializeError(m.error));
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`evaluation worker exited with code ${code}`)));
  });
}
