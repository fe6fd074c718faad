// Runs `evaluate` in a worker thread and returns its result: decoding and scoring call session.run, which blocks
// its thread, and the caller's (the gRPC server's) event loop must keep serving.
import { deserializeError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';
import type { EvaluateOptions, EvaluateResult } from './evaluate.js';

export function evaluateInWorker(options: EvaluateOptions): Promise<EvaluateResult> {
  const worker = startWorker('eval-worker', import.meta.url, { options });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { type: string; result?: EvaluateResult; error?: unknown }) => {
      if (m.type === 'result') resolve(m.result!);
      else reject(deserializeError(m.error));
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`evaluation worker exited with code ${code}`)));
  });
}
