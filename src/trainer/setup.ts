// Everything a fine-tune prepares before its first step: model, tokenizer, data and policy; the plan (padded
// length, steps, schedule, optimizer, where the update runs); the compiled step session(s); the initial or
// resumed state; the monitors. tune() and the benchmark both start here, so a benchmark row is what users run.
import { createHash } from 'node:crypto';
import { padLength } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { isImageTextFile, loadImageDataset, type ImageDataset } from '../data/image-dataset.js';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.js';
import { DATA_FIELDS, loadTuneData, loadTuneFile, type TuneData, type TuneDataFiles } from '../data/tune-data.js';
import type { EmitHook } from '../graph/autodiff.js';
import type { Kernels } from '../graph/graph-builder.js';
import type { OptimizerSpec } from '../graph/optimizer.js';
import { paramsOf, paramTensor, type ParamTensor } from '../graph/params.js';
import { compileTrainStep } from '../graph/train-step.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { LlavaConfig } from '../model/llava-config.js';
import { partOf, toFileName } from '../model/llava-names.js';
import { inspectModel, loadModel } from '../model/load-model.js';
import { resolvePolicy, type PolicySpec, type ResolvedPolicy } from '../policy/policy.js';
import { createSessionFor, SessionCache, type FloatArray, type SessionHandle, type SessionOptions } from '../runtime/session.js';
import { invalidArgument, NarrowtuneError, quote } from '../util/errors.js';
import { compileUserRegex } from '../util/user-regex.js';
import { datasetImageFeatures, ImageFeatureCache, imageTokens, readPreprocessing, visionWeightsHash, type ImageFeatureTable } from '../eval/image-features.js';
import { loadTeacher, type Teacher } from './lwf-teacher.js';
import { type LoraPlan, planLora, refuseAdapterBase } from './lora.js';
import { createMonitors, type MonitorImages, type Monitors } from './monitors.js';
import { type TuneOptions, validateOptions, WARMUP_FRACTION } from './options.js';
import { sha256 } from './receipt.js';
import type { Schedule } from './schedule.js';
import { loadLatestStepCheckpoint, loadStepCheckpoint, type TrainState } from './step-checkpoint.js';

/** Above this much frozen weight, skip ORT's prepacked copies (bench: 0.5B model −1.7 GB, medium +2% time). */
const LOW_MEMORY_BYTES = 1 << 30;

/** One process-wide cache: repeated jobs on the same base model, policy and shapes reuse their sessions. */
const sessions = new SessionCache();

/** What the benchmark's profiler adds; sessions made with it are the run's own, never cached. */
export interface Instrumentation {
  session?: Pick<SessionOptions, 'profile' | 'intraOpThreads'>;
  /** Called before each compile of the step graph (a provider may be given a second lowering). */
  onCompile?: () => EmitHook;
}

/** A LLaVA run's images: every distinct image's features, computed once before the first step. */
export interface ImageRun {
  /** features.get(i): [tokens, hidden] of dataset.images[i] */
  features: ImageFeatureTable;
  hidden: number;
  /** Images the vision graph ran for (identical bytes are computed once). */
  computed: number;
  /** What the cached features hold in memory. */
  cacheBytes: number;
  /** Wall time of the vision graph's compile and runs. */
  seconds: number;
}

/** A fine-tune ready for its next step; optimizerStep (step.ts) advances `state`. */
export interface TrainingRun {
  o: TuneOptions;
  /** performance.now() when setup began; step events count elapsed time from it. */
  startedAt: number;
  ckpt: Checkpoint;
  tokenizer: TextTokenizer;
  dataset: Dataset;
  /** With adapters: trainable = their A and B tensors, frozen = every weight of the model. */
  policy: ResolvedPolicy;
  lora: LoraPlan | null;
  /** Set when a LLaVA model trains on image-text data; the step graph then takes image features. */
  images: ImageRun | null;
  /** Every decoder tensor in float32 (views of the checkpoint's bytes: read-only). */
  params: ReadonlyMap<string, ParamTensor>;
  /** sha256 of every tensor that must come out unchanged, including ones outside the decoder. */
  frozenBefore: ReadonlyMap<string, string>;
  seq: number;
  totalSteps: number;
  schedule: Schedule;
  optimizer: OptimizerSpec;
  /** The optimizer runs on the host (graph returns gradients) instead of inside the step graph. */
  host: boolean;
  /** `step` runs the last micro-batch (and the update unless `host`); `accumulate` the others. */
  sessions: { step: SessionHandle; accumulate: SessionHandle | null };
  compileMs: number;
  sessionMs: number;
  trainableParameters: number;
  shapes: ReadonlyMap<string, number[]>;
  /** Identifies this run's inputs: a step checkpoint of another run is never resumed. */
  fingerprint: string;
  hyperparameters: Record<string, unknown>;
  state: TrainState;
  monitors: Monitors;
}

/**
 * The lowering the options ask for; for 'auto', float64 takes the portable one (onnxruntime's fused CPU
 * Attention is off by ~1e-8 in float64, the portable form is exact to rounding) and float32 leaves the
 * choice to the execution provider.
 */
function kernelsOf(o: TuneOptions): Kernels | undefined {
  if (o.kernels !== 'auto') return o.kernels;
  return o.precision === 'float64' ? 'portable' : undefined;
}

export function optimizerSpec(o: TuneOptions): OptimizerSpec {
  return o.optimizer === 'sgd'
    ? { kind: 'sgd', weightDecay: o.weightDecay }
    : { kind: 'adamw', beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
}

export function totalSteps(o: TuneOptions, examples: number): number {
  return o.steps ?? Math.max(1, Math.ceil((o.epochs * examples) / (o.batchSize * o.gradAccum)));
}

export async function setup(o: TuneOptions, instrument: Instrumentation = {}): Promise<TrainingRun> {
  validateOptions(o);
  const startedAt = performance.now();

  // 1. the model's files checked (headers only), tokenizer and data (a bad line fails the job before the weights
  // are read), then the weights and the policy
  const { config, llava } = await inspectModel(o.model);
  if (o.lora && !o.mergeAdapter) await refuseAdapterBase(o.model);
  const tokenizer = await loadTokenizer(o.model);
  const files = { data: o.data, validationData: o.validationData, probeData: o.probeData };
  const data = llava ? await loadLlavaData(o, files, tokenizer, llava.config, config.vocabSize) : await loadTextData(o, files, tokenizer, config.vocabSize);
  const dataset = data.training;
  const ckpt = await loadModel(o.model);
  const c = ckpt.config;
  const params = paramsOf(ckpt);
  if (llava) refuseVisionPatterns(o.policy, ckpt);
  const chosen = resolvePolicy(o.policy, [...params.keys()]);
  // With adapters the policy only chooses their targets (lora.ts): A and B train, every weight is frozen.
  const lora = o.lora ? planLora(o.lora, o.seed, params, chosen.trainable) : null;
  const policy = lora ? { ...chosen, trainable: lora.trainable, frozen: [...params.keys()] } : chosen;
  const frozenBefore = new Map(policy.frozen.map((n) => [n, sha256(ckpt.tensors.get(n)!)]));
  for (const [n, t] of ckpt.tensors) if (!params.has(n)) frozenBefore.set(n, sha256(t)); // e.g. a vision tower
  const teacher = o.lwf ? await loadTeacher(o.lwf, ckpt, params) : null;
  const lwf = teacher && o.lwf ? { weight: o.lwf.weight, temperature: o.lwf.temperature, teacher: teacher.params } : undefined;
  // Initial A and B join the parameters by name, as trainable tensors do; every other use of `params` is keyed by decoder names.
  for (const [n, t] of lora?.init ?? []) params.set(n, t);
  const imageData = imageSet(dataset);
  const imageCache = llava && [dataset, data.validation, data.probe].some(imageSet) ? await imageFeatureCache(o, llava.config, ckpt) : null;
  const { images, monitorImages } = imageCache ? await computeImages(data, imageCache, c.hiddenSize) : { images: null, monitorImages: {} };

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
  // From shapes: reading `data` would decode a half-precision tensor that the graph may keep as it is.
  const frozenBytes = policy.frozen.reduce((sum, n) => sum + 4 * params.get(n)!.shape.reduce((a, b) => a * b, 1), 0);
  const halfFrozen = o.frozenPrecision === 'checkpoint' && o.precision === 'float32';
  const lowMemory = frozenBytes > LOW_MEMORY_BYTES;
  const host = o.optimizerPlacement === 'host' || (o.optimizerPlacement === 'auto' && lowMemory && o.precision === 'float32');

  // 3. compile the step graph(s): with accumulation, micro-batches 1..K-1 only sum gradients
  let compileMs = 0;
  let sessionMs = 0;
  const frozenKey = createHash('sha256').update(JSON.stringify([c.raw, policy.trainable, [...frozenBefore.values()], ...(o.lwf ? [lwfRecord(o, teacher)] : []), ...(o.lora ? [o.lora] : [])])).digest('hex');
  const create = async (accumulate: boolean, update: boolean): Promise<SessionHandle> => {
    const t0 = performance.now();
    let compiling = 0;
    const build = (kernels: Kernels) => {
      const t = performance.now();
      const onEmit = instrument.onCompile?.();
      const { model } = compileTrainStep({ config: c, params, trainable: policy.trainable, batch: o.batchSize, seq, optimizer: opt, clipNorm: o.clipNorm, accumulate, update, dtype: o.precision, kernels, onEmit, lwf, lora: lora?.layout, image: images !== null, halfFrozen });
      compiling += performance.now() - t;
      return model;
    };
    const threads = o.threads === null ? {} : { intraOpThreads: o.threads };
    const handle = await createSessionFor(build, o.device, { ...threads, ...instrument.session, lowMemory, float64: o.precision === 'float64', halfWeights: halfFrozen, kernels: kernelsOf(o) });
    compileMs += compiling;
    sessionMs += performance.now() - t0 - compiling;
    return handle;
  };
  const session = (accumulate: boolean, update: boolean): Promise<SessionHandle> =>
    instrument.session || instrument.onCompile
      ? create(accumulate, update)
      : sessions.get(JSON.stringify([frozenKey, o.batchSize, seq, opt, o.clipNorm, accumulate, update, o.device, o.precision, o.kernels, o.threads, halfFrozen, images !== null]), () => create(accumulate, update));
  // With host updates every micro-batch runs one gradient graph; otherwise the last one also updates.
  const stepSession = await session(o.gradAccum > 1, !host);
  const accumSession = o.gradAccum > 1 ? (host ? stepSession : await session(true, false)) : null;
  const trainableParameters = policy.trainable.reduce((sum, n) => sum + params.get(n)!.data.length, 0);

  // 4. state: fresh, or the newest step checkpoint of this same run when resuming
  const f64 = o.precision === 'float64';
  const zeros = (n: number): FloatArray => (f64 ? new Float64Array(n) : new Float32Array(n));
  const shapes = new Map(policy.trainable.map((n) => [n, params.get(n)!.shape]));
  const hp = hyperparameters(o, schedule, seq, teacher);
  const fingerprint = createHash('sha256')
    // Adapter tensors are not in the checkpoint: they start from the seed and LoRA settings, which hp holds.
    .update(JSON.stringify([frozenKey, policy.trainable.map((n) => (ckpt.tensors.has(n) ? sha256(ckpt.tensors.get(n)!) : null)), hp, dataset.examples, ...(imageData && imageCache ? [imageData.images.map((r) => imageCache.keys.get(r.path))] : [])]))
    .digest('hex');
  const baseParams = new Map<string, FloatArray>(policy.trainable.map((n) => [n, f64 ? Float64Array.from(params.get(n)!.data) : params.get(n)!.data]));
  const resumed =
    // Specs stored before resumeFrom existed lack it.
    o.resumeFrom
      ? await resumeFromCheckpoint(o.resumeFrom, fingerprint, f64, baseParams)
      : o.resume && o.checkpointDir
        ? await loadLatestStepCheckpoint(o.checkpointDir, fingerprint, f64, baseParams)
        : null;
  const state: TrainState = resumed ?? {
    step: 0,
    // Host updates write in place: never into the base weights (probes and the receipt read them).
    params: host ? new Map([...baseParams].map(([n, a]) => [n, a.slice()])) : new Map(baseParams),
    m: new Map(policy.trainable.map((n) => [n, zeros(params.get(n)!.data.length)])),
    v: new Map(policy.trainable.map((n) => [n, zeros(params.get(n)!.data.length)])),
    history: [],
    kept: { step: 0, params: baseParams },
  };
  const monitors = await createMonitors(o, c, tokenizer, data, params, policy.trainable, steps, lora?.layout, monitorImages);
  return {
    o,
    startedAt,
    ckpt,
    tokenizer,
    dataset,
    policy,
    lora,
    images,
    params,
    frozenBefore,
    seq,
    totalSteps: steps,
    schedule,
    optimizer: opt,
    host,
    sessions: { step: stepSession, accumulate: accumSession },
    compileMs,
    sessionMs,
    trainableParameters,
    shapes,
    fingerprint,
    hyperparameters: hp,
    state,
    monitors,
  };
}

/** The receipt's record of the run's settings; also part of the fingerprint. */
function hyperparameters(o: TuneOptions, s: Schedule, seq: number, teacher: Teacher | null): Record<string, unknown> {
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
    ...(o.lora ? { lora: { rank: o.lora.rank, alpha: o.lora.alpha, dropout: o.lora.dropout, targets: o.lora.targets, merged: o.mergeAdapter } } : {}),
    ...(o.lwf ? { lwf: lwfRecord(o, teacher) } : {}),
  };
}

/** The LwF term as the receipt records it: the teacher by the hash of its tensors (null: the base model). */
function lwfRecord(o: TuneOptions, teacher: Teacher | null): Record<string, unknown> | null {
  return o.lwf && { weight: o.lwf.weight, temperature: o.lwf.temperature, teacher_sha256: teacher?.sha256 ?? null };
}

/** An explicitly named checkpoint must be there and of this run: silently starting over would hide a lost checkpoint. */
async function resumeFromCheckpoint(dir: string, fingerprint: string, f64: boolean, base: ReadonlyMap<string, FloatArray>): Promise<TrainState> {
  const state = await loadStepCheckpoint(dir, fingerprint, f64, base);
  if (!state) throw new NarrowtuneError('failed_precondition', `${dir} is not a complete step checkpoint of this run`, [{ field: 'resume_from', description: 'not a step checkpoint of this run' }]);
  return state;
}

async function loadTextData(o: TuneOptions, files: TuneDataFiles, tokenizer: TextTokenizer, vocabSize: number): Promise<TuneData> {
  for (const key of ['data', 'validationData', 'probeData'] as const) {
    const file = files[key];
    if (file !== null && (await isImageTextFile(file, DATA_FIELDS[key]))) {
      throw invalidArgument(DATA_FIELDS[key], `${file} is image-text data, but ${o.model} is a text-only model (it has no vision tower)`);
    }
  }
  return loadTuneData(files, tokenizer, { seqLen: o.seqLen, vocabSize });
}

/**
 * A LLaVA model's data: the training, validation and probe files each either image-text (its images' positions
 * counted from their sizes, images confined to the data file's directory and `imageRoots`) or text, which runs
 * through the language model alone.
 */
export async function loadLlavaData(o: Pick<TuneOptions, 'seqLen' | 'imageRoots'>, files: TuneDataFiles, tokenizer: TextTokenizer, llava: LlavaConfig, vocabSize: number): Promise<TuneData> {
  const load = (key: keyof TuneDataFiles) => {
    const file = files[key];
    return file === null ? null : loadLlavaFile(key, file, tokenizer, llava, { seqLen: o.seqLen, vocabSize, roots: o.imageRoots });
  };
  return { training: (await load('data'))!, validation: await load('validationData'), probe: await load('probeData') };
}

/** One of a LLaVA run's data files as loadLlavaData reads it; problems are reported under the file's request field. */
export async function loadLlavaFile(
  key: keyof TuneDataFiles,
  file: string,
  tokenizer: TextTokenizer,
  llava: LlavaConfig,
  o: { seqLen: number; vocabSize: number; roots?: readonly string[] },
): Promise<Dataset> {
  const field = DATA_FIELDS[key];
  if (!(await isImageTextFile(file, field))) return loadTuneFile(key, file, tokenizer, { seqLen: o.seqLen, vocabSize: o.vocabSize });
  return loadImageDataset(file, tokenizer, {
    seqLen: o.seqLen,
    // LLaVA-NeXT's placeholder (-200) is no token: its positions hold the pad id, which the image mask hides.
    imageTokenId: llava.imageTokenIndex >= 0 ? llava.imageTokenIndex : tokenizer.padId,
    tokensFor: (ref) => imageTokens(llava, ref.height, ref.width),
    field,
    roots: o.roots,
  });
}

/**
 * The tower and projector are outside the gradient path (their features are computed once and cached), so an
 * include pattern that names only their tensors is refused rather than matching nothing.
 */
export function refuseVisionPatterns(spec: PolicySpec, ckpt: Pick<Checkpoint, 'llava'> & { tensors: ReadonlyMap<string, unknown> }): void {
  const layout = ckpt.llava!.layout;
  const language = [...ckpt.tensors.keys()].filter((n) => partOf(n) === 'language');
  const vision = [...ckpt.tensors.keys()].filter((n) => partOf(n) !== 'language').flatMap((n) => [n, toFileName(layout, n)]);
  (spec.include ?? []).forEach((p, i) => {
    const re = compileUserRegex(p, `policy.include[${i}]`);
    const hit = vision.find((n) => re.test(n));
    if (hit !== undefined && !language.some((n) => re.test(n))) {
      throw invalidArgument(
        `policy.include[${i}]`,
        `${quote(p)} names vision tower or projector tensors (${hit}); tuning the tower or projector is not supported: ` +
          'they are outside the gradient path (each image\'s features are computed once and cached); policies train the language model (model.layers.N.*)',
      );
    }
  });
}

async function imageFeatureCache(o: TuneOptions, llava: LlavaConfig, ckpt: Checkpoint): Promise<ImageFeatureCache> {
  const vision = new Map([...ckpt.tensors].filter(([n]) => partOf(n) !== 'language').map(([n, t]) => [n, paramTensor(t)]));
  return new ImageFeatureCache({
    llava,
    vision,
    weightsHash: visionWeightsHash(ckpt.tensors),
    pre: await readPreprocessing(o.model, llava),
    device: o.device,
    precision: o.precision,
    kernels: kernelsOf(o),
    threads: o.threads,
    dir: o.featureCache ?? null,
  });
}

function imageSet(d: Dataset | null): ImageDataset | null {
  return d !== null && 'images' in d ? (d as ImageDataset) : null;
}

/**
 * Every distinct image of the run's files through one cache, the training file's first: an image that several files
 * use runs the tower once. `images` holds the training file's features (null when it has none); the run's totals
 * (vision runs, cached bytes, time) count the validation and probe images too.
 */
async function computeImages(data: TuneData, cache: ImageFeatureCache, hidden: number): Promise<{ images: ImageRun | null; monitorImages: MonitorImages }> {
  const t0 = performance.now();
  try {
    const features = async (d: Dataset | null) => {
      const set = imageSet(d);
      return set ? await datasetImageFeatures(set, cache, hidden) : undefined;
    };
    const training = await features(data.training);
    const monitorImages: MonitorImages = { validation: await features(data.validation), probe: await features(data.probe) };
    const images = training ? { features: training, hidden, computed: cache.computed, cacheBytes: cache.bytes, seconds: (performance.now() - t0) / 1000 } : null;
    return { images, monitorImages };
  } finally {
    await cache.release();
  }
}
