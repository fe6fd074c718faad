// Worker-thread entry for checkLlavaData: tokenizing the data and decoding images must stay off the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../util/errors.js';
import { checkLlavaData, type LlavaDataCheck } from './llava-data-check.js';

checkLlavaData(workerData as LlavaDataCheck)
  .then((result) => parentPort!.postMessage({ type: 'result', result }))
  .catch((error: unknown) => parentPort!.postMessage({ type: 'error', error: serializeError(error) }));
