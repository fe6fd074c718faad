// A model directory of either kind as the trainer reads and writes it: a text-only Llama/Qwen checkpoint
// (checkpoint.ts) or a LLaVA-style one (llava-checkpoint.ts), read into one Checkpoint (the decoder under
// text-model names, so policies, probes and the train step see a language model) and written back in the form,
// layout and tensor names it came with.

import { join } from 'node:path';
import { CONFIG_FILE, inspectCheckpoint, loadCheckpoint, readJsonFile, writeCheckpoint, type Checkpoint, type CheckpointInfo, type WriteCheckpointOptions } from './checkpoint.js';
import { inspectLlavaCheckpoint, loadLlavaCheckpoint, writeLlavaCheckpoint } from './llava-checkpoint.js';
import { isLlavaConfig } from './llava-config.js';
import type { StoredTensor } from './safetensors.js';

/** Whether `dir`'s config.json is LLaVA-style; false when it is absent or unreadable (the loaders report that). */
export async function isLlavaDir(dir: string): Promise<boolean> {
  try {
    return isLlavaConfig(await readJsonFile(join(dir, CONFIG_FILE)));
  } catch {
    return false;
  }
}

/** loadCheckpoint, or for a LLaVA-style directory its decoder and the rest (see Checkpoint.llava). */
export async function loadModel(dir: string): Promise<Checkpoint> {
  if (!(await isLlavaDir(dir))) return loadCheckpoint(dir);
  const l = await loadLlavaCheckpoint(dir);
  return { dir, config: l.config.text, tensors: new Map([...l.language, ...l.vision]), files: l.files, llava: { config: l.config, layout: l.layout } };
}

/** inspectCheckpoint, or for a LLaVA-style directory the same check from headers only. */
export async function inspectModel(dir: string): Promise<CheckpointInfo & Pick<Checkpoint, 'llava'>> {
  if (!(await isLlavaDir(dir))) return inspectCheckpoint(dir);
  const l = await inspectLlavaCheckpoint(dir);
  return { config: l.config.text, tensors: new Map([...l.language, ...l.vision]), files: l.files, llava: { config: l.config, layout: l.layout } };
}

/** Writes `tensors` (names as loadModel gives them) in the form `like` was read in: writeCheckpoint or the LLaVA layout. */
export async function writeModel(out: string, like: Pick<Checkpoint, 'config' | 'llava'>, tensors: StoredTensor[], opts: Pick<WriteCheckpointOptions, 'copyFrom' | 'extraJson'>): Promise<void> {
  if (!like.llava) return writeCheckpoint(out, { config: like.config, tensors, ...opts });
  return writeLlavaCheckpoint(out, { config: like.llava.config, layout: like.llava.layout, tensors, ...opts });
}
