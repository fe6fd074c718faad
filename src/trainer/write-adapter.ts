// The output of a LoRA fine-tune: a PEFT adapter directory (adapter_config.json, adapter_model.safetensors in the
// base model's dtype, the tokenizer files, the receipt), or with mergeAdapter the targets' merged weights. A LLaVA
// model's adapter names its modules as PEFT does when it wraps the base's layout (llava-adapter.ts).
import { join, resolve } from 'node:path';
import { adapterNames } from '../graph/lora.js';
import { writeFileAtomic, writeModelDirectory } from '../model/checkpoint.js';
import { llavaAdapterName, llavaTargetModules } from '../model/llava-adapter.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterConfigJson, mergeLora, peftTensorName, targetModules } from '../model/peft-adapter.js';
import { fromFloat32, type StoredTensor } from '../model/safetensors.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../model/safetensors-file.js';
import type { FloatArray } from '../runtime/session.js';
import { adaptableWeights } from './lora.js';
import { NarrowtuneError } from '../util/errors.js';
import { inputPath, proveFrozen, RECEIPT_FILE, sha256, storedHashes, visionHashes, type Receipt } from './receipt.js';
import type { TrainingRun } from './setup.js';

type LoraRun = TrainingRun & { lora: NonNullable<TrainingRun['lora']> };

export function hasAdapter(run: TrainingRun): run is LoraRun {
  return run.lora !== null;
}

/** The receipt's record of the adapter. */
export function adapterRecord(run: LoraRun): NonNullable<Receipt['adapter']> {
  const l = run.o.lora!;
  return { type: 'lora', rank: l.rank, alpha: l.alpha, dropout: l.dropout, targets: [...run.lora.layout.targets], merged: run.o.mergeAdapter };
}

/** The receipt's proof that a LLaVA model's tower, projector and image_newline are as they were (`after`: read back). */
export function visionRecord(run: TrainingRun, after: Parameters<typeof visionHashes>[1]): NonNullable<Receipt['vision']> {
  const images = run.images ? 'features computed once per image and cached; tower and projector outside the gradient path' : 'no images in the training data';
  return { ...visionHashes(run.ckpt.tensors, after), images };
}

/** Trained A and B of each target as tensors of `dtype`, under narrowtune's (PEFT's unprefixed) names. */
function adapterTensors(run: LoraRun, weights: ReadonlyMap<string, FloatArray>, dtype: StoredTensor['dtype']): StoredTensor[] {
  return run.lora.trainable.map((name) => ({
    name,
    dtype,
    shape: run.shapes.get(name)!,
    data: fromFloat32(Float32Array.from(weights.get(name)!), dtype),
  }));
}

/** Every tensor of the base checkpoint, each target replaced by W + scale·B·A in its own dtype. */
export function mergedTensors(run: LoraRun, weights: ReadonlyMap<string, FloatArray>): StoredTensor[] {
  const pairs = new Map(adapterTensors(run, weights, 'F32').map((t) => [t.name, t]));
  const targets = new Set(run.lora.layout.targets);
  return [...run.ckpt.tensors.values()].map((t) => {
    if (!targets.has(t.name)) return t;
    const { a, b } = adapterNames(t.name);
    return mergeLora(t, { a: pairs.get(a)!, b: pairs.get(b)! }, run.lora.layout.scale);
  });
}

/**
 * Writes the PEFT adapter directory and its receipt. The adapter is stored in the dtype of the weights it adapts;
 * base_model_name_or_path is the base directory relative to the adapter's (peft-adapter.ts adapterBaseDir).
 * The proof re-reads the base model from disk: every tensor hashes as it did before training.
 */
export async function writeAdapterResult(run: LoraRun, weights: ReadonlyMap<string, FloatArray>, receipt: Receipt): Promise<{ out: string; receipt: Receipt }> {
  const { o, ckpt, lora } = run;
  const out = resolve(o.out);
  const dtype = ckpt.tensors.get(lora.layout.targets[0])!.dtype;
  const tensors = adapterTensors(run, weights, dtype);
  const layout = ckpt.llava?.layout;
  const stored = (name: string) => peftTensorName(layout ? llavaAdapterName(layout, name) : name);
  const candidates = adaptableWeights(run.params.keys());
  const config = adapterConfigJson({
    rank: o.lora!.rank,
    alpha: o.lora!.alpha,
    dropout: o.lora!.dropout,
    targetModules: layout ? llavaTargetModules(layout, lora.layout.targets, candidates) : targetModules(lora.layout.targets, candidates),
    base: inputPath(o.model, out),
  });
  await writeModelDirectory(out, { copyFrom: o.model, extraJson: { [ADAPTER_CONFIG_FILE]: config, [RECEIPT_FILE]: receipt } }, async (tmp) => {
    // PEFT saves with this metadata; loaders that check a safetensors file's framework look for it.
    await writeSafetensorsFile(join(tmp, ADAPTER_WEIGHTS_FILE), tensors.map((t) => ({ ...t, name: stored(t.name) })), { format: 'pt' });
  });

  const written = new Map((await readSafetensorsFile(join(out, ADAPTER_WEIGHTS_FILE))).map((t) => [t.name, t]));
  const initial = adapterTensors(run, new Map(lora.trainable.map((n) => [n, run.params.get(n)!.data])), dtype);
  receipt.trainable_changed = initial.filter((t) => sha256(written.get(stored(t.name))!) !== sha256(t)).map((t) => t.name);
  // The base's files as they are now, hashed tensor by tensor: a change under us during training shows here.
  const reread = await storedHashes(ckpt.files, ckpt);
  receipt.frozen = proveFrozen(run.frozenBefore, reread);
  receipt.frozen_unchanged = Object.values(receipt.frozen).every((p) => p.sha256_before === p.sha256_after);
  if (ckpt.llava) receipt.vision = visionRecord(run, reread);
  if (!receipt.frozen_unchanged || receipt.vision?.unchanged === false) {
    const moved = Object.entries(receipt.frozen).filter(([, p]) => p.sha256_before !== p.sha256_after).map(([n]) => n);
    throw new NarrowtuneError('internal', `base model tensors changed in ${o.model} during training: ${moved.join(', ')}`);
  }
  await writeFileAtomic(join(out, RECEIPT_FILE), `${JSON.stringify(receipt, null, 2)}\n`);
  return { out, receipt };
}
