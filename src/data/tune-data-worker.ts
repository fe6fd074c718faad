// Worker-thread entry for checkTuneData: tokenizing a data file must stay off the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../util/errors.js';
import { checkTuneData, type TuneDataFiles, type TuneDataOptions } from './tune-data.js';

const { modelDir, files, options } = workerData as { modelDir: string; files: Partial<TuneDataFiles>; options: TuneDataOptions };
checkTuneData(modelDir, files, options)
  .then((result) => parentPort!.postMessage({ type: 'result', result }))
  .catch((error: unknown) => parentPort!.postMessage({ type: 'error', error: serializeError(error) }));
