// Worker-thread entry for Evaluate: scoring runs session.run, which must stay off the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../util/errors.js';
import { evaluate, type EvaluateOptions } from './evaluate.js';

evaluate(workerData.options as EvaluateOptions)
  .then((result) => parentPort!.postMessage({ type: 'result', result }))
  .catch((error: unknown) => parentPort!.postMessage({ type: 'error', error: serializeError(error) }));
