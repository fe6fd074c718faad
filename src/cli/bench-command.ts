// `narrowtune bench`: times the real trainer (tune(), the code path of `narrowtune tune` and the service) on
// random-initialised models and random token data, one fresh child process per row so peak memory is per row.
// With --vs-torch each row also runs through bench/torch_trainer.py (a PyTorch baseline that lives only in a
// source checkout, never in the product runtime) on the same weights and batches, and the losses must agree.
import { fork, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type ort from 'onnxruntime-node';
import { collate, microBatchIndices, padLength } from '../data/batches.js';
import { loadDataset } from '../data/dataset.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { OPS, type OpRule } from '../graph/ops.js';
import { optimizerScalars, type OptimizerSpec } from '../graph/optimizer.js';
import { compileTrainStep, IO, type ParamTensor } from '../graph/train-step.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { expectedTensors, parseConfig } from '../model/config.js';
import { defaultTokenizerConfig, defaultTokenizerJson } from '../model/default-tokenizer.js';
import { initModel, type InitModelOptions } from '../model/init-model.js';
import { toFloat32 } from '../model/safetensors.js';
import { PRESET_NAMES, resolvePolicy } from '../policy/policy.js';
import type { Kernels } from '../graph/graph-builder.js';
import { createSessionFor, DEVICES, floatTensor, int64Tensor, type Device } from '../runtime/session.js';
import { DEFAULTS, type TuneOptions } from '../trainer/options.js';
import type { TrainEvent } from '../trainer/trainer.js';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { int, list, parseFlags, str } from './args.js';

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
};

const DEFAULT_CONFIGS = ['tiny', 'medium'];
const DEFAULT_POLICIES = ['full', 'mlp_gate_up', 'sa_proj'];
const DEFAULT_STEPS = 8;
const DEFAULT_WARMUP = 2;
/** The loss check needs at least this many steps: the loss of step K+1 has seen K updates. */
const CHECK_MIN_STEPS = 4;
const LOSS_RTOL = 1e-3;
/** Debian's python3 has python3-torch; elsewhere (a GPU host's PyTorch) pass --python or NARROWTUNE_BENCH_PYTHON. */
const DEFAULT_PYTHON = process.env.NARROWTUNE_BENCH_PYTHON ?? '/usr/bin/python3';
const TORCH_DEVICES = ['cpu', 'cuda'] as const;
type TorchDevice = (typeof TORCH_DEVICES)[number];
/** Constant lr large enough that 3 AdamW updates move the loss measurably (a wrong update shows). */
const BENCH_LR = 1e-3;
const DATA_SEED = 1234;
/** Other processes using fewer CPUs than this count as a quiet machine. */
const IDLE_OTHERS_CPUS = 0.25;

export const BENCH_HELP = `Usage: narrowtune bench [options]

Trains random-initialised models (init-model) on random token data with the real trainer, one fresh
process per row, and prints per configuration and policy: median step time, tokens/s, peak resident
memory and the time to compile the step graph and create the onnxruntime session.

  --config NAME       ${Object.keys(BENCH_CONFIGS).join(' | ')} (repeatable; default ${DEFAULT_CONFIGS.join(', ')})
  --policy NAME       ${PRESET_NAMES.join(' | ')} (repeatable; default ${DEFAULT_POLICIES.join(', ')})
  --device D          ${DEVICES.join(' | ')}: where narrowtune trains (default cpu), as \`tune --device\`
  --kernels K         auto | fused | portable: how attention and cross-entropy are lowered (default auto:
                      fused onnxruntime kernels, portable MatMul/Softmax ones on WebGPU), to measure the choice
  --steps N           measured optimizer steps per row (default ${DEFAULT_STEPS}), after --warmup
  --warmup N          untimed steps first (default ${DEFAULT_WARMUP})
  --vs-torch          also run each row, interleaved, through bench/torch_trainer.py (PyTorch, float32,
                      same weights, batches and AdamW) and report the speed ratio; a row where the
                      loss of any step differs by more than ${LOSS_RTOL} (relative) is FAILED.
                      Needs a source checkout and a python3 with torch (--python).
  --torch-device D    ${TORCH_DEVICES.join(' | ')}: where the PyTorch baseline trains (default cpu; cuda
                      switches TF32 off so both trainers do float32 arithmetic)
  --python PATH       the python3 that runs the baseline (default \$NARROWTUNE_BENCH_PYTHON or /usr/bin/python3)
  --threads N         PyTorch threads (default: the number of CPUs). onnxruntime uses its default
                      intra-op pool (one thread per physical core), as \`narrowtune tune\` does.
  --json FILE         also write every measurement as JSON
  --profile DIR       instead of timing, profile one step of each row with onnxruntime's profiler,
                      write the trace to DIR and print where the time goes (by op type, node, phase)
  --profile-threads N onnxruntime intra-op threads while profiling (default: its own default, as the
                      trainer); 1 gives a breakdown that other processes on the machine distort least
  --wait-idle S       before each row, wait up to S seconds for other processes to use less than
                      ${IDLE_OTHERS_CPUS} CPUs (default 0: do not wait). Every row reports how many CPUs other processes
                      used during its steps ("others"): on a shared machine, trust rows near 0.
  --row-timeout S     kill a row's process after S seconds and mark the row FAILED (default 0: no limit)
  --cache-dir DIR     where models and data are generated once (default $TMPDIR/narrowtune-bench)
`;

// ───────────────────────────── parent: orchestration ─────────────────────────────

interface BenchArgs {
  configs: BenchConfig[];
  policies: string[];
  steps: number;
  warmup: number;
  vsTorch: boolean;
  threads: number;
  json: string | null;
  profile: string | null;
  cacheDir: string;
  waitIdle: number;
  profileThreads: number | null;
  device: Device;
  kernels: 'auto' | Kernels;
  torchDevice: TorchDevice;
  python: string;
  rowTimeout: number;
}

function parseBenchArgs(argv: string[]): BenchArgs {
  const f = parseFlags(argv, {
    config: { type: 'string', multiple: true },
    policy: { type: 'string', multiple: true },
    steps: { type: 'string' },
    warmup: { type: 'string' },
    'vs-torch': { type: 'boolean' },
    threads: { type: 'string' },
    json: { type: 'string' },
    profile: { type: 'string' },
    'cache-dir': { type: 'string' },
    'wait-idle': { type: 'string' },
    'profile-threads': { type: 'string' },
    device: { type: 'string' },
    kernels: { type: 'string' },
    'torch-device': { type: 'string' },
    python: { type: 'string' },
    'row-timeout': { type: 'string' },
  });
  const names = list(f, 'config').length > 0 ? list(f, 'config') : DEFAULT_CONFIGS;
  const configs = names.map((n) => {
    const c = BENCH_CONFIGS[n];
    if (!c) throw invalidArgument('--config', `unknown configuration "${n}"; one of ${Object.keys(BENCH_CONFIGS).join(', ')}`);
    return c;
  });
  const policies = list(f, 'policy').length > 0 ? list(f, 'policy') : DEFAULT_POLICIES;
  for (const p of policies) {
    if (!(PRESET_NAMES as string[]).includes(p)) throw invalidArgument('--policy', `unknown policy "${p}"; one of ${PRESET_NAMES.join(', ')}`);
  }
  const device = str(f, 'device') ?? 'cpu';
  if (!(DEVICES as readonly string[]).includes(device)) throw invalidArgument('--device', `unknown device "${device}"; one of ${DEVICES.join(', ')}`);
  const kernels = str(f, 'kernels') ?? 'auto';
  if (!['auto', 'fused', 'portable'].includes(kernels)) throw invalidArgument('--kernels', `unknown lowering "${kernels}"; one of auto, fused, portable`);
  const torchDevice = str(f, 'torch-device') ?? 'cpu';
  if (!(TORCH_DEVICES as readonly string[]).includes(torchDevice)) {
    throw invalidArgument('--torch-device', `unknown device "${torchDevice}"; one of ${TORCH_DEVICES.join(', ')}`);
  }
  const positive = (name: string, dflt: number, min = 1) => {
    const x = int(f, name) ?? dflt;
    if (x < min) throw invalidArgument(`--${name}`, `must be >= ${min}, got ${x}`);
    return x;
  };
  return {
    configs,
    policies,
    steps: positive('steps', DEFAULT_STEPS),
    warmup: positive('warmup', DEFAULT_WARMUP, 0),
    vsTorch: f['vs-torch'] === true,
    threads: positive('threads', cpus().length),
    json: str(f, 'json') ?? null,
    profile: str(f, 'profile') ?? null,
    cacheDir: resolve(str(f, 'cache-dir') ?? join(tmpdir(), 'narrowtune-bench')),
    waitIdle: positive('wait-idle', 0, 0),
    profileThreads: int(f, 'profile-threads') === undefined ? null : positive('profile-threads', 1),
    device: device as Device,
    kernels: kernels as BenchArgs['kernels'],
    torchDevice: torchDevice as TorchDevice,
    python: str(f, 'python') ?? DEFAULT_PYTHON,
    rowTimeout: positive('row-timeout', 0, 0),
  };
}

/** A tokenizer directory whose vocabulary is the built-in byte-level one padded with reserved tokens up to `vocab`. */
async function paddedTokenizer(dir: string, vocab: number): Promise<string> {
  const json = defaultTokenizerJson() as { added_tokens: { id: number; content: string }[] };
  const last = json.added_tokens[json.added_tokens.length - 1];
  // Only the top id matters for the vocabulary size; ids in between are simply never produced.
  json.added_tokens.push({ ...last, id: vocab - 1, content: '<|bench_reserved_top|>' });
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(defaultTokenizerConfig()));
  return dir;
}

/** Model + data for a configuration, generated once into the cache (keyed by the configuration's content). */
async function prepare(c: BenchConfig, cacheDir: string, examples: number): Promise<{ model: string; data: string; vocab: number }> {
  const key = createHash('sha256').update(JSON.stringify([c.model, c.seq, c.batch, examples, DATA_SEED, 1])).digest('hex').slice(0, 12);
  const dir = join(cacheDir, `${c.name}-${key}`);
  const model = join(dir, 'model');
  const data = join(dir, 'train.jsonl');
  if (!existsSync(join(model, 'config.json'))) {
    await mkdir(dir, { recursive: true });
    const { vocab, ...opts } = c.model;
    const vocabFrom = vocab === undefined ? undefined : await paddedTokenizer(join(dir, 'tokenizer'), vocab);
    process.stderr.write(`bench: init-model ${c.name} → ${model}\n`);
    await initModel({ ...opts, vocabFrom, out: model });
  }
  const config = parseConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')), join(model, 'config.json'));
  if (!existsSync(data)) {
    const rng = new Rng(DATA_SEED);
    // Uniform over the whole vocabulary: pre-tokenized ids are never decoded, so special tokens are fine.
    const lines = Array.from({ length: examples }, () =>
      JSON.stringify({ input_ids: Array.from({ length: c.seq }, () => rng.int(config.vocabSize)) }),
    );
    await writeFile(`${data}.tmp`, `${lines.join('\n')}\n`);
    await rename(`${data}.tmp`, data);
  }
  return { model, data, vocab: config.vocabSize };
}

/** For contention accounting: wall seconds, this process's CPU seconds, and the whole machine's busy CPU seconds. */
export interface Sample {
  wall: number;
  own: number;
  busy: number;
}

/** USER_HZ: /proc/stat counts in 1/100 s on every Linux that Node supports. */
const CLK_TCK = 100;

/** Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal); NaN off Linux. */
export function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / CLK_TCK;
  } catch {
    return NaN;
  }
}

function sample(): Sample {
  const u = process.cpuUsage();
  return { wall: performance.now() / 1000, own: (u.user + u.system) / 1e6, busy: machineBusySeconds() };
}

/** CPUs used by other processes between consecutive samples (one value per interval). */
function othersBetween(samples: Sample[]): number[] {
  return samples.slice(1).map((b, i) => {
    const a = samples[i];
    return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / (b.wall - a.wall));
  });
}

/** Waits until other processes use fewer than IDLE_OTHERS_CPUS CPUs over 2 s, for at most `maxSeconds`. */
async function waitForIdle(maxSeconds: number): Promise<number> {
  const deadline = performance.now() + maxSeconds * 1000;
  for (;;) {
    const a = sample();
    await new Promise((r) => setTimeout(r, 2000));
    const others = othersBetween([a, sample()])[0];
    if (!(others >= IDLE_OTHERS_CPUS) || performance.now() >= deadline) return others;
  }
}

export interface RowResult {
  config: string;
  policy: string;
  trainer: 'narrowtune' | 'torch';
  ok: boolean;
  error?: string;
  batch: number;
  seq: number;
  threads: number | null;
  /** Where the row trained: narrowtune's execution provider (from the start event) or torch's device. */
  device: string;
  /** torch on cuda: torch.cuda.max_memory_allocated (narrowtune's GPU memory is not measured). */
  gpuPeakMB?: number;
  trainableParameters?: number;
  /** Measured steps only (warm-up excluded), milliseconds. */
  stepMs: number[];
  warmupStepMs: number[];
  medianStepMs: number;
  tokensPerSec: number;
  /** Peak resident set (VmHWM) when the last step finished, and at process end (incl. writing the checkpoint). */
  trainPeakMB: number;
  peakMB: number;
  /** narrowtune: peak up to the first step (load + compile + session), RSS then, and the peak of the steps alone. */
  buildPeakMB?: number;
  startRssMB?: number;
  stepsPeakMB?: number;
  compileMs: number;
  sessionMs: number;
  losses: number[];
  gradNorms: number[];
  /** Median of the second half of the measured steps over the first half: > 1 means steps get slower. */
  drift: number;
  /** CPUs that other processes used during each measured step, and their mean: contention on a shared machine. */
  othersPerStep: number[];
  others: number;
  /** Median over the measured steps during which other processes used < IDLE_OTHERS_CPUS CPUs (NaN if < 3 such). */
  quietMedianStepMs: number;
  quietSteps: number;
  /** batch·seq / the quiet median when there are >= 3 quiet steps, else / the median of all measured steps. */
  bestTokensPerSec: number;
  basis: 'quiet' | 'all';
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function summarise(
  base: Pick<RowResult, 'config' | 'policy' | 'trainer' | 'batch' | 'seq' | 'threads' | 'device'>,
  all: number[],
  warmup: number,
  rest: Partial<RowResult>,
  samples: Sample[] = [],
): RowResult {
  const stepMs = all.slice(warmup);
  const med = median(stepMs);
  const half = stepMs.length >> 1;
  const othersPerStep = samples.length === all.length + 1 ? othersBetween(samples).slice(warmup) : [];
  const quiet = stepMs.filter((_, i) => othersPerStep[i] < IDLE_OTHERS_CPUS);
  return {
    ok: true,
    trainPeakMB: NaN,
    peakMB: NaN,
    compileMs: NaN,
    sessionMs: NaN,
    losses: [],
    gradNorms: [],
    ...base,
    ...rest,
    stepMs,
    warmupStepMs: all.slice(0, warmup),
    medianStepMs: med,
    tokensPerSec: (base.batch * base.seq) / (med / 1000),
    drift: half > 0 ? median(stepMs.slice(stepMs.length - half)) / median(stepMs.slice(0, half)) : 1,
    othersPerStep,
    others: othersPerStep.length ? othersPerStep.reduce((x, y) => x + y, 0) / othersPerStep.length : NaN,
    quietMedianStepMs: quiet.length >= 3 ? median(quiet) : NaN,
    quietSteps: quiet.length,
    bestTokensPerSec: (base.batch * base.seq) / ((quiet.length >= 3 ? median(quiet) : med) / 1000),
    basis: quiet.length >= 3 ? 'quiet' : 'all',
  };
}

function childEntry(): { path: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  return { path: fileURLToPath(import.meta.url), execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [] };
}

type ChildRequest =
  | { type: 'tune'; options: TuneOptions }
  | { type: 'profile'; options: TuneOptions; prefix: string; runs: number; threads: number | null };

interface ChildTuneResult {
  events: TrainEvent[];
  stepMs: number[];
  /** Peak RSS up to the start event (load, compile, session), RSS then, and the peak of the steps alone (-1: unknown). */
  buildPeakKB: number;
  startRssKB: number;
  stepsPeakKB: number;
  /** One at the start event, then one per step event. */
  samples: Sample[];
  trainPeakKB: number;
  peakKB: number;
}

/**
 * Runs one request in a fresh Node process, so peak memory and onnxruntime state are the row's own. A row that
 * outlives `timeoutS` (0: no limit) is killed: a hung GPU driver must not eat a whole benchmark's time budget.
 */
function inChild<T>(request: ChildRequest, timeoutS = 0): Promise<T> {
  const { path, execArgv } = childEntry();
  const child = fork(path, [], { execArgv, env: { ...process.env, NARROWTUNE_BENCH_CHILD: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise<T>((resolvePromise, reject) => {
    let settled = false;
    const timer = timeoutS > 0 ? setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`row timed out after ${timeoutS} s (--row-timeout)`));
    }, timeoutS * 1000) : null;
    const settle = () => {
      settled = true;
      if (timer) clearTimeout(timer);
    };
    child.on('message', (m: { ok: boolean; result?: T; error?: string }) => {
      if (settled) return;
      settle();
      if (m.ok) resolvePromise(m.result!);
      else reject(new Error(m.error));
    });
    child.on('error', (e) => {
      if (settled) return;
      settle();
      reject(e);
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      settle();
      reject(new Error(`bench child exited (${signal ?? `code ${code}`}) before reporting`));
    });
    child.send(request);
  });
}

function tuneOptions(model: string, data: string, out: string, c: BenchConfig, policy: string, steps: number, a: Pick<BenchArgs, 'device' | 'kernels'>): TuneOptions {
  return {
    ...DEFAULTS,
    device: a.device,
    kernels: a.kernels,
    model,
    data,
    out,
    policy: { preset: policy },
    steps,
    batchSize: c.batch,
    seqLen: c.seq,
    lr: BENCH_LR,
    schedule: 'constant',
    warmupSteps: 0,
  };
}

async function runNarrowtune(c: BenchConfig, policy: string, model: string, data: string, a: BenchArgs, work: string): Promise<RowResult> {
  const base = { config: c.name, policy, trainer: 'narrowtune' as const, batch: c.batch, seq: c.seq, threads: null, device: a.device as string };
  const out = await mkdtemp(join(work, 'out-'));
  try {
    const r = await inChild<ChildTuneResult>({ type: 'tune', options: tuneOptions(model, data, out, c, policy, a.warmup + a.steps, a) }, a.rowTimeout);
    const start = r.events.find((e): e is Extract<TrainEvent, { type: 'start' }> => e.type === 'start')!;
    const steps = r.events.filter((e): e is Extract<TrainEvent, { type: 'step' }> => e.type === 'step');
    return summarise({ ...base, device: start.provider }, r.stepMs, a.warmup, {
      trainableParameters: start.trainableParameters,
      compileMs: start.compileMs,
      sessionMs: start.sessionMs,
      trainPeakMB: r.trainPeakKB / 1024,
      peakMB: r.peakKB / 1024,
      buildPeakMB: r.buildPeakKB / 1024,
      startRssMB: r.startRssKB / 1024,
      stepsPeakMB: r.stepsPeakKB >= 0 ? r.stepsPeakKB / 1024 : undefined,
      losses: steps.map((s) => s.loss),
      gradNorms: steps.map((s) => s.gradNorm),
    }, r.samples);
  } catch (e) {
    return { ...summarise(base, [], 0, {}), ok: false, error: (e as Error).message };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** The baseline lives in a source checkout; a bundled bench (bench/gpu-pack.sh) is told where by bench/gpu.sh. */
export function torchTrainerPath(): string {
  return process.env.NARROWTUNE_BENCH_TORCH_TRAINER ?? fileURLToPath(new URL('../../bench/torch_trainer.py', import.meta.url));
}

async function runTorch(c: BenchConfig, policy: string, model: string, data: string, a: BenchArgs, work: string): Promise<RowResult> {
  const base = { config: c.name, policy, trainer: 'torch' as const, batch: c.batch, seq: c.seq, threads: a.threads, device: a.torchDevice as string };
  try {
    const script = torchTrainerPath();
    if (!existsSync(script)) throw new NarrowtuneError('failed_precondition', `--vs-torch needs a source checkout (${script} is missing)`);
    const config = parseConfig(JSON.parse(await readFile(join(model, 'config.json'), 'utf8')), join(model, 'config.json'));
    const trainable = resolvePolicy({ preset: policy }, [...expectedTensors(config).keys()]).trainable;
    const examples = (await readFile(data, 'utf8')).split('\n').filter((l) => l.trim()).length;
    const o = tuneOptions(model, data, '', c, policy, a.warmup + a.steps, a);
    // The trainer's own data order: micro-step k takes these example indices (gradAccum is 1).
    const steps = Array.from({ length: o.steps! }, (_, k) => microBatchIndices(examples, o.batchSize, o.seed, k));
    const spec = {
      model_dir: model,
      data,
      trainable,
      seq: c.seq,
      batch_size: c.batch,
      threads: a.threads,
      lr: o.lr,
      betas: [o.beta1, o.beta2],
      eps: o.eps,
      weight_decay: o.weightDecay,
      clip_norm: o.clipNorm,
      steps,
      device: a.torchDevice,
    };
    const specFile = join(work, `torch-${c.name}-${policy}.spec.json`);
    const outFile = join(work, `torch-${c.name}-${policy}.out.json`);
    await writeFile(specFile, JSON.stringify(spec));
    const t = String(a.threads);
    await new Promise<void>((ok, fail) => {
      const p = spawn(a.python, [script, specFile, outFile], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t },
      });
      const timer = a.rowTimeout > 0 ? setTimeout(() => p.kill('SIGKILL'), a.rowTimeout * 1000) : null;
      p.on('error', (e) => {
        if (timer) clearTimeout(timer);
        fail(new Error(`cannot run ${a.python} (--python): ${e.message}`));
      });
      p.on('exit', (code, signal) => {
        if (timer) clearTimeout(timer);
        if (code === 0) ok();
        else fail(new Error(`${a.python} ${script} exited (${signal ?? `code ${code}`})${signal === 'SIGKILL' && timer ? ` (--row-timeout ${a.rowTimeout} s)` : ''}`));
      });
    });
    const r = JSON.parse(await readFile(outFile, 'utf8')) as {
      losses: number[]; grad_norms: number[]; step_ms: number[]; setup_ms: number; train_peak_kb: number; max_rss_kb: number; threads: number;
      samples: Sample[]; device?: string; gpu_peak_mb?: number;
    };
    return summarise({ ...base, threads: r.threads, device: r.device ?? a.torchDevice }, r.step_ms, a.warmup, {
      trainableParameters: undefined,
      compileMs: 0,
      sessionMs: r.setup_ms,
      trainPeakMB: r.train_peak_kb / 1024,
      peakMB: r.max_rss_kb / 1024,
      losses: r.losses,
      gradNorms: r.grad_norms,
      gpuPeakMB: r.gpu_peak_mb,
    }, r.samples);
  } catch (e) {
    return { ...summarise(base, [], 0, {}), ok: false, error: (e as Error).message };
  }
}

/**
 * The loss of every step (warm-up included) of both trainers: a fast wrong trainer cannot win. The data cycles
 * every 4 steps, so from step 5 on a batch comes back after 4 updates and its loss shows them.
 */
function lossCheck(nt: RowResult, th: RowResult): { ok: boolean; maxRelErr: number; detail: string } {
  const k = Math.min(nt.losses.length, th.losses.length);
  if (k === 0) return { ok: false, maxRelErr: NaN, detail: 'no losses to compare' };
  let worst = 0;
  for (let i = 0; i < k; i++) worst = Math.max(worst, Math.abs(nt.losses[i] - th.losses[i]) / Math.abs(th.losses[i]));
  const ok = worst <= LOSS_RTOL;
  if (ok && k < CHECK_MIN_STEPS) process.stderr.write(`bench: only ${k} step(s): the loss check has seen ${k - 1} update(s)\n`);
  const detail = `losses of steps 1..${k}: narrowtune [${nt.losses.slice(0, k).map((x) => x.toFixed(5))}] torch [${th.losses.slice(0, k).map((x) => x.toFixed(5))}]`;
  return { ok, maxRelErr: worst, detail };
}

export interface BenchRow {
  config: string;
  policy: string;
  narrowtune: RowResult;
  torch: RowResult | null;
  /** narrowtune tokens/s over torch tokens/s. */
  speedup: number | null;
  lossCheck: { ok: boolean; maxRelErr: number; detail: string } | null;
  status: 'ok' | 'FAILED';
}

const fmt = (x: number, d = x < 100 ? 1 : 0) => (Number.isFinite(x) ? x.toFixed(d) : '–');

function table(rows: BenchRow[]): string {
  const head = ['config', 'policy', 'device', 'step ms', 'quiet ms (n)', 'tok/s', 'peak MB', 'compile+session ms', 'torch step ms', 'torch quiet ms (n)', 'torch tok/s', 'torch peak MB', 'speedup', 'loss check', 'drift', 'others'];
  const q = (x: RowResult) => `${fmt(x.quietMedianStepMs)} (${x.quietSteps})`;
  const tps = (x: RowResult) => `${fmt(x.bestTokensPerSec)}${x.basis === 'quiet' ? ' q' : ''}`;
  const lines = rows.map((r) => {
    const n = r.narrowtune;
    const t = r.torch;
    const both = n.basis === 'quiet' && t?.basis === 'quiet';
    return [
      r.config,
      r.policy,
      t ? `${n.device} / ${t.device}` : n.device,
      n.ok ? fmt(n.medianStepMs) : 'FAILED',
      q(n),
      tps(n),
      fmt(n.trainPeakMB),
      n.ok ? `${fmt(n.compileMs)}+${fmt(n.sessionMs)}` : '–',
      t ? (t.ok ? fmt(t.medianStepMs) : 'FAILED') : '',
      t ? q(t) : '',
      t ? tps(t) : '',
      t ? fmt(t.trainPeakMB) : '',
      r.speedup === null ? '' : `${fmt(r.speedup, 2)}×${both ? ' q' : ''}`,
      r.lossCheck ? `${r.lossCheck.ok ? 'ok' : 'FAILED'} (${r.lossCheck.maxRelErr.toExponential(1)})` : '',
      fmt(n.drift, 2),
      t ? `${fmt(n.others, 2)}/${fmt(t.others, 2)}` : fmt(n.others, 2),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [row(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

async function quiet(maxSeconds: number): Promise<void> {
  const others = await waitForIdle(maxSeconds);
  if (others >= IDLE_OTHERS_CPUS) process.stderr.write(`bench: other processes still use ${others.toFixed(2)} CPUs after waiting ${maxSeconds} s; measuring anyway\n`);
}

export async function benchCommand(argv: string[]): Promise<void> {
  const a = parseBenchArgs(argv);
  await mkdir(a.cacheDir, { recursive: true });
  const work = await mkdtemp(join(a.cacheDir, 'run-'));
  try {
    if (a.profile) return await profileRows(a, work);
    const rows: BenchRow[] = [];
    for (const c of a.configs) {
      const { model, data } = await prepare(c, a.cacheDir, c.batch * 4);
      for (const policy of a.policies) {
        if (a.waitIdle > 0) await quiet(a.waitIdle);
        process.stderr.write(`bench: ${c.name} ${policy}: narrowtune…\n`);
        const nt = await runNarrowtune(c, policy, model, data, a, work);
        let th: RowResult | null = null;
        if (a.vsTorch) {
          if (a.waitIdle > 0) await quiet(a.waitIdle);
          process.stderr.write(`bench: ${c.name} ${policy}: torch…\n`);
          th = await runTorch(c, policy, model, data, a, work);
        }
        const check = th && nt.ok && th.ok ? lossCheck(nt, th) : null;
        const ok = nt.ok && (!th || (th.ok && check!.ok));
        const row: BenchRow = {
          config: c.name,
          policy,
          narrowtune: nt,
          torch: th,
          // Like for like: quiet medians when both trainers had >= 3 quiet steps, else medians of all steps.
          speedup: th && th.ok && nt.ok ? (nt.basis === 'quiet' && th.basis === 'quiet' ? nt.bestTokensPerSec / th.bestTokensPerSec : nt.tokensPerSec / th.tokensPerSec) : null,
          lossCheck: check,
          status: ok ? 'ok' : 'FAILED',
        };
        rows.push(row);
        for (const r of [nt, th]) if (r && !r.ok) process.stderr.write(`bench: ${c.name} ${policy} ${r.trainer} FAILED: ${r.error}\n`);
        if (check && !check.ok) process.stderr.write(`bench: ${c.name} ${policy} FAILED loss check: ${check.detail}\n`);
        process.stderr.write(
          `bench: ${c.name} ${policy}: narrowtune ${fmt(nt.medianStepMs)} ms/step ${fmt(nt.tokensPerSec)} tok/s` +
            (th ? `, torch ${fmt(th.medianStepMs)} ms/step ${fmt(th.tokensPerSec)} tok/s` : '') +
            '\n',
        );
      }
    }
    const report = {
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, platform: `${process.platform}-${process.arch}` },
      settings: {
        steps: a.steps, warmup: a.warmup, threads: a.threads, lr: BENCH_LR, schedule: 'constant', optimizer: 'adamw', clipNorm: DEFAULTS.clipNorm,
        device: a.device, kernels: a.kernels, torchDevice: a.vsTorch ? a.torchDevice : null,
      },
      rows,
    };
    process.stdout.write(`${table(rows)}\n`);
    process.stdout.write(
      `steps: ${a.steps} measured after ${a.warmup} warm-up; peak MB = VmHWM when the last step ends; ` +
        `drift = late/early median step time; others = CPUs used by other processes during the steps (narrowtune/torch); ` +
        `quiet = steps during which others < ${IDLE_OTHERS_CPUS}; q = tok/s from the quiet median` +
        `${a.vsTorch ? `; torch threads ${a.threads}` : ''}\n`,
    );
    if (a.json) await writeFile(a.json, `${JSON.stringify(report, null, 2)}\n`);
    if (rows.some((r) => r.status !== 'ok')) {
      throw new NarrowtuneError('internal', `${rows.filter((r) => r.status !== 'ok').length} row(s) FAILED`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// ───────────────────────────── profiling ─────────────────────────────

interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; provider?: string; output_type_shape?: unknown };
}

export interface ProfileSummary {
  runMs: number;
  kernelMs: number;
  byOp: { op: string; ms: number; pct: number; count: number }[];
  byNode: { node: string; op: string; source: string; ms: number; pct: number; shape: string }[];
  byPhase: { phase: string; ms: number; pct: number }[];
  /** By execution provider: on a GPU, which share of the step fell back to the CPU. */
  byProvider: { provider: string; ms: number; pct: number; count: number }[];
  /** By the differentiable op (ops.ts rule) whose forward builder or VJP rule emitted the node. */
  bySource: { source: string; ms: number; pct: number; count: number }[];
}

/**
 * What emitted each node of the compiled graph, by node index (the builder names nodes `n<index>_<Op>`, and
 * onnxruntime's fused nodes keep the first node's name): `fwd <op>` / `bwd <op>` for an ops.ts rule,
 * `fwd other`, `bwd accumulate` (autodiff's gradient sums and broadcast reductions) or `update` (loss output,
 * clipping, optimizer, output copies) for the rest.
 */
export type NodeSources = string[];

function sourceOf(node: string, sources: NodeSources | null): string {
  const m = /^n(\d+)_/.exec(node);
  if (!m) return 'onnxruntime-expanded (cross-entropy function body)';
  return sources?.[Number(m[1])] ?? 'unknown';
}

/** Aggregates onnxruntime's chrome-trace JSON over the last `model_run` in it. */
export function summariseProfile(events: ProfileEvent[], sources: NodeSources | null): ProfileSummary {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const last = runs[runs.length - 1];
  const inRun = (e: ProfileEvent) => !last || (e.ts >= last.ts && e.ts <= last.ts + last.dur);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && inRun(e));
  const kernelUs = kernels.reduce((s, e) => s + e.dur, 0);
  const runUs = last?.dur ?? kernelUs;
  const pct = (us: number) => (100 * us) / runUs;
  const add = (m: Map<string, { us: number; count: number }>, k: string, us: number) => {
    const o = m.get(k) ?? { us: 0, count: 0 };
    m.set(k, { us: o.us + us, count: o.count + 1 });
  };
  const ops = new Map<string, { us: number; count: number }>();
  const bySource = new Map<string, { us: number; count: number }>();
  const phases = new Map<string, { us: number; count: number }>();
  const providers = new Map<string, { us: number; count: number }>();
  const nodes = kernels.map((e) => {
    const node = e.name.replace(/_kernel_time$/, '');
    const op = e.args?.op_name ?? '?';
    const source = sourceOf(node, sources);
    add(ops, op, e.dur);
    add(providers, e.args?.provider ?? '?', e.dur);
    add(bySource, source, e.dur);
    const phase = !sources
      ? 'kernels (phases need the node sources of a profiling run)'
      : source.startsWith('fwd') || source.startsWith('onnxruntime') ? 'forward' : source.startsWith('bwd') ? 'backward' : source === 'update' ? 'clip + optimizer + outputs' : 'other';
    add(phases, phase, e.dur);
    return { node, op, source, ms: e.dur / 1000, pct: pct(e.dur), shape: JSON.stringify(e.args?.output_type_shape ?? '') };
  });
  phases.set('outside kernels (executor)', { us: runUs - kernelUs, count: 0 });
  const list = (m: Map<string, { us: number; count: number }>) => [...m].map(([k, o]) => ({ k, ms: o.us / 1000, pct: pct(o.us), count: o.count })).sort((x, y) => y.ms - x.ms);
  return {
    runMs: runUs / 1000,
    kernelMs: kernelUs / 1000,
    byOp: list(ops).map(({ k, ...r }) => ({ op: k, ...r })),
    byNode: nodes.sort((x, y) => y.ms - x.ms),
    byPhase: list(phases).map(({ k, ms, pct: p }) => ({ phase: k, ms, pct: p })),
    byProvider: list(providers).map(({ k, ...r }) => ({ provider: k, ...r })),
    bySource: list(bySource).map(({ k, ...r }) => ({ source: k, ...r })),
  };
}

export function formatProfile(title: string, s: ProfileSummary, top = 25): string {
  const out = [`## ${title}: session.run ${s.runMs.toFixed(0)} ms (kernels ${s.kernelMs.toFixed(0)} ms)`, '', '| phase | ms | % |', '| --- | --- | --- |'];
  for (const p of s.byPhase) out.push(`| ${p.phase} | ${p.ms.toFixed(1)} | ${p.pct.toFixed(1)} |`);
  out.push('', '| execution provider | nodes | ms | % |', '| --- | --- | --- | --- |');
  for (const p of s.byProvider) out.push(`| ${p.provider} | ${p.count} | ${p.ms.toFixed(1)} | ${p.pct.toFixed(1)} |`);
  out.push('', '| op type | nodes | ms | % |', '| --- | --- | --- | --- |');
  for (const o of s.byOp.slice(0, top)) out.push(`| ${o.op} | ${o.count} | ${o.ms.toFixed(1)} | ${o.pct.toFixed(1)} |`);
  out.push('', '| emitted by | nodes | ms | % |', '| --- | --- | --- | --- |');
  for (const o of s.bySource.slice(0, top)) out.push(`| ${o.source} | ${o.count} | ${o.ms.toFixed(1)} | ${o.pct.toFixed(1)} |`);
  out.push('', '| node | op | emitted by | ms | % | output shape |', '| --- | --- | --- | --- | --- | --- |');
  for (const n of s.byNode.slice(0, top)) out.push(`| ${n.node} | ${n.op} | ${n.source} | ${n.ms.toFixed(1)} | ${n.pct.toFixed(1)} | ${n.shape.slice(0, 80)} |`);
  return out.join('\n');
}

async function profileRows(a: BenchArgs, work: string): Promise<void> {
  const dir = resolve(a.profile!);
  await mkdir(dir, { recursive: true });
  for (const c of a.configs) {
    const { model, data } = await prepare(c, a.cacheDir, c.batch * 4);
    for (const policy of a.policies) {
      const prefix = join(dir, `${c.name}-${policy}`);
      process.stderr.write(`bench: profiling ${c.name} ${policy}…\n`);
      const r = await inChild<{ file: string; sources: NodeSources; stepMs: number[] }>({
        type: 'profile',
        options: tuneOptions(model, data, join(work, 'unused'), c, policy, a.warmup + 1, a),
        prefix,
        runs: a.warmup + 1,
        threads: a.profileThreads,
      }, a.rowTimeout);
      const summary = summariseProfile(JSON.parse(await readFile(r.file, 'utf8')) as ProfileEvent[], r.sources);
      const text = formatProfile(`${c.name} ${policy}`, summary);
      await writeFile(`${prefix}-summary.md`, `${text}\n`);
      await writeFile(`${prefix}-summary.json`, JSON.stringify({ ...summary, byNode: summary.byNode.slice(0, 200), stepMs: r.stepMs, trace: r.file }, null, 2));
      process.stdout.write(`${text}\n\nsession.run per step (ms, profiler on): ${r.stepMs.map((x) => x.toFixed(0)).join(', ')}; trace ${r.file}\n\n`);
    }
  }
}

// ───────────────────────────── child process ─────────────────────────────

function statusKB(field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux
  }
  return field === 'VmHWM' ? process.resourceUsage().maxRSS : process.memoryUsage().rss / 1024;
}

const vmHwmKB = () => statusKB('VmHWM');

/** Resets the kernel's peak-RSS mark (VmHWM) to the current RSS, so later peaks are the training steps' own. */
function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

async function childTune(options: TuneOptions): Promise<ChildTuneResult> {
  const { tune } = await import('../trainer/trainer.js');
  const events: TrainEvent[] = [];
  const stepMs: number[] = [];
  const samples: Sample[] = [];
  let trainPeakKB = 0;
  let buildPeakKB = 0;
  let startRssKB = 0;
  let reset = false;
  let stepsPeakKB = -1;
  await tune(options, (e) => {
    events.push(e);
    if (e.type === 'start') {
      buildPeakKB = vmHwmKB();
      startRssKB = statusKB('VmRSS');
      reset = resetPeak();
    }
    if (e.type === 'start' || e.type === 'step') samples.push(sample());
    if (e.type === 'step' && e.step === e.totalSteps && reset) stepsPeakKB = vmHwmKB();
    if (e.type === 'step') {
      // tune measures each step from batch assembly to the update's outputs; tokens / tokensPerSec is that time.
      stepMs.push((1000 * e.tokens) / e.tokensPerSec);
      if (e.step === e.totalSteps) trainPeakKB = Math.max(buildPeakKB, vmHwmKB());
    }
  });
  return { events, stepMs, samples, buildPeakKB, startRssKB, stepsPeakKB, trainPeakKB, peakKB: Math.max(trainPeakKB, vmHwmKB()) };
}

function optimizerSpec(o: TuneOptions): OptimizerSpec {
  return o.optimizer === 'sgd'
    ? { kind: 'sgd', weightDecay: o.weightDecay }
    : { kind: 'adamw', beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
}

/**
 * One profiled training step, built exactly as tune() builds it (same compileTrainStep arguments, same feeds,
 * same graph optimisation level), with ORT's profiler switched on; the summary takes the last of `runs` runs.
 */
/**
 * Wraps every ops.ts rule (forward builder and VJP) to note which node indices it emits, while compileTrainStep
 * runs in this (profiling-only) child process. Nodes no rule emitted: before the first VJP `fwd other`, between
 * VJPs `bwd accumulate`, after the last VJP `update`.
 */
function recordSources(): { stop(): NodeSources } {
  const table = OPS as unknown as Record<string, OpRule<unknown>>;
  const saved = new Map(Object.entries(table).map(([k, r]) => [k, { forward: r.forward, vjp: r.vjp }]));
  const ranges: { from: number; to: number; label: string }[] = [];
  for (const [name, r] of Object.entries(table)) {
    const { forward, vjp } = saved.get(name)!;
    r.forward = (g, inputs, attrs) => {
      const from = g.nodeCount;
      const out = forward.call(r, g, inputs, attrs);
      ranges.push({ from, to: g.nodeCount, label: `fwd ${name}` });
      return out;
    };
    r.vjp = (g, ctx, dy) => {
      const from = g.nodeCount;
      const out = vjp.call(r, g, ctx, dy);
      ranges.push({ from, to: g.nodeCount, label: `bwd ${name}` });
      return out;
    };
  }
  return {
    stop() {
      for (const [name, r] of Object.entries(table)) Object.assign(r, saved.get(name)!);
      const total = Math.max(0, ...ranges.map((x) => x.to));
      const firstVjp = ranges.find((x) => x.label.startsWith('bwd'))?.from ?? Infinity;
      const lastVjp = Math.max(0, ...ranges.filter((x) => x.label.startsWith('bwd')).map((x) => x.to));
      const out: NodeSources = [];
      for (let i = 0; i < total + 4096; i++) out.push(i < firstVjp ? 'fwd other' : i < lastVjp ? 'bwd accumulate' : 'update');
      for (const x of ranges) for (let i = x.from; i < x.to; i++) out[i] = x.label;
      return out;
    },
  };
}

async function childProfile(o: TuneOptions, prefix: string, runs: number, threads: number | null): Promise<{ file: string; sources: NodeSources; stepMs: number[] }> {
  const ckpt = await loadCheckpoint(o.model);
  const c = ckpt.config;
  const tokenizer = await loadTokenizer(o.model);
  const dataset = await loadDataset(o.data, tokenizer, { seqLen: o.seqLen });
  const names = [...expectedTensors(c).keys()];
  const policy = resolvePolicy(o.policy, names);
  const params = new Map<string, ParamTensor>(names.map((n) => [n, { shape: ckpt.tensors.get(n)!.shape, data: toFloat32(ckpt.tensors.get(n)!) }]));
  const seq = padLength(dataset.examples, o.seqLen);
  const opt = optimizerSpec(o);
  const n = o.batchSize * seq;
  let sourceList: NodeSources = [];
  // Built as tune() builds it, for the lowering the provider gets; the node sources are the last build's.
  const build = (kernels: Kernels) => {
    const sources = recordSources();
    try {
      return compileTrainStep({ config: c, params, trainable: policy.trainable, batch: o.batchSize, seq, optimizer: opt, clipNorm: o.clipNorm, accumulate: false, update: true, dtype: 'float32', kernels }).model;
    } finally {
      sourceList = sources.stop();
    }
  };
  const kernels = o.kernels === 'auto' ? undefined : o.kernels;
  const handle = await createSessionFor(build, o.device, threads === null ? { profile: prefix, kernels } : { profile: prefix, intraOpThreads: threads, kernels });
  const state = new Map<string, { p: Float32Array; m: Float32Array; v: Float32Array }>(policy.trainable.map((name) => [name, { p: params.get(name)!.data, m: new Float32Array(params.get(name)!.data.length), v: new Float32Array(params.get(name)!.data.length) }]));
  const stepMs: number[] = [];
  for (let step = 0; step < runs; step++) {
    const idx = microBatchIndices(dataset.examples.length, o.batchSize, o.seed, step);
    const batch = collate(idx.map((i) => dataset.examples[i]), seq, o.batchSize, tokenizer.padId);
    const sc = optimizerScalars(opt, o.lr, step + 1);
    const feeds: Record<string, ort.Tensor> = {
      [IO.ids]: int64Tensor(batch.inputIds, [n]),
      [IO.targets]: int64Tensor(batch.targets, [n]),
      [IO.lossScale]: floatTensor(Float32Array.of(1 / Math.max(1, batch.validTokens)), []),
      [IO.lr]: floatTensor(Float32Array.of(sc.lr), []),
      [IO.stepSize]: floatTensor(Float32Array.of(sc.stepSize), []),
      [IO.bc2Sqrt]: floatTensor(Float32Array.of(sc.bc2Sqrt), []),
      [IO.decay]: floatTensor(Float32Array.of(sc.decay), []),
    };
    for (const [name, s] of state) {
      const shape = params.get(name)!.shape;
      feeds[name] = floatTensor(s.p, shape);
      if (opt.kind === 'adamw') {
        feeds[IO.m(name)] = floatTensor(s.m, shape);
        feeds[IO.v(name)] = floatTensor(s.v, shape);
      }
    }
    const t0 = performance.now();
    const out = await handle.session.run(feeds);
    stepMs.push(performance.now() - t0);
    for (const [name, s] of state) {
      s.p = (out[IO.newParam(name)] as ort.Tensor).data as Float32Array;
      if (opt.kind === 'adamw') {
        s.m = (out[IO.newM(name)] as ort.Tensor).data as Float32Array;
        s.v = (out[IO.newV(name)] as ort.Tensor).data as Float32Array;
      }
    }
  }
  const ended: unknown = handle.session.endProfiling();
  await handle.session.release();
  // The trace is PREFIX_<date>.json; onnxruntime-node does not return its name, so find the newest one.
  if (typeof ended === 'string' && ended.endsWith('.json') && existsSync(ended)) return { file: resolve(ended), sources: sourceList, stepMs };
  const dir = resolve(prefix, '..');
  const base = prefix.slice(dir.length + 1);
  const found = (await readdir(dir)).filter((f) => f.startsWith(base) && f.endsWith('.json') && !f.includes('summary')).sort();
  if (found.length === 0) throw new Error(`onnxruntime wrote no profile for prefix ${prefix}`);
  return { file: join(dir, found[found.length - 1]), sources: sourceList, stepMs };
}

function childMain(): void {
  process.on('message', (m: ChildRequest) => {
    const work = m.type === 'tune' ? childTune(m.options) : childProfile(m.options, m.prefix, m.runs, m.threads);
    work.then(
      (result) => process.send!({ ok: true, result }, () => process.disconnect()),
      (e: unknown) => process.send!({ ok: false, error: (e as Error).stack ?? String(e) }, () => process.disconnect()),
    );
  });
}

if (process.env.NARROWTUNE_BENCH_CHILD === '1' && process.send && process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  childMain();
}
