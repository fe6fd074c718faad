// StartTune's data check for a LLaVA-style model, run in a worker thread: the files read by the trainer's own loader
// (image-text training data with each image's positions counted, images confined to the data roots after symlinks;
// text validation and probe files), then the images decoded, as many as FULL_DECODE_BYTES allows. Larger sets leave
// the rest to the job, which decodes every image before its first step and fails with the same message.
import { stat } from 'node:fs/promises';
import type { ImageDataset } from '../data/image-dataset.js';
import { decodeExampleImage } from '../data/image-text.js';
import { loadTokenizer } from '../data/tokenizer.js';
import type { TuneDataFiles } from '../data/tune-data.js';
import { readPreprocessing } from '../eval/image-features.js';
import { inspectModel } from '../model/load-model.js';
import { loadLlavaData } from '../trainer/setup.js';
import { deserializeError, ModelFileError } from '../util/errors.js';
import { startWorker } from '../util/worker.js';

/** Image bytes decoded at StartTune, in first-use order: sharp decodes a 16 MiB set of PNGs in about a second. */
export const FULL_DECODE_BYTES = 16 * 1024 * 1024;

export interface LlavaDataCheck {
  modelDir: string;
  /** Confined real paths; null: absent or left to the job. */
  files: TuneDataFiles;
  seqLen: number;
  /** Real paths of the caller's data roots: images may lie anywhere in them. */
  roots: string[];
  imageBytes: number;
}

export interface LlavaDataSummary {
  examples: number;
  images: number;
  decoded: number;
}

/** Throws the loader's INVALID_ARGUMENT (`training_data` etc., `model` for the model's files) at the first problem. */
export async function checkLlavaData(c: LlavaDataCheck): Promise<LlavaDataSummary> {
  const { config, llava } = await inspectModel(c.modelDir);
  if (!llava) throw new ModelFileError(c.modelDir, 'is not a LLaVA-style model');
  const tokenizer = await loadTokenizer(c.modelDir);
  const { training } = await loadLlavaData({ data: c.files.data, seqLen: c.seqLen, imageRoots: c.roots }, c.files, tokenizer, llava.config, config.vocabSize);
  if (!('images' in training)) return { examples: training.examples.length, images: 0, decoded: 0 };
  const data = training as ImageDataset;
  const { alpha } = await readPreprocessing(c.modelDir, llava.config);
  let left = c.imageBytes;
  let decoded = 0;
  for (const [i, ref] of data.images.entries()) {
    const { size } = await stat(ref.path);
    if (size > left) break;
    left -= size;
    const example = data.source.examples.find((e) => e.line === data.imageLines[i])!;
    await decodeExampleImage(data.source, example, example.images.findIndex((r) => r.path === ref.path), alpha);
    decoded++;
  }
  return { examples: data.examples.length, images: data.images.length, decoded };
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
