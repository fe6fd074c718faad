// A fine-tune's data files read as the trainer reads them: the training file and the optional validation and
// probe files, each through loadDataset, each problem under the request field the file came from. The trainer
// loads them first thing; StartTune runs the same check (in a worker) before it accepts a job.
import { DataFileError, deserializeError, NarrowtuneError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';
import { loadDataset, type Dataset } from './dataset.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';

export interface TuneDataFiles {
  data: string;
  validationData: string | null;
  probeData: string | null;
}

export interface TuneData {
  training: Dataset;
  validation: Dataset | null;
  probe: Dataset | null;
}

export interface TuneDataOptions {
  seqLen: number;
  /** The model's vocabulary (config.json), which may be smaller than the tokenizer's: larger ids are refused. */
  vocabSize?: number;
  /** How error messages name each file (default: its path). */
  names?: Partial<Record<keyof TuneDataFiles, string>>;
}

/** The request field of each file (StartTuneRequest), under which its problems are reported. */
export const DATA_FIELDS: Readonly<Record<keyof TuneDataFiles, string>> = {
  data: 'training_data',
  validationData: 'validation_data',
  probeData: 'probe_data',
};

export async function loadTuneData(files: TuneDataFiles, tokenizer: TextTokenizer, o: TuneDataOptions): Promise<TuneData> {
  const load = (key: keyof TuneDataFiles) => {
    const file = files[key];
    return file === null ? null : loadTuneFile(key, file, tokenizer, o);
  };
  return { training: (await load('data'))!, validation: await load('validationData'), probe: await load('probeData') };
}

/** One of the files, read as loadTuneData reads it. */
export async function loadTuneFile(key: keyof TuneDataFiles, file: string, tokenizer: TextTokenizer, o: TuneDataOptions): Promise<Dataset> {
  const name = o.names?.[key] ?? file;
  const dataset = await loadDataset(file, tokenizer, { seqLen: o.seqLen, field: DATA_FIELDS[key], name });
  if (o.vocabSize !== undefined) checkVocab(dataset, o.vocabSize, name, DATA_FIELDS[key]);
  return dataset;
}

/** Refuses token ids the model's embedding has no row for. */
function checkVocab(dataset: Dataset, vocabSize: number, name: string, field: string): void {
  dataset.examples.forEach((ex, i) => {
    const bad = ex.inputIds.find((id) => id >= vocabSize);
    if (bad !== undefined) throw new DataFileError(name, null, `example ${i + 1} has token id ${bad}, but the model's vocabulary has ${vocabSize} entries`, field);
  });
}

/** Examples per checked file. */
export type TuneDataSummary = Partial<Record<keyof TuneDataFiles, number>>;

/**
 * The tokenizer loaded from `modelDir`, then each of `files` read as the trainer will read it. One INVALID_ARGUMENT
 * names the first bad line of every bad file.
 */
export async function checkTuneData(modelDir: string, files: Partial<TuneDataFiles>, o: TuneDataOptions): Promise<TuneDataSummary> {
  const tokenizer = await loadTokenizer(modelDir);
  const summary: TuneDataSummary = {};
  const problems: NarrowtuneError[] = [];
  for (const key of Object.keys(DATA_FIELDS) as (keyof TuneDataFiles)[]) {
    const file = files[key];
    if (!file) continue;
    try {
      summary[key] = (await loadTuneFile(key, file, tokenizer, o)).examples.length;
    } catch (e) {
      if (!(e instanceof NarrowtuneError) || e.kind !== 'invalid_argument') throw e;
      problems.push(e);
    }
  }
  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) {
    throw new NarrowtuneError('invalid_argument', problems.map((e) => e.message).join('\n'), problems.flatMap((e) => e.violations));
  }
  return summary;
}

/**
 * checkTuneData in a worker thread: tokenizing megabytes takes seconds, and the caller's (the server's) event loop
 * must keep serving. An aborted `signal` ends the worker and rejects with the signal's reason.
 */
export function checkTuneDataInWorker(modelDir: string, files: Partial<TuneDataFiles>, o: TuneDataOptions, signal?: AbortSignal): Promise<TuneDataSummary> {
  signal?.throwIfAborted();
  const worker = startWorker('tune-data-worker', import.meta.url, { modelDir, files, options: o });
  return new Promise<TuneDataSummary>((resolve, reject) => {
    const abort = () => reject(signal!.reason);
    signal?.addEventListener('abort', abort, { once: true });
    worker.once('message', (m: { type: string; result?: TuneDataSummary; error?: unknown }) => {
      if (m.type === 'result') resolve(m.result!);
      else reject(deserializeError(m.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`data check worker exited with code ${code}`)));
  }).finally(() => {
    void worker.terminate();
  });
}
