// The receipt (narrowtune.json): what was trained, how, and SHA-256 proof that every frozen tensor
// came out bit-for-bit identical to what went in.
import { createHash } from 'node:crypto';
import { relative, resolve } from 'node:path';
import type { Checkpoint } from '../model/checkpoint.js';
import { partOf, toFileName, type LlavaPart } from '../model/llava-names.js';
import { hashSafetensorsFile } from '../model/safetensors-file.js';
import type { StoredTensor } from '../model/safetensors.js';

export const RECEIPT_FILE = 'narrowtune.json';
export const RECEIPT_VERSION = 1;

/**
 * How the receipt names an input (base model, data): relative to the output directory, so a receipt that travels
 * with its model does not carry the absolute paths (home or temporary folders) of the machine that trained it.
 */
export function inputPath(input: string, out: string): string {
  return relative(resolve(out), resolve(input)) || '.';
}

export function sha256(t: StoredTensor): string {
  return createHash('sha256').update(t.data).digest('hex');
}

/** A tensor, or the sha256 of its bytes as hashSafetensorsFile read it back from disk. */
export type TensorOrHash = StoredTensor | string;

const hashOf = (t: TensorOrHash): string => (typeof t === 'string' ? t : sha256(t));

/**
 * sha256 of every tensor of a model's weight files, read tensor by tensor (no second copy of the model in memory),
 * under the names loadModel gives them: a LLaVA file stores its layout's names.
 */
export async function storedHashes(files: readonly string[], ckpt: Pick<Checkpoint, 'tensors' | 'llava'>): Promise<Map<string, string>> {
  const byFileName = new Map<string, string>();
  for (const file of files) for (const [name, h] of await hashSafetensorsFile(file)) byFileName.set(name, h);
  const llava = ckpt.llava;
  if (!llava) return byFileName;
  const hashes = new Map<string, string>();
  for (const name of ckpt.tensors.keys()) {
    const h = byFileName.get(toFileName(llava.layout, name));
    if (h !== undefined) hashes.set(name, h);
  }
  return hashes;
}

export interface StepRecord {
  step: number; // 1-based optimizer step
  loss: number;
  lr: number;
  grad_norm: number;
  /** With LwF: `loss` = cross_entropy + weight·T²·lwf_kl. */
  cross_entropy?: number;
  lwf_kl?: number;
}

export interface FrozenProof {
  sha256_before: string;
  sha256_after: string;
}

export interface Receipt {
  narrowtune_receipt_version: number;
  created_at: string;
  /** inputPath(): relative to the output directory. */
  base_model: string;
  data: string;
  policy: { name: string; include: string[]; exclude: string[] };
  trainable: string[];
  hyperparameters: Record<string, unknown>;
  data_stats: Record<string, unknown>;
  steps: StepRecord[];
  /** Every tensor of the checkpoint that the policy froze, hashed in the input and in the written output. */
  frozen: Record<string, FrozenProof>;
  frozen_unchanged: boolean;
  /** Trainable tensors whose bytes differ from the input's. */
  trainable_changed: string[];
  validation: { step: number; loss: number; token_accuracy: number }[];
  /** Drift figures at every probe (see README: each is a mean over the probe's label positions). */
  probes: ({ step: number } & Record<string, unknown>)[];
  /** Set when a drift budget stopped training: which limit, and which step's weights were kept. */
  drift_budget_stop: { limit: string; value: number; threshold: number; step: number; kept_step: number } | null;
  /**
   * With LoRA: the adapted weights and whether the output is a PEFT adapter (base_model plus adapter_model.safetensors,
   * `frozen` then proves the base model's files unchanged) or merged full weights (`trainable_changed` lists the merged).
   */
  adapter?: { type: 'lora'; rank: number; alpha: number; dropout: number; targets: string[]; merged: boolean };
  /**
   * LLaVA-style models: sha256 over the vision tower's, the projector's and image_newline's tensors (each tensor's
   * sha256 in name order), in the input and in the written output. `unchanged` is true only when all three agree.
   */
  vision?: {
    tower: FrozenProof;
    projector: FrozenProof;
    image_newline: FrozenProof | null;
    unchanged: boolean;
    images: string;
  };
}

/** sha256 over one part's tensors: each tensor's name and sha256, in name order; null when the part has none. */
function partHash(tensors: ReadonlyMap<string, TensorOrHash>, part: LlavaPart): string | null {
  const names = [...tensors.keys()].filter((n) => partOf(n) === part).sort();
  if (names.length === 0) return null;
  const h = createHash('sha256');
  for (const n of names) h.update(`${n}:${hashOf(tensors.get(n)!)}\n`);
  return h.digest('hex');
}

/** The receipt's record of a LLaVA model's tower, projector and image_newline, before and after. */
export function visionHashes(before: ReadonlyMap<string, StoredTensor>, after: ReadonlyMap<string, TensorOrHash>): Omit<NonNullable<Receipt['vision']>, 'images'> {
  const proof = (part: LlavaPart): FrozenProof | null => {
    const b = partHash(before, part);
    return b === null ? null : { sha256_before: b, sha256_after: partHash(after, part) ?? 'missing' };
  };
  const tower = proof('vision')!;
  const projector = proof('projector')!;
  const newline = proof('newline');
  const unchanged = [tower, projector, newline].every((p) => p === null || p.sha256_before === p.sha256_after);
  return { tower, projector, image_newline: newline, unchanged };
}

/** Hashes `after` tensors (as read back from disk) against `before` ones. */
export function proveFrozen(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, TensorOrHash>): Record<string, FrozenProof> {
  const proof: Record<string, FrozenProof> = {};
  for (const [name, hash] of before) {
    const t = after.get(name);
    proof[name] = { sha256_before: hash, sha256_after: t ? hashOf(t) : 'missing' };
  }
  return proof;
}
