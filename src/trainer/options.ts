// Hyper-parameters of a fine-tune, their defaults and their bounds: shared by the CLI and the service.
import type { PolicySpec } from '../policy/policy.js';
import type { Kernels } from '../graph/graph-builder.js';
import type { Device } from '../runtime/session.js';
import { DEVICES } from '../runtime/session.js';
import { NarrowtuneError, type FieldViolation } from '../util/errors.js';
import type { ScheduleKind } from './schedule.js';

/** Limits on drift from the base model, checked at every probe; null means no limit. */
export interface DriftBudget {
  maxKlToBase: number | null;
  maxNumberMassDelta: number | null;
  maxHeldoutLossDelta: number | null;
}

export interface TuneOptions {
  model: string; // Hugging Face model directory
  data: string; // JSONL training data
  out: string; // output checkpoint directory
  policy: PolicySpec;
  optimizer: 'adamw' | 'sgd';
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  steps: number | null; // optimizer steps; null: derived from epochs
  epochs: number;
  batchSize: number;
  gradAccum: number;
  seqLen: number;
  schedule: ScheduleKind;
  warmupSteps: number | null; // null: 3% of the steps, rounded up (the paper's recipe)
  clipNorm: number | null; // null: no clipping
  seed: number;
  device: Device;
  /** float64 is for exactness checks against a reference: about twice the time and memory. */
  precision: 'float32' | 'float64';
  /** Resumable step checkpoints every N optimizer steps into checkpointDir; null: none. */
  checkpointEvery: number | null;
  checkpointDir: string | null;
  /** Continue from the newest step checkpoint in checkpointDir written by this same run, if any. */
  resume: boolean;
  /** JSONL scored every evalEvery steps (validation loss, token accuracy); null: none. */
  validationData: string | null;
  evalEvery: number | null; // null: about ten times per job
  /** Held-out JSONL probed every probeEvery steps for drift from the base model; null: none. */
  probeData: string | null;
  probeEvery: number | null; // null: about ten times per job
  /** Extra token classes whose probability mass the probes report, as regexes over token text. */
  tokenClasses: { name: string; pattern: string }[];
  driftBudget: DriftBudget;
  /**
   * Where clipping and the optimizer update run: in the step graph, or on the host in place (less peak
   * memory, slower). 'auto' picks the host above 1 GiB of frozen weights.
   */
  optimizerPlacement: 'auto' | 'graph' | 'host';
  /** Lowering of attention and cross-entropy; 'auto' picks per execution provider (runtime/session.ts kernelsFor). */
  kernels: 'auto' | Kernels;
}

/** The paper's recipe (AdamW, lr 5e-6, cosine with 3% warm-up, no weight decay) with HF's other defaults. */
export const DEFAULTS: Omit<TuneOptions, 'model' | 'data' | 'out'> = {
  policy: {},
  optimizer: 'adamw',
  lr: 5e-6,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  steps: null,
  epochs: 1,
  batchSize: 4,
  gradAccum: 1,
  seqLen: 1024,
  schedule: 'cosine',
  warmupSteps: null,
  clipNorm: 1.0,
  seed: 42,
  device: 'cpu',
  precision: 'float32',
  checkpointEvery: null,
  checkpointDir: null,
  resume: false,
  validationData: null,
  evalEvery: null,
  probeData: null,
  probeEvery: null,
  tokenClasses: [],
  driftBudget: { maxKlToBase: null, maxNumberMassDelta: null, maxHeldoutLossDelta: null },
  optimizerPlacement: 'auto',
  kernels: 'auto',
};

export const WARMUP_FRACTION = 0.03;

/** Bounds keep a request from asking for absurd work or memory; they are generous for real use. */
export const LIMITS = {
  lr: [0, 1],
  steps: [1, 10_000_000],
  epochs: [1, 1000],
  batchSize: [1, 1024],
  gradAccum: [1, 1024],
  seqLen: [2, 131_072],
  seed: [0, 2 ** 32 - 1],
} as const;

/** Checks every field and reports all problems at once (the gRPC layer turns them into field violations). */
export function validateOptions(o: TuneOptions): void {
  const v: FieldViolation[] = [];
  const need = (ok: boolean, field: string, description: string) => {
    if (!ok) v.push({ field, description });
  };
  const inRange = (x: number, [lo, hi]: readonly [number, number]) => Number.isFinite(x) && x >= lo && x <= hi;
  const int = (x: number, field: string, range: readonly [number, number]) =>
    need(Number.isInteger(x) && inRange(x, range), field, `must be an integer in [${range[0]}, ${range[1]}], got ${x}`);

  need(o.model.length > 0, 'model', 'is required');
  need(o.data.length > 0, 'data', 'is required');
  need(o.out.length > 0, 'out', 'is required');
  need(['adamw', 'sgd'].includes(o.optimizer), 'optimizer', `must be adamw or sgd, got "${o.optimizer}"`);
  need(o.lr > LIMITS.lr[0] && o.lr <= LIMITS.lr[1], 'lr', `must be in (0, 1], got ${o.lr}`);
  need(Number.isFinite(o.weightDecay) && o.weightDecay >= 0 && o.weightDecay < 1, 'weight_decay', `must be in [0, 1), got ${o.weightDecay}`);
  need(o.beta1 >= 0 && o.beta1 < 1, 'beta1', `must be in [0, 1), got ${o.beta1}`);
  need(o.beta2 >= 0 && o.beta2 < 1, 'beta2', `must be in [0, 1), got ${o.beta2}`);
  need(o.eps > 0 && o.eps < 1, 'eps', `must be in (0, 1), got ${o.eps}`);
  if (o.steps !== null) int(o.steps, 'steps', LIMITS.steps);
  int(o.epochs, 'epochs', LIMITS.epochs);
  int(o.batchSize, 'batch_size', LIMITS.batchSize);
  int(o.gradAccum, 'grad_accum', LIMITS.gradAccum);
  int(o.seqLen, 'seq_len', LIMITS.seqLen);
  int(o.seed, 'seed', LIMITS.seed);
  need(['constant', 'cosine'].includes(o.schedule), 'schedule', `must be constant or cosine, got "${o.schedule}"`);
  if (o.warmupSteps !== null) int(o.warmupSteps, 'warmup_steps', [0, LIMITS.steps[1]]);
  if (o.clipNorm !== null) need(Number.isFinite(o.clipNorm) && o.clipNorm > 0, 'clip_norm', `must be > 0, got ${o.clipNorm}`);
  need(['float32', 'float64'].includes(o.precision), 'precision', `must be float32 or float64, got "${o.precision}"`);
  if (o.checkpointEvery !== null) int(o.checkpointEvery, 'checkpoint_every', LIMITS.steps);
  need(o.checkpointEvery === null || o.checkpointDir !== null, 'checkpoint_dir', 'is required with checkpoint_every');
  if (o.evalEvery !== null) int(o.evalEvery, 'eval_every', LIMITS.steps);
  if (o.probeEvery !== null) int(o.probeEvery, 'probe_every', LIMITS.steps);
  need(o.evalEvery === null || o.validationData !== null, 'eval_every', 'needs validation data');
  need(o.tokenClasses.length === 0 || o.probeData !== null, 'token_classes', 'need probe data');
  const b = o.driftBudget;
  const limits: [keyof DriftBudget, string][] = [
    ['maxKlToBase', 'drift_budget.max_kl_to_base'],
    ['maxNumberMassDelta', 'drift_budget.max_number_mass_delta'],
    ['maxHeldoutLossDelta', 'drift_budget.max_heldout_loss_delta'],
  ];
  for (const [key, field] of limits) {
    const x = b[key];
    if (x === null) continue;
    need(Number.isFinite(x), field, `must be a finite number, got ${x}`);
    need(o.probeData !== null, field, 'a drift budget needs probe data to measure drift on');
  }
  need(['auto', 'graph', 'host'].includes(o.optimizerPlacement), 'optimizer_placement', `must be auto, graph or host, got "${o.optimizerPlacement}"`);
  need(o.optimizerPlacement !== 'host' || o.precision === 'float32', 'optimizer_placement', 'host updates run in float32 only');
  need(['auto', 'fused', 'portable'].includes(o.kernels), 'kernels', `must be auto, fused or portable, got "${o.kernels}"`);
  need(DEVICES.includes(o.device), 'device', `must be one of ${DEVICES.join(', ')}, got "${o.device}"`);
  if (v.length > 0) {
    throw new NarrowtuneError('invalid_argument', v.map((x) => `${x.field}: ${x.description}`).join('\n'), v);
  }
}
