// A model directory of either kind as the trainer reads and writes it: a text-only Llama/Qwen checkpoint
// (checkpoint.ts) or a LLaVA-style one (llava-checkpoint.ts), read into one Checkpoint (the decoder under
// text-model names, so policies, probes and the train step see a language model) and written back in the form,
// layout and tensor names it came with. A PEFT adapter directory whose base is LLaVA-style loads as that base with
// the adapter merged in, as checkpoint.ts loads a text model's adapter.

import { join } from 'node:path';
import { adapterOf, checkPairs, CONFIG_FILE, inspectCheckpoint, loadCheckpoint, readJsonFile, writeCheckpoint, type Checkpoint, type CheckpointInfo, type WriteCheckpointOptions } from './checkpoint.js';
import { canonicalAdapterPairs } from './llava-adapter.js';
import { inspectLlavaCheckpoint, loadLlavaCheckpoint, writeLlavaCheckpoint } from './llava-checkpoint.js';
import { isLlavaConfig } from './llava-config.js';
import type { LlavaLayout } from './llava-names.js';
import { ADAPTER_WEIGHTS_FILE, type AdapterConfig, type AdapterPair, mergeLora, readAdapterHeader, readAdapterWeights } from './peft-adapter.js';
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
  const adapter = await llavaAdapterOf(dir);
  if (adapter) {
    const base = await loadModel(adapter.base);
    for (const [name, pair] of await adapterPairs(dir, adapter.config, base.llava!.layout, base.tensors, readAdapterWeights)) {
      base.tensors.set(name, mergeLora(base.tensors.get(name)!, pair, adapter.config.scale));
    }
    return { ...base, dir, files: [...base.files, join(dir, ADAPTER_WEIGHTS_FILE)] };
  }
  if (!(await isLlavaDir(dir))) return loadCheckpoint(dir);
  const l = await loadLlavaCheckpoint(dir);
  return { dir, config: l.config.text, tensors: new Map([...l.language, ...l.vision]), files: l.files, llava: { config: l.config, layout: l.layout } };
}

/** inspectCheckpoint, or for a LLaVA-style directory the same check from headers only. */
export async function inspectModel(dir: string): Promise<CheckpointInfo & Pick<Checkpoint, 'llava'>> {
  const adapter = await llavaAdapterOf(dir);
  if (adapter) {
    const base = await inspectModel(adapter.base);
    await adapterPairs(dir, adapter.config, base.llava!.layout, base.tensors, readAdapterHeader);
    return { ...base, files: [...base.files, join(dir, ADAPTER_WEIGHTS_FILE)] };
  }
  if (!(await isLlavaDir(dir))) return inspectCheckpoint(dir);
  const l = await inspectLlavaCheckpoint(dir);
  return { config: l.config.text, tensors: new Map([...l.language, ...l.vision]), files: l.files, llava: { config: l.config, layout: l.layout } };
}

/** The adapter of `dir` when its base is LLaVA-style (a text model's adapter is checkpoint.ts's to load). */
async function llavaAdapterOf(dir: string): Promise<{ config: AdapterConfig; base: string } | null> {
  const adapter = await adapterOf(dir);
  return adapter && (await isLlavaDir(adapter.base)) ? adapter : null;
}

/** An adapter's pairs under canonical names, each checked against the base weight it adapts. */
export async function adapterPairs<T extends { name: string; shape: number[] }>(
  dir: string,
  config: AdapterConfig,
  layout: LlavaLayout,
  base: ReadonlyMap<string, { shape: number[] }>,
  read: (dir: string, config: AdapterConfig) => Promise<Map<string, AdapterPair<T>>>,
): Promise<Map<string, AdapterPair<T>>> {
  return checkPairs(dir, canonicalAdapterPairs(layout, await read(dir, config), join(dir, ADAPTER_WEIGHTS_FILE)), base);
}

/** Writes `tensors` (names as loadModel gives them) in the form `like` was read in: writeCheckpoint or the LLaVA layout. */
export async function writeModel(out: string, like: Pick<Checkpoint, 'config' | 'llava'>, tensors: StoredTensor[], opts: Pick<WriteCheckpointOptions, 'copyFrom' | 'extraJson'>): Promise<void> {
  if (!like.llava) return writeCheckpoint(out, { config: like.config, tensors, ...opts });
  return writeLlavaCheckpoint(out, { config: like.llava.config, layout: like.llava.layout, tensors, ...opts });
}
