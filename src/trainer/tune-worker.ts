// Worker-thread entry: runs one fine-tune off the caller's event loop and reports back by messages.
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../util/errors.js';
import type { TuneOptions } from './options.js';
import { tune } from './trainer.js';

if (!parentPort) throw new Error('tune-worker must run in a worker thread');
const port = parentPort;
const controller = new AbortController();
port.on('message', (m: { type: string }) => {
  if (m.type === 'cancel') controller.abort();
});
tune(workerData.options as TuneOptions, (event) => port.postMessage({ type: 'event', event }), controller.signal)
  .then((result) => port.postMessage({ type: 'result', result }))
  .catch((error: unknown) => port.postMessage({ type: 'error', error: serializeError(error) }))
  .finally(() => port.close());
