// StartTune's data check for a LLaVA-style model, run in a worker thread: the training, validation and probe files
// read by the trainer's own loader (image-text files with each image's positions counted and images confined to the
// data roots after symlinks; text files as for any model), then their images decoded in first-use order, training
// file first, as many as FULL_DECODE_BYTES allows. Larger sets leave the rest to the job, which decodes every image
// before its first step and fails with the same message.
import { stat } from 'node:fs/promises';
import type { ImageDataset } from '../data/image-dataset.js';
import type { ImagePreprocessing } from '../data/image.js';
import { decodeExampleImage } from '../data/image-text.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { DATA_FIELDS, type TuneDataFiles } from '../data/tune-data.js';
import { readPreprocessing } from '../eval/image-features.js';
import { inspectModel } from '../model/load-model.js';
import { loadLlavaFile } from '../trainer/setup.js';
import { deserializeError, ModelFileError, NarrowtuneError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';

/** Image bytes decoded at StartTune, in first-use order: sharp decodes a 16 MiB set of PNGs in about a second. */
export const FULL_DECODE_BYTES = 16 * 1024 * 1024;

export interface LlavaDataCheck {
  modelDir: string;
  /** Confined real paths; null: absent or left to the job. */
  files: Record<keyof TuneDataFiles, string | null>;
  seqLen: number;
  /** Real paths of the caller's data roots: images may lie anywhere in them. */
  roots: string[];
  imageBytes: number;
}

export interface LlavaDataSummary {
  /** Per checked file: its examples and distinct images. */
  files: Partial<Record<keyof TuneDataFiles, { examples: number; images: number }>>;
  /** Images decoded, over all files (an image several files use counts once). */
  decoded: number;
}

/**
 * Throws the loader's INVALID_ARGUMENT (`training_data`, `validation_data`, `probe_data`; `model` for the model's
 * files), with the first problem of every bad file.
 */
export async function checkLlavaData(c: LlavaDataCheck): Promise<LlavaDataSummary> {
  const { config, llava } = await inspectModel(c.modelDir);
  if (!llava) throw new ModelFileError(c.modelDir, 'is not a LLaVA-style model');
  const tokenizer = await loadTokenizer(c.modelDir);
  const summary: LlavaDataSummary = { files: {}, decoded: 0 };
  const problems: NarrowtuneError[] = [];
  let alpha: ImagePreprocessing['alpha'] | undefined;
  let left = c.imageBytes;
  const decoded = new Set<string>();
  /** Decodes the set's images not decoded yet, up to the first that would overspend the budget (which ends decoding). */
  const decode = async (data: ImageDataset): Promise<void> => {
    alpha ??= (await readPreprocessing(c.modelDir, llava.config)).alpha;
    for (const [i, ref] of data.images.entries()) {
      if (decoded.has(ref.path)) continue;
      const { size } = await stat(ref.path);
      if (size > left) {
        left = 0;
        return;
      }
      left -= size;
      const example = data.source.examples.find((e) => e.line === data.imageLines[i])!;
      await decodeExampleImage(data.source, example, example.images.findIndex((r) => r.path === ref.path), alpha);
      decoded.add(ref.path);
    }
  };
  for (const key of Object.keys(DATA_FIELDS) as (keyof TuneDataFiles)[]) {
    const file = c.files[key];
    if (file === null) continue;
    try {
      const dataset = await loadLlavaFile(key, file, tokenizer, llava.config, { seqLen: c.seqLen, vocabSize: config.vocabSize, roots: c.roots });
      const images = 'images' in dataset ? (dataset as ImageDataset) : null;
      summary.files[key] = { examples: dataset.examples.length, images: images?.images.length ?? 0 };
      if (images && left > 0) await decode(images);
    } catch (e) {
      // A problem of the model's own files (its preprocessor) ends the check: every file would report it.
      if (!(e instanceof NarrowtuneError) || e.kind !== 'invalid_argument' || e instanceof ModelFileError) throw e;
      problems.push(e);
    }
  }
  summary.decoded = decoded.size;
  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) throw new NarrowtuneError('invalid_argument', problems.map((e) => e.message).join('\n'), problems.flatMap((e) => e.violations));
  return summary;
}

/** checkLlavaData in a worker thread, off the server's event loop; an aborted `signal` ends it and rejects with its reason. */
export function checkLlavaDataInWorker(c: LlavaDataCheck, signal?: AbortSignal): Promise<LlavaDataSummary> {
  signal?.throwIfAborted();
  const worker = startWorker('llava-data-worker', import.meta.url, c);
  return new Promise<LlavaDataSummary>((resolve, reject) => {
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    worker.once('message', (m: { type: string; result?: LlavaDataSummary; error?: unknown }) => {
      if (m.type === 'result') resolve(m.result!);
      else reject(deserializeError(m.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`LLaVA data check worker exited with code ${code}`)));
  }).finally(() => {
    void worker.terminate();
  });
}
