// The end of a fine-tune: the output checkpoint (trainable tensors in the input's dtype, every other tensor
// byte-for-byte from the input) and its receipt, whose frozen-tensor proof is read back from the written file.
// A LoRA run writes a PEFT adapter, or with mergeAdapter the merged weights this way (write-adapter.ts).
import { join, resolve } from 'node:path';
import { writeFileAtomic, WEIGHTS_FILE } from '../model/checkpoint.js';
import { writeModel } from '../model/load-model.js';
import { fromFloat32, type StoredTensor } from '../model/safetensors.js';
import type { FloatArray } from '../runtime/session.js';
import { NarrowtuneError } from '../util/errors.js';
import type { BudgetStop } from './events.js';
import { inputPath, proveFrozen, RECEIPT_FILE, RECEIPT_VERSION, sha256, storedHashes, type Receipt } from './receipt.js';
import type { TrainingRun } from './setup.js';
import { adapterRecord, hasAdapter, mergedTensors, visionRecord, writeAdapterResult } from './write-adapter.js';

/** What the monitors saw during the run. */
export interface Watched {
  validation: Receipt['validation'];
  probes: Receipt['probes'];
  budgetStop: BudgetStop | null;
}

export async function writeResult(run: TrainingRun, weights: ReadonlyMap<string, FloatArray>, watched: Watched): Promise<{ out: string; receipt: Receipt }> {
  const { o, ckpt, policy, dataset } = run;
  const out = resolve(o.out);
  const lora = hasAdapter(run) ? run : null;
  const stop = watched.budgetStop;
  const receipt: Receipt = {
    narrowtune_receipt_version: RECEIPT_VERSION,
    created_at: new Date().toISOString(),
    base_model: inputPath(o.model, out),
    data: inputPath(o.data, out),
    policy: { name: policy.name, include: policy.include, exclude: policy.exclude },
    trainable: policy.trainable,
    hyperparameters: run.hyperparameters,
    data_stats: {
      form: dataset.form,
      examples: dataset.examples.length,
      truncated: dataset.truncated,
      train_tokens: dataset.trainTokens,
      ...(run.images ? { images: run.images.features.length, image_positions: imagePositions(run), vision_runs: run.images.computed } : {}),
    },
    steps: run.state.history,
    frozen: {},
    frozen_unchanged: false,
    trainable_changed: [],
    validation: watched.validation,
    probes: watched.probes,
    drift_budget_stop: stop && { limit: stop.limit, value: stop.value, threshold: stop.threshold, step: stop.step, kept_step: stop.keptStep },
    ...(lora ? { adapter: adapterRecord(lora) } : {}),
  };
  if (lora && !o.mergeAdapter) return writeAdapterResult(lora, weights, receipt);
  const tensors: StoredTensor[] = lora ? mergedTensors(lora, weights) : [...ckpt.tensors.values()].map((t) => {
    const trained = weights.get(t.name);
    return trained ? { ...t, data: fromFloat32(Float32Array.from(trained), t.dtype) } : t;
  });
  // Merged adapters change their targets: those are proven changed, every other tensor unchanged.
  const changed = lora ? lora.lora.layout.targets : policy.trainable;
  const merged = new Set(lora ? changed : []);
  const frozenBefore = lora ? new Map([...run.frozenBefore].filter(([n]) => !merged.has(n))) : run.frozenBefore;
  await writeModel(out, ckpt, tensors, { copyFrom: o.model, extraJson: { [RECEIPT_FILE]: receipt } });
  // The receipt written with the weights says frozen_unchanged: false until the read-back proves otherwise.
  const written = await storedHashes([join(out, WEIGHTS_FILE)], ckpt);
  if (ckpt.llava) receipt.vision = visionRecord(run, written);
  verifyReceipt(join(out, WEIGHTS_FILE), written, receipt, frozenBefore, ckpt.tensors, changed);
  await writeFileAtomic(join(out, RECEIPT_FILE), `${JSON.stringify(receipt, null, 2)}\n`);
  return { out, receipt };
}

/** Fills in the proof from the weights read back from disk; fails loudly if a frozen tensor moved. */
function verifyReceipt(
  file: string,
  written: ReadonlyMap<string, string>,
  receipt: Receipt,
  frozenBefore: ReadonlyMap<string, string>,
  input: ReadonlyMap<string, StoredTensor>,
  trainable: readonly string[],
): void {
  receipt.frozen = proveFrozen(frozenBefore, written);
  receipt.frozen_unchanged = Object.values(receipt.frozen).every((p) => p.sha256_before === p.sha256_after);
  receipt.trainable_changed = trainable.filter((n) => written.get(n) !== sha256(input.get(n)!));
  if (!receipt.frozen_unchanged || receipt.vision?.unchanged === false) {
    const moved = Object.entries(receipt.frozen).filter(([, p]) => p.sha256_before !== p.sha256_after).map(([n]) => n);
    throw new NarrowtuneError('internal', `frozen tensors changed in ${file}: ${moved.join(', ')}`);
  }
}

function imagePositions(run: TrainingRun): number {
  let n = 0;
  for (const ex of run.dataset.examples) for (const p of ex.images ?? []) n += p.count;
  return n;
}
