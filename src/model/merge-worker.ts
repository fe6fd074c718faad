// Worker-thread entry for a merge: interpolating every tensor is seconds of CPU that must stay off the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../util/errors.js';
import { mergeModels, type MergeOptions } from './merge.js';

mergeModels(workerData as MergeOptions)
  .then(({ receipt }) => parentPort!.postMessage({ type: 'result', receipt }))
  .catch((error: unknown) => parentPort!.postMessage({ type: 'error', error: serializeError(error) }));
