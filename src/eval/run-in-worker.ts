// Runs `evaluate` in a worker thread and returns its result: decoding and scoring call session.run, which blocks
// its thread, and the caller's (the gRPC server's) event loop must keep serving. When the caller's signal aborts
// (the client cancelled, its deadline passed, the server shuts down) the call fails at once and the worker stops
// at its next session run, so an evaluation nobody waits for stops using a core.
import type { Worker } from 'node:worker_threads';
import { deserializeError, NarrowtuneError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';
import type { EvaluateOptions, EvaluateResult } from './evaluate.js';

const live = new Set<Worker>();

/** Evaluation workers started and not yet gone: what a cancelled evaluation must give back. */
export function liveEvaluationWorkers(): number {
  return live.size;
}

export function evaluationStopped(): NarrowtuneError {
  return new NarrowtuneError('cancelled', 'evaluation stopped: the client cancelled, its deadline passed, or the server is shutting down');
}

export function evaluateInWorker(options: EvaluateOptions, signal?: AbortSignal): Promise<EvaluateResult> {
  if (signal?.aborted) return Promise.reject(evaluationStopped());
  // Set to 1 to stop. Shared memory rather than a message: the worker reads it between session runs without
  // needing its event loop. Terminating the worker instead would abort the whole process when it lands inside
  // onnxruntime's native code (a Napi::Error nobody catches).
  const stop = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  const worker = startWorker('eval-worker', import.meta.url, { options, stop });
  live.add(worker);
  return new Promise((resolve, reject) => {
    let answered = false;
    const answer = (settle: () => void) => {
      if (answered) return;
      answered = true;
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    // The worker has returned from evaluate (result or error), so no native call is in progress: safe to end.
    const done = () => void worker.terminate();
    const onAbort = () => {
      Atomics.store(stop, 0, 1);
      answer(() => reject(evaluationStopped()));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (m: { type: string; result?: EvaluateResult; error?: unknown }) => {
      answer(() => (m.type === 'result' ? resolve(m.result!) : reject(deserializeError(m.error))));
      done();
    });
    worker.once('error', (e) => answer(() => reject(e)));
    worker.once('exit', (code) => {
      live.delete(worker);
      answer(() => reject(new Error(`evaluation worker exited with code ${code}`)));
    });
  });
}
