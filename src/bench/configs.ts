// What a benchmark row is: a model shape (random weights, generated once), a batch shape, a policy, and the
// TuneOptions that drive the real trainer for it.
import type { Kernels } from '../graph/graph-builder.js';
import type { InitModelOptions } from '../model/init-model.js';
import type { Device } from '../runtime/session.js';
import { PRESET_NAMES } from '../policy/policy.js';
import { DEFAULTS, type LoraOptions, type TuneOptions } from '../trainer/options.js';

export interface BenchConfig {
  name: string;
  model: Omit<InitModelOptions, 'out' | 'vocabFrom'> & { vocab?: number };
  seq: number;
  batch: number;
  note: string;
}

/** The benchmark's model shapes; `vocab` pads the built-in byte-level tokenizer up to a real model's vocabulary. */
export const BENCH_CONFIGS: Record<string, BenchConfig> = {
  tiny: {
    name: 'tiny',
    model: { arch: 'qwen2', hidden: 64, layers: 2, heads: 4, kvHeads: 2, seed: 7 },
    seq: 64,
    batch: 2,
    note: 'smoke run',
  },
  medium: {
    name: 'medium',
    model: { arch: 'qwen2', hidden: 512, layers: 8, heads: 8, kvHeads: 4, intermediate: 1408, seed: 7 },
    seq: 256,
    batch: 4,
    note: 'the reference workload',
  },
  'qwen2.5-0.5b-shape': {
    name: 'qwen2.5-0.5b-shape',
    model: { arch: 'qwen2', hidden: 896, layers: 24, heads: 14, kvHeads: 2, intermediate: 4864, tieEmbeddings: true, vocab: 151936, seed: 7 },
    seq: 512,
    batch: 1,
    note: 'Qwen2.5-0.5B shapes, random weights; on demand (minutes, GBs)',
  },
  'qwen2.5-0.5b-shape-2k': {
    name: 'qwen2.5-0.5b-shape-2k',
    model: { arch: 'qwen2', hidden: 896, layers: 24, heads: 14, kvHeads: 2, intermediate: 4864, tieEmbeddings: true, vocab: 151936, seed: 7 },
    seq: 2048,
    batch: 1,
    note: 'the 0.5B shape at sequence 2048; on demand (minutes, GBs)',
  },
  'llama-3.2-1b-shape': {
    name: 'llama-3.2-1b-shape',
    model: { arch: 'llama', hidden: 2048, layers: 16, heads: 32, kvHeads: 8, intermediate: 8192, tieEmbeddings: true, vocab: 128256, seed: 7 },
    seq: 512,
    batch: 1,
    note: 'Llama-3.2-1B shapes, random weights; on demand (minutes, GBs)',
  },
  'qwen2.5-0.5b-shape-bf16': {
    name: 'qwen2.5-0.5b-shape-bf16',
    model: { arch: 'qwen2', hidden: 896, layers: 24, heads: 14, kvHeads: 2, intermediate: 4864, tieEmbeddings: true, vocab: 151936, seed: 7, dtype: 'BF16' },
    seq: 512,
    batch: 1,
    note: 'the 0.5B shape with BF16 weights, as Qwen2.5 ships them; on demand',
  },
};

export const DEFAULT_CONFIGS = ['tiny', 'medium'];
export const DEFAULT_POLICIES = ['full', 'mlp_gate_up', 'sa_proj'];
export const DEFAULT_STEPS = 8;
export const DEFAULT_WARMUP = 2;
/** The loss check needs at least this many steps (warm-up included): the loss of step K+1 has seen K updates. */
export const CHECK_MIN_STEPS = 4;
export const LOSS_RTOL = 1e-3;
export const TORCH_DEVICES = ['cpu', 'cuda'] as const;
export type TorchDevice = (typeof TORCH_DEVICES)[number];
/** Constant lr large enough that 3 AdamW updates move the loss measurably (a wrong update shows). */
export const BENCH_LR = 1e-3;

/** The whole benchmark run, as `narrowtune bench`'s flags give it. */
export interface BenchSettings {
  configs: BenchConfig[];
  policies: string[];
  steps: number;
  warmup: number;
  vsTorch: boolean;
  /** PyTorch's threads (default: the number of CPUs). */
  threads: number;
  /** onnxruntime's intra-op threads: only when --threads is given, else its own default, as `tune` has. */
  ortThreads: number | null;
  json: string | null;
  profile: string | null;
  cacheDir: string;
  waitIdle: number;
  profileThreads: number | null;
  device: Device;
  kernels: 'auto' | Kernels;
  /** As `tune --frozen-precision`. */
  frozenPrecision: TuneOptions['frozenPrecision'];
  torchDevice: TorchDevice;
  python: string;
  rowTimeout: number;
}

/** LoRA rows adapt a preset's projections: `mlp_gate_up+lora256` is rank 256 on gate and up (the paper's alpha 32). */
const LORA_ROW = /^(\w+)\+lora(\d+)$/;
const LORA_ROW_ALPHA = 32;

/** A row's method: a preset, or a preset's projections with LoRA; null for a name that is neither. */
export function benchMethod(name: string): { preset: string; lora: LoraOptions | null } | null {
  const m = LORA_ROW.exec(name);
  const preset = m ? m[1] : name;
  if (!(PRESET_NAMES as string[]).includes(preset)) return null;
  return { preset, lora: m ? { rank: Number(m[2]), alpha: LORA_ROW_ALPHA, dropout: 0, targets: [] } : null };
}

/** What `narrowtune tune` would be given for this row: the defaults, a constant lr and no warm-up. */
export function benchTuneOptions(
  model: string,
  data: string,
  out: string,
  c: BenchConfig,
  policy: string,
  steps: number,
  s: Pick<BenchSettings, 'device' | 'kernels' | 'ortThreads' | 'frozenPrecision'>,
): TuneOptions {
  return {
    ...DEFAULTS,
    threads: s.ortThreads,
    frozenPrecision: s.frozenPrecision,
    device: s.device,
    kernels: s.kernels,
    model,
    data,
    out,
    policy: { preset: benchMethod(policy)?.preset ?? policy },
    lora: benchMethod(policy)?.lora ?? null,
    steps,
    batchSize: c.batch,
    seqLen: c.seq,
    lr: BENCH_LR,
    schedule: 'constant',
    warmupSteps: 0,
  };
}
