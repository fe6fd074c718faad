// StartTune's data check: the model's tokenizer and the data files read exactly as the job will read them
// (tune-data.ts), in a worker thread, before the job is accepted. Files past FULL_CHECK_BYTES are left to the job,
// which reads its data before anything else and fails with the file and line. A LLaVA-style model's data is checked by
// the trainer's LLaVA loader, images included (llava-data-check.ts).
import { stat } from 'node:fs/promises';
import { isImageTextFile } from '../data/image-dataset.js';
import { DATA_FIELDS, checkTuneDataInWorker, type TuneDataFiles } from '../data/tune-data.js';
import { NarrowtuneError } from '../util/errors.js';
import { checkLlavaDataInWorker, FULL_DECODE_BYTES } from './llava-data-check.js';
import type { ResolvedModel } from './requests.js';
import { Violations } from './violations.js';

/**
 * Data checked at StartTune, in total, training file first. With Qwen3's tokenizer (150k entries) loading it takes
 * 1.3 s of CPU and checking runs at about 1 MiB/s, so StartTune stays near 2 s.
 */
export const FULL_CHECK_BYTES = 1024 * 1024;

const DATA_FIELD_NAMES = new Set(Object.values(DATA_FIELDS));

export interface DataCheckRequest {
  model: ResolvedModel;
  /** Confined real paths. */
  files: TuneDataFiles;
  /** The paths as the request gave them: error messages quote these. */
  names: Record<keyof TuneDataFiles, string>;
  seqLen: number;
  /** Real paths of the caller's data roots, which a LLaVA model's images must lie in. */
  dataRoots: string[];
}

/** The files of `files` that fit the budget, in the order the job reads them. */
async function withinBudget(files: TuneDataFiles): Promise<Partial<TuneDataFiles>> {
  const checked: Partial<TuneDataFiles> = {};
  let left = FULL_CHECK_BYTES;
  for (const key of Object.keys(DATA_FIELDS) as (keyof TuneDataFiles)[]) {
    const file = files[key];
    if (file === null) continue;
    const { size } = await stat(file);
    if (size > left) continue;
    checked[key] = file;
    left -= size;
  }
  return checked;
}

/** Throws INVALID_ARGUMENT with every problem found: `training_data` etc. for the data, the model's field for its tokenizer. */
export async function checkStartTuneData(r: DataCheckRequest, signal?: AbortSignal): Promise<void> {
  const files = await withinBudget(r.files);
  const v = new Violations();
  const rename = (field: string) => (DATA_FIELD_NAMES.has(field) ? field : r.model.field);
  const { llava, config } = r.model.info;
  try {
    if (llava) {
      const all = { data: files.data ?? null, validationData: files.validationData ?? null, probeData: files.probeData ?? null };
      await v.collect(() => checkLlavaDataInWorker({ modelDir: r.model.dir, files: all, seqLen: r.seqLen, roots: r.dataRoots, imageBytes: FULL_DECODE_BYTES }, signal), rename);
    } else {
      // The trainer's refusal, before tokenizing: the text loader would only say the form is unknown.
      for (const key of Object.keys(DATA_FIELDS) as (keyof TuneDataFiles)[]) {
        const file = files[key];
        if (file && (await isImageTextFile(file))) v.add(DATA_FIELDS[key], `${r.names[key]} is image-text data, but the model is text-only (it has no vision tower)`);
      }
      if (v.empty) await v.collect(() => checkTuneDataInWorker(r.model.dir, files, { seqLen: r.seqLen, vocabSize: config.vocabSize, names: r.names }, signal), rename);
    }
  } catch (e) {
    if (signal?.aborted) throw new NarrowtuneError('cancelled', 'StartTune was cancelled while its data was being checked');
    throw e;
  }
  v.throwIfAny();
}
