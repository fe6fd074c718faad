// Hyper-parameters of a fine-tune, their defaults and their bounds: shared by the CLI and the service.
import { join } from 'node:path';
import type { PolicySpec } from '../policy/policy.js';
import type { Kernels } from '../graph/graph-builder.js';
import type { Device } from '../runtime/session.js';
import { DEVICES } from '../runtime/session.js';
import { NarrowtuneError, type FieldViolation } from '../util/errors.js';
import { compileUserRegex } from '../util/user-regex.js';
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
  /**
   * A step-checkpoint directory (checkpointDir/step-N) to continue from, written by an earlier attempt of this same
   * run; it must exist and match. Takes precedence over `resume`. The service's runner passes the checkpoint its job
   * store recorded, so a worker never resumes from files a worker that lost the job may still be writing.
   */
  resumeFrom: string | null;
  /**
   * Remove step checkpoints older than the newest two as new ones are written (default). The service's runner turns
   * it off and removes them itself once its store recorded a newer one: the checkpoint a store names as the resume
   * point must outlive a trainer that goes on writing after its worker died or lost the job.
   */
  pruneCheckpoints: boolean;
  /** onnxruntime intra-op threads for the training sessions; null: its default (one per physical core). A host setting, never part of a request. */
  threads: number | null;
  /**
   * How frozen weight matrices are held: 'float32', or 'checkpoint' to keep those the checkpoint stores in BF16/F16
   * in that type, cast to float32 at each use (the same arithmetic; bench/README.md measures what it saves and costs).
   * A host setting, never part of a request.
   */
  frozenPrecision: 'float32' | 'checkpoint';
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
  /**
   * Learning without forgetting: loss = CE + weight·T²·KL(softmax(z_teacher/T) ‖ softmax(z/T)), the KL a mean over
   * the label tokens of each optimizer step. teacher: a model directory of the same architecture; null: the base model.
   */
  lwf: LwfOptions | null;
  /** Train low-rank adapters (LoRA) beside frozen weights instead of the weights themselves; null: no adapter. */
  lora: LoraOptions | null;
  /** With lora: write merged full weights (W + alpha/rank·B·A) instead of a PEFT adapter. */
  mergeAdapter: boolean;
  /**
   * Directories images of image-text data may also lie in besides the data file's own (real paths): the service's
   * data roots. Absent: only the data file's directory. A host setting, never part of a request.
   */
  imageRoots?: string[];
  /** Directory of the on-disk image-feature cache (eval/image-features.ts); absent: memory only. A host setting. */
  featureCache?: string | null;
}

/**
 * A server's image-feature cache for one tenant: tenants share no files, so no cache hit (nor how fast a call
 * answers) tells one tenant which images another used. Without authentication there are no tenants: `dir` itself.
 */
export function tenantFeatureCache(dir: string | null | undefined, tenant: string | null): string | null {
  if (!dir) return null;
  // Tenant names match TENANT_NAME (store/key-store.ts): one path component, never '.' or '..'.
  return tenant === null ? dir : join(dir, 'tenants', tenant);
}

/** LoRA as PEFT defines it: y = W x + (alpha/rank)·B(A·dropout(x)) on each targeted linear layer. */
export interface LoraOptions {
  rank: number;
  alpha: number;
  /** Dropout probability on the adapter's input path, in [0, 1). */
  dropout: number;
  /** RE2 patterns over weight names; empty: the policy's trainable projection weights. */
  targets: string[];
}

export interface LwfOptions {
  weight: number;
  temperature: number;
  teacher: string | null;
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
  resumeFrom: null,
  pruneCheckpoints: true,
  threads: null,
  frozenPrecision: 'float32',
  validationData: null,
  evalEvery: null,
  probeData: null,
  probeEvery: null,
  tokenClasses: [],
  driftBudget: { maxKlToBase: null, maxNumberMassDelta: null, maxHeldoutLossDelta: null },
  optimizerPlacement: 'auto',
  kernels: 'auto',
  lwf: null,
  lora: null,
  mergeAdapter: false,
};

/** PEFT's LoraConfig defaults (the paper's recipe is rank 256, alpha 32 on the MLP). */
export const LORA_DEFAULTS: LoraOptions = { rank: 8, alpha: 8, dropout: 0, targets: [] };

/** The paper's code distils at temperature 2. */
export const DEFAULT_LWF_TEMPERATURE = 2;

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
  lwfWeight: [0, 1000],
  lwfTemperature: [0, 100],
  loraRank: [1, 4096],
  loraTargets: [0, 64],
  threads: [1, 1024],
} as const;

/** The options that are not file paths: what the service checks without a filesystem. */
export type TuneSettings = Omit<TuneOptions, 'model' | 'data' | 'out' | 'checkpointDir' | 'resume' | 'resumeFrom' | 'pruneCheckpoints' | 'threads' | 'frozenPrecision' | 'featureCache' | 'validationData' | 'probeData'>;

/** Which optional data files were given (whether or not they turn out readable): some settings need them. */
export interface GivenData {
  validationData: boolean;
  probeData: boolean;
}

const inRange = (x: number, [lo, hi]: readonly [number, number]) => Number.isFinite(x) && x >= lo && x <= hi;

/** The violation of an integer setting outside `range`, or null; shared so every caller words it alike. */
export function integerViolation(x: number, field: string, range: readonly [number, number]): FieldViolation | null {
  return Number.isInteger(x) && inRange(x, range) ? null : { field, description: `must be an integer in [${range[0]}, ${range[1]}], got ${x}` };
}

export function deviceViolation(device: string, field = 'device'): FieldViolation | null {
  return (DEVICES as readonly string[]).includes(device) ? null : { field, description: `must be one of ${DEVICES.join(', ')}, got "${device}"` };
}

/**
 * Ranges and enums of the settings, and the data some of them need: every problem at once. Fields are
 * named as `tune`'s flags (snake case); the service renames them to its request fields.
 */
export function settingsViolations(o: TuneSettings, given: GivenData): FieldViolation[] {
  const v: FieldViolation[] = [];
  const need = (ok: boolean, field: string, description: string) => {
    if (!ok) v.push({ field, description });
  };
  const int = (x: number, field: string, range: readonly [number, number]) => {
    const bad = integerViolation(x, field, range);
    if (bad) v.push(bad);
  };

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
  if (o.evalEvery !== null) int(o.evalEvery, 'eval_every', LIMITS.steps);
  if (o.probeEvery !== null) int(o.probeEvery, 'probe_every', LIMITS.steps);
  need(o.evalEvery === null || given.validationData, 'eval_every', 'needs validation data');
  need(o.tokenClasses.length === 0 || given.probeData, 'token_classes', 'need probe data');
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
    need(given.probeData, field, 'a drift budget needs probe data to measure drift on');
  }
  need(['auto', 'graph', 'host'].includes(o.optimizerPlacement), 'optimizer_placement', `must be auto, graph or host, got "${o.optimizerPlacement}"`);
  need(o.optimizerPlacement !== 'host' || o.precision === 'float32', 'optimizer_placement', 'host updates run in float32 only');
  need(['auto', 'fused', 'portable'].includes(o.kernels), 'kernels', `must be auto, fused or portable, got "${o.kernels}"`);
  if (o.lwf) {
    const { weight, temperature, teacher } = o.lwf;
    const [wLo, wHi] = LIMITS.lwfWeight;
    const [tLo, tHi] = LIMITS.lwfTemperature;
    need(Number.isFinite(weight) && weight > wLo && weight <= wHi, 'lwf_weight', `must be in (${wLo}, ${wHi}], got ${weight}`);
    need(Number.isFinite(temperature) && temperature > tLo && temperature <= tHi, 'lwf_temperature', `must be in (${tLo}, ${tHi}], got ${temperature}`);
    need(teacher === null || teacher.length > 0, 'teacher', 'must be a model directory, or absent for the base model');
  }
  v.push(...loraViolations(o));
  const device = deviceViolation(o.device);
  if (device) v.push(device);
  return v;
}

function loraViolations(o: Pick<TuneSettings, 'lora' | 'mergeAdapter'>): FieldViolation[] {
  const v: FieldViolation[] = [];
  // Specs stored before LoRA existed lack the field.
  const l = o.lora ?? null;
  if (l === null) {
    if (o.mergeAdapter) v.push({ field: 'merge_adapter', description: 'needs an adapter (--adapter lora)' });
    return v;
  }
  const rank = integerViolation(l.rank, 'lora_rank', LIMITS.loraRank);
  if (rank) v.push(rank);
  if (!(Number.isFinite(l.alpha) && l.alpha > 0)) v.push({ field: 'lora_alpha', description: `must be a finite number > 0, got ${l.alpha}` });
  if (!(Number.isFinite(l.dropout) && l.dropout >= 0 && l.dropout < 1)) v.push({ field: 'lora_dropout', description: `must be in [0, 1), got ${l.dropout}` });
  if (l.targets.length > LIMITS.loraTargets[1]) v.push({ field: 'lora_target', description: `at most ${LIMITS.loraTargets[1]} patterns, got ${l.targets.length}` });
  // Syntax only: which weights a pattern matches is known once the model is read (trainer/lora.ts).
  l.targets.slice(0, LIMITS.loraTargets[1]).forEach((p, i) => {
    try {
      compileUserRegex(p, `lora_target[${i}]`);
    } catch (e) {
      v.push(...(e instanceof NarrowtuneError ? e.violations : [{ field: `lora_target[${i}]`, description: String(e) }]));
    }
  });
  return v;
}

/** The paths a local run needs; whether they exist is found when they are opened. */
export function pathViolations(o: Pick<TuneOptions, 'model' | 'data' | 'out' | 'checkpointEvery' | 'checkpointDir'>): FieldViolation[] {
  const v: FieldViolation[] = [];
  if (o.model.length === 0) v.push({ field: 'model', description: 'is required' });
  if (o.data.length === 0) v.push({ field: 'data', description: 'is required' });
  if (o.out.length === 0) v.push({ field: 'out', description: 'is required' });
  if (o.checkpointEvery !== null && o.checkpointDir === null) v.push({ field: 'checkpoint_dir', description: 'is required with checkpoint_every' });
  return v;
}

/** Checks every option, paths and settings, and reports all problems at once. */
export function validateOptions(o: TuneOptions): void {
  const v = [...pathViolations(o), ...settingsViolations(o, { validationData: o.validationData !== null, probeData: o.probeData !== null })];
  const threads = o.threads === null ? null : integerViolation(o.threads, 'threads', LIMITS.threads);
  if (threads) v.push(threads);
  if (!['float32', 'checkpoint'].includes(o.frozenPrecision)) v.push({ field: 'frozen_precision', description: `must be float32 or checkpoint, got "${o.frozenPrecision}"` });
  if (v.length > 0) {
    throw new NarrowtuneError('invalid_argument', v.map((x) => `${x.field}: ${x.description}`).join('\n'), v);
  }
}
