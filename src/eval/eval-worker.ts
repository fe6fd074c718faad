// Worker-thread entry for Evaluate: scoring runs session.run, which must stay off the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { serializeError } from '../util/errors.js';
import { evaluate, type EvaluateOptions } from './evaluate.js';
import { evaluationStopped } from './run-in-worker.js';

const { options, stop } = workerData as { options: EvaluateOptions; stop: Int32Array };

// Every session run of this thread (decoding steps, scoring batches) is a point where a stopped evaluation
// ends: one run is at most one batch, and between runs no native call is in progress, so the error unwinds
// through evaluate's own clean-up (sessions released) and the worker ends normally.
type Run = (...args: unknown[]) => Promise<unknown>;
const sessionPrototype = (ort.InferenceSession as unknown as { prototype: { run: Run } }).prototype;
const run = sessionPrototype.run;
sessionPrototype.run = function (this: unknown, ...args: unknown[]) {
  return Atomics.load(stop, 0) === 0 ? run.apply(this, args) : Promise.reject(evaluationStopped());
};

evaluate(options)
  .then((result) => parentPort!.postMessage({ type: 'result', result }))
  .catch((error: unknown) => parentPort!.postMessage({ type: 'error', error: serializeError(error) }));
