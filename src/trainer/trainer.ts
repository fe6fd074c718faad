// The fine-tuning loop: load → resolve policy → compile the step graph → train → write checkpoint + receipt.
// It blocks the thread it runs on (session.run is synchronous native code): callers use run-in-worker.ts.
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type ort from 'onnxruntime-node';
import { collate, microBatchIndices, padLength } from '../data/batches.js';
import { loadDataset } from '../data/dataset.js';
import { loadTokenizer } from '../data/tokenizer.js';
import type { Kernels } from '../graph/graph-builder.js';
import { IO, compileTrainStep, type ParamTensor } from '../graph/train-step.js';
import { optimizerScalars, type OptimizerSpec } from '../graph/optimizer.js';
import { loadCheckpoint, writeCheckpoint, writeFileAtomic, WEIGHTS_FILE } from '../model/checkpoint.js';
import { expectedTensors } from '../model/config.js';
import { fromFloat32, viewFloat32, type StoredTensor } from '../model/safetensors.js';
import { readSafetensorsFile } from '../model/safetensors-file.js';
import { resolvePolicy, type ResolvedPolicy } from '../policy/policy.js';
import { createSessionFor, floatTensor, int64Tensor, SessionCache, type FloatArray, type SessionHandle } from '../runtime/session.js';
import { DataFileError, NarrowtuneError } from '../util/errors.js';
import { type TuneOptions, validateOptions, WARMUP_FRACTION } from './options.js';
import { proveFrozen, RECEIPT_FILE, RECEIPT_VERSION, sha256, type Receipt } from './receipt.js';
import { learningRate, type Schedule } from './schedule.js';
import { loadLatestStepCheckpoint, saveStepCheckpoint, type TrainState } from './step-checkpoint.js';
import { checkBudget, createMonitors, due, type BudgetBreach } from './monitors.js';
import { clipCoefficient, hostUpdate } from './host-optimizer.js';
import type { DriftFigures } from '../eval/scorer.js';

export type TrainEvent =
  | {
      type: 'start';
      totalSteps: number;
      batchSize: number;
      gradAccum: number;
      seq: number;
      examples: number;
      trainable: string[];
      trainableParameters: number;
      frozenTensors: number;
      provider: string;
      compileMs: number;
      sessionMs: number;
      resumedFromStep: number;
    }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'validation'; step: number; loss: number; tokenAccuracy: number }
  | ({ type: 'probe'; step: number } & DriftFigures)
  | ({ type: 'budget_exceeded'; keptStep: number } & BudgetBreach)
  | { type: 'step'; step: number; totalSteps: number; loss: number; lr: number; gradNorm: number; tokens: number; tokensPerSec: number; elapsedSec: number }
  | { type: 'done'; out: string; finalLoss: number; frozenUnchanged: boolean };

/** Training stopped on request; `step` optimizer steps are done and (with a checkpoint dir) saved. */
export class TrainingStopped extends NarrowtuneError {
  constructor(
    readonly reason: 'cancel' | 'shutdown',
    readonly step: number,
  ) {
    super('failed_precondition', `training stopped (${reason}) after step ${step}`);
    this.name = 'TrainingStopped';
  }
}

export interface TuneResult {
  out: string;
  receipt: Receipt;
  /** Set when the drift budget stopped training; the output holds the weights of `keptStep`. */
  budgetStop: (BudgetBreach & { keptStep: number }) | null;
}

/** Above this much frozen weight, skip ORT's prepacked copies (bench: 0.5B model −1.7 GB, medium +2% time). */
const LOW_MEMORY_BYTES = 1 << 30;

/** One process-wide cache: repeated jobs on the same base model, policy and shapes reuse their sessions. */
const sessions = new SessionCache();

/**
 * The lowering the options ask for; for 'auto', float64 takes the portable one (onnxruntime's fused CPU
 * Attention is off by ~1e-8 in float64, the portable form is exact to rounding) and float32 leaves the
 * choice to the execution provider.
 */
function kernelsOf(o: TuneOptions): Kernels | undefined {
  if (o.kernels !== 'auto') return o.kernels;
  return o.precision === 'float64' ? 'portable' : undefined;
}

function optimizerSpec(o: TuneOptions): OptimizerSpec {
  return o.optimizer === 'sgd'
    ? { kind: 'sgd', weightDecay: o.weightDecay }
    : { kind: 'adamw', beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
}

export function totalSteps(o: TuneOptions, examples: number): number {
  return o.steps ?? Math.max(1, Math.ceil((o.epochs * examples) / (o.batchSize * o.gradAccum)));
}

/**
 * Runs a whole fine-tune. Aborting `signal` (reason 'cancel' or 'shutdown') stops it between optimizer steps,
 * after a step checkpoint when `checkpointDir` is set, with a TrainingStopped error.
 */
export async function tune(o: TuneOptions, onEvent: (e: TrainEvent) => void = () => {}, signal?: AbortSignal): Promise<TuneResult> {
  validateOptions(o);
  const started = performance.now();

  // 1. model, tokenizer, data, policy
  const ckpt = await loadCheckpoint(o.model);
  const c = ckpt.config;
  const tokenizer = await loadTokenizer(o.model);
  const dataset = await loadDataset(o.data, tokenizer, { seqLen: o.seqLen });
  dataset.examples.forEach((ex, i) => {
    const bad = ex.inputIds.find((id) => id >= c.vocabSize);
    if (bad !== undefined) throw new DataFileError(o.data, null, `example ${i + 1} has token id ${bad}, but the model's vocabulary has ${c.vocabSize} entries`);
  });
  const names = [...expectedTensors(c).keys()];
  const policy = resolvePolicy(o.policy, names);
  const params = new Map<string, ParamTensor>(
    names.map((n) => {
      const t = ckpt.tensors.get(n)!;
      return [n, { shape: t.shape, data: viewFloat32(t) }];
    }),
  );
  const frozenBefore = new Map(policy.frozen.map((n) => [n, sha256(ckpt.tensors.get(n)!)]));
  for (const [n, t] of ckpt.tensors) if (!params.has(n)) frozenBefore.set(n, sha256(t)); // e.g. a vision tower

  // 2. plan: one padded shape for the whole run, so one compiled graph serves every step
  const seq = padLength(dataset.examples, o.seqLen);
  const steps = totalSteps(o, dataset.examples.length);
  const schedule: Schedule = {
    kind: o.schedule,
    lr: o.lr,
    totalSteps: steps,
    warmupSteps: o.warmupSteps ?? Math.ceil(steps * WARMUP_FRACTION),
  };
  const opt = optimizerSpec(o);

  // 3. compile the step graph(s): with accumulation, micro-batches 1..K-1 only sum gradients
  let compileMs = 0;
  let sessionMs = 0;
  const frozenBytes = policy.frozen.reduce((sum, n) => sum + params.get(n)!.data.byteLength, 0);
  const frozenKey = createHash('sha256').update(JSON.stringify([c.raw, policy.trainable, [...frozenBefore.values()]])).digest('hex');
  const session = (accumulate: boolean, update: boolean): Promise<SessionHandle> =>
    sessions.get(JSON.stringify([frozenKey, o.batchSize, seq, opt, o.clipNorm, accumulate, update, o.device, o.precision, o.kernels]), async () => {
      const t0 = performance.now();
      let compiling = 0;
      const build = (kernels: Kernels) => {
        const t = performance.now();
        const { model } = compileTrainStep({ config: c, params, trainable: policy.trainable, batch: o.batchSize, seq, optimizer: opt, clipNorm: o.clipNorm, accumulate, update, dtype: o.precision, kernels });
        compiling += performance.now() - t;
        return model;
      };
      const handle = await createSessionFor(build, o.device, { lowMemory: frozenBytes > LOW_MEMORY_BYTES, kernels: kernelsOf(o) });
      compileMs += compiling;
      sessionMs += performance.now() - t0 - compiling;
      return handle;
    });
  const host = o.optimizerPlacement === 'host' || (o.optimizerPlacement === 'auto' && frozenBytes > LOW_MEMORY_BYTES && o.precision === 'float32');
  // With host updates every micro-batch runs one gradient graph; otherwise the last one also updates.
  const stepSession = await session(o.gradAccum > 1, !host);
  const accumSession = o.gradAccum > 1 ? (host ? stepSession : await session(true, false)) : null;
  const trainableParameters = policy.trainable.reduce((sum, n) => sum + params.get(n)!.data.length, 0);

  // 4. train, from the newest step checkpoint of this same run when resuming
  const f64 = o.precision === 'float64';
  const zeros = (n: number): FloatArray => (f64 ? new Float64Array(n) : new Float32Array(n));
  const scalarTensor = (x: number) => floatTensor(f64 ? Float64Array.of(x) : Float32Array.of(x), []);
  const shapes = new Map(policy.trainable.map((n) => [n, params.get(n)!.shape]));
  const fingerprint = createHash('sha256')
    .update(JSON.stringify([frozenKey, policy.trainable.map((n) => sha256(ckpt.tensors.get(n)!)), hyperparameters(o, schedule, seq), dataset.examples]))
    .digest('hex');
  const baseParams = new Map<string, FloatArray>(policy.trainable.map((n) => [n, f64 ? Float64Array.from(params.get(n)!.data) : params.get(n)!.data]));
  const resumed = o.resume && o.checkpointDir ? await loadLatestStepCheckpoint(o.checkpointDir, fingerprint, f64, baseParams) : null;
  const state: TrainState = resumed ?? {
    step: 0,
    // Host updates write in place: never into the base weights (probes and the receipt read them).
    params: host ? new Map([...baseParams].map(([n, a]) => [n, a.slice()])) : new Map(baseParams),
    m: new Map(policy.trainable.map((n) => [n, zeros(params.get(n)!.data.length)])),
    v: new Map(policy.trainable.map((n) => [n, zeros(params.get(n)!.data.length)])),
    history: [],
    kept: { step: 0, params: baseParams },
  };
  const monitors = await createMonitors(o, c, tokenizer, params, policy.trainable, steps);
  const validationHistory: Receipt['validation'] = [];
  const probeHistory: Receipt['probes'] = [];
  let budgetStop: TuneResult['budgetStop'] = null;
  onEvent({
    type: 'start',
    totalSteps: steps,
    resumedFromStep: state.step,
    batchSize: o.batchSize,
    gradAccum: o.gradAccum,
    seq,
    examples: dataset.examples.length,
    trainable: policy.trainable,
    trainableParameters,
    frozenTensors: frozenBefore.size,
    provider: stepSession.provider,
    compileMs,
    sessionMs,
  });
  let savedStep = state.step;
  const checkpoint = async () => {
    if (!o.checkpointDir || savedStep === state.step) return;
    const path = await saveStepCheckpoint(o.checkpointDir, state, shapes, fingerprint);
    savedStep = state.step;
    onEvent({ type: 'checkpoint', step: state.step, path });
  };

  while (state.step < steps) {
    if (signal?.aborted) {
      // Stopping keeps the work done so far: a cancelled job keeps it, a shut-down server resumes from it.
      await checkpoint();
      throw new TrainingStopped(signal.reason === 'shutdown' ? 'shutdown' : 'cancel', state.step);
    }
    const step = state.step;
    const t0 = performance.now();
    const batches = Array.from({ length: o.gradAccum }, (_, k) => {
      const idx = microBatchIndices(dataset.examples.length, o.batchSize, o.seed, step * o.gradAccum + k);
      return collate(idx.map((i) => dataset.examples[i]), seq, o.batchSize, tokenizer.padId);
    });
    const valid = batches.reduce((sum, b) => sum + b.validTokens, 0);
    const lossScale = scalarTensor(1 / Math.max(1, valid));
    const lr = learningRate(schedule, step);
    let loss = 0;
    let grads: Map<string, ort.Tensor> | null = null;
    let out: ort.InferenceSession.OnnxValueMapType = {};
    for (let k = 0; k < o.gradAccum; k++) {
      const last = k === o.gradAccum - 1;
      const feeds: Record<string, ort.Tensor> = {
        [IO.ids]: int64Tensor(batches[k].inputIds, [o.batchSize * seq]),
        [IO.targets]: int64Tensor(batches[k].targets, [o.batchSize * seq]),
        [IO.lossScale]: lossScale,
      };
      for (const [n, data] of state.params) {
        const shape = shapes.get(n)!;
        feeds[n] = floatTensor(data, shape);
        if (o.gradAccum > 1) feeds[IO.gradIn(n)] = grads?.get(n) ?? floatTensor(zeros(data.length), shape);
        if (last && !host && opt.kind === 'adamw') {
          feeds[IO.m(n)] = floatTensor(state.m.get(n)!, shape);
          feeds[IO.v(n)] = floatTensor(state.v.get(n)!, shape);
        }
      }
      if (last && !host) {
        const sc = optimizerScalars(opt, lr, step + 1);
        Object.assign(feeds, { [IO.lr]: scalarTensor(sc.lr), [IO.stepSize]: scalarTensor(sc.stepSize), [IO.bc2Sqrt]: scalarTensor(sc.bc2Sqrt), [IO.decay]: scalarTensor(sc.decay) });
      }
      out = await (last ? stepSession : accumSession!).session.run(feeds);
      loss += Number((out[IO.loss] as ort.Tensor).data[0]);
      if (!last) grads = new Map(policy.trainable.map((n) => [n, out[IO.gradOut(n)] as ort.Tensor]));
    }
    let gradNorm: number;
    if (host) {
      const g = policy.trainable.map((n) => (out[IO.gradOut(n)] as ort.Tensor).data as Float32Array);
      const { norm, coef } = clipCoefficient(g, o.clipNorm);
      const sc = optimizerScalars(opt, lr, step + 1);
      policy.trainable.forEach((n, i) =>
        hostUpdate(opt, sc, coef, state.params.get(n) as Float32Array, g[i], state.m.get(n) as Float32Array, state.v.get(n) as Float32Array),
      );
      gradNorm = norm;
    } else {
      for (const n of policy.trainable) {
        state.params.set(n, (out[IO.newParam(n)] as ort.Tensor).data as FloatArray);
        if (opt.kind === 'adamw') {
          state.m.set(n, (out[IO.newM(n)] as ort.Tensor).data as FloatArray);
          state.v.set(n, (out[IO.newV(n)] as ort.Tensor).data as FloatArray);
        }
      }
      gradNorm = Number((out[IO.gradNorm] as ort.Tensor).data[0]);
    }
    const seconds = (performance.now() - t0) / 1000;
    const tokens = batches.reduce((sum, b) => sum + b.tokens, 0);
    state.step = step + 1;
    state.history.push({ step: state.step, loss, lr, grad_norm: gradNorm });
    onEvent({ type: 'step', step: state.step, totalSteps: steps, loss, lr, gradNorm, tokens, tokensPerSec: tokens / seconds, elapsedSec: (performance.now() - started) / 1000 });

    if (monitors.validation && due(state.step, monitors.validation.every, steps)) {
      const v = await monitors.validation.run(state.params);
      validationHistory.push({ step: state.step, loss: v.loss, token_accuracy: v.tokenAccuracy });
      onEvent({ type: 'validation', step: state.step, ...v });
    }
    if (monitors.probe && due(state.step, monitors.probe.every, steps)) {
      const figures = await monitors.probe.run(state.params);
      probeHistory.push({ step: state.step, ...figures });
      onEvent({ type: 'probe', step: state.step, ...figures });
      const breach = checkBudget(o.driftBudget, figures, state.step);
      if (breach) {
        // Stop here and keep the last weights that were within budget as the result.
        budgetStop = { ...breach, keptStep: state.kept!.step };
        onEvent({ type: 'budget_exceeded', ...budgetStop });
        break;
      }
      state.kept = { step: state.step, params: new Map([...state.params].map(([n, a]) => [n, a.slice()])) };
    }
    if (o.checkpointEvery && state.step % o.checkpointEvery === 0 && state.step < steps) await checkpoint();
  }
  await monitors.release();
  const history = state.history;
  const result = budgetStop ? state.kept!.params : state.params;

  // 5. checkpoint: trainable tensors in the input's dtype, every other tensor byte-for-byte from the input
  const out = resolve(o.out);
  const tensors: StoredTensor[] = [...ckpt.tensors.values()].map((t) => {
    const trained = result.get(t.name);
    return trained ? { ...t, data: fromFloat32(Float32Array.from(trained), t.dtype) } : t;
  });
  const receipt: Receipt = {
    narrowtune_receipt_version: RECEIPT_VERSION,
    created_at: new Date().toISOString(),
    base_model: resolve(o.model),
    data: resolve(o.data),
    policy: { name: policy.name, include: policy.include, exclude: policy.exclude },
    trainable: policy.trainable,
    hyperparameters: hyperparameters(o, schedule, seq),
    data_stats: { form: dataset.form, examples: dataset.examples.length, truncated: dataset.truncated, train_tokens: dataset.trainTokens },
    steps: history,
    frozen: {},
    frozen_unchanged: false,
    trainable_changed: [],
    validation: validationHistory,
    probes: probeHistory,
    drift_budget_stop: budgetStop && { limit: budgetStop.limit, value: budgetStop.value, threshold: budgetStop.threshold, step: budgetStop.step, kept_step: budgetStop.keptStep },
  };
  await writeCheckpoint(out, { config: c, tensors, copyFrom: o.model, extraJson: { [RECEIPT_FILE]: receipt } });
  // The receipt written with the weights says frozen_unchanged: false until the read-back proves otherwise.
  await verifyReceipt(out, receipt, frozenBefore, ckpt.tensors, policy);
  await writeFileAtomic(join(out, RECEIPT_FILE), `${JSON.stringify(receipt, null, 2)}\n`);
  onEvent({ type: 'done', out, finalLoss: history[history.length - 1]?.loss ?? NaN, frozenUnchanged: receipt.frozen_unchanged });
  return { out, receipt, budgetStop };
}

/** Reads the written weights back from disk and fills in the proof; fails loudly if a frozen tensor moved. */
async function verifyReceipt(
  out: string,
  receipt: Receipt,
  frozenBefore: ReadonlyMap<string, string>,
  input: ReadonlyMap<string, StoredTensor>,
  policy: ResolvedPolicy,
): Promise<void> {
  const file = join(out, WEIGHTS_FILE);
  const written = new Map((await readSafetensorsFile(file)).map((t) => [t.name, t]));
  receipt.frozen = proveFrozen(frozenBefore, written);
  receipt.frozen_unchanged = Object.values(receipt.frozen).every((p) => p.sha256_before === p.sha256_after);
  receipt.trainable_changed = policy.trainable.filter((n) => sha256(written.get(n)!) !== sha256(input.get(n)!));
  if (!receipt.frozen_unchanged) {
    const moved = Object.entries(receipt.frozen).filter(([, p]) => p.sha256_before !== p.sha256_after).map(([n]) => n);
    throw new NarrowtuneError('internal', `frozen tensors changed in ${file}: ${moved.join(', ')}`);
  }
}

function hyperparameters(o: TuneOptions, s: Schedule, seq: number): Record<string, unknown> {
  return {
    optimizer: o.optimizer,
    lr: o.lr,
    weight_decay: o.weightDecay,
    betas: [o.beta1, o.beta2],
    eps: o.eps,
    steps: s.totalSteps,
    epochs: o.steps === null ? o.epochs : null,
    batch_size: o.batchSize,
    grad_accum: o.gradAccum,
    seq_len: o.seqLen,
    padded_seq: seq,
    schedule: o.schedule,
    warmup_steps: s.warmupSteps,
    clip_norm: o.clipNorm,
    seed: o.seed,
    device: o.device,
    precision: o.precision,
    optimizer_placement: o.optimizerPlacement,
  };
}
