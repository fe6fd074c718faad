// `narrowtune tune`: fine-tune a Hugging Face checkpoint under a freezing policy.
import { readdir, stat } from 'node:fs/promises';
import { NARROWTUNE_MARKER } from '../model/checkpoint.js';
import { DEVICES } from '../runtime/session.js';
import type { TrainEvent } from '../trainer/events.js';
import { DEFAULT_LWF_TEMPERATURE, DEFAULTS, integerViolation, LIMITS, LORA_DEFAULTS, settingsViolations, type TuneOptions } from '../trainer/options.js';
import { tuneInWorker } from '../trainer/run-in-worker.js';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { type Flags, int, list, num, oneOf, parseFlags, pathFlag, required, str } from './args.js';
import { progressReporter } from './progress.js';

/** Flags shared by `tune` and `jobs start`. */
export const TRAINING_FLAGS = {
  model: { type: 'string' },
  data: { type: 'string' },
  policy: { type: 'string' },
  include: { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  optimizer: { type: 'string' },
  lr: { type: 'string' },
  'weight-decay': { type: 'string' },
  steps: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  'grad-accum': { type: 'string' },
  'seq-len': { type: 'string' },
  schedule: { type: 'string' },
  'warmup-steps': { type: 'string' },
  'clip-norm': { type: 'string' },
  seed: { type: 'string' },
  device: { type: 'string' },
  'validation-data': { type: 'string' },
  'eval-every': { type: 'string' },
  'probe-data': { type: 'string' },
  'probe-every': { type: 'string' },
  'token-class': { type: 'string', multiple: true },
  'max-kl-to-base': { type: 'string' },
  'max-number-mass-delta': { type: 'string' },
  'max-heldout-loss-delta': { type: 'string' },
  'lwf-weight': { type: 'string' },
  'lwf-temperature': { type: 'string' },
  teacher: { type: 'string' },
  adapter: { type: 'string' },
  'lora-rank': { type: 'string' },
  'lora-alpha': { type: 'string' },
  'lora-dropout': { type: 'string' },
  'lora-target': { type: 'string', multiple: true },
  'merge-adapter': { type: 'boolean' },
} as const;

/** `--token-class NAME=REGEX` → a class; the regex may itself contain '='. */
function tokenClasses(f: Flags): { name: string; pattern: string }[] {
  return list(f, 'token-class').map((spec) => {
    const at = spec.indexOf('=');
    if (at <= 0) throw invalidArgument('--token-class', `expected NAME=REGEX, got "${spec}"`);
    return { name: spec.slice(0, at), pattern: spec.slice(at + 1) };
  });
}

/** `--lwf-weight L [--lwf-temperature T] [--teacher DIR]`; the other two mean nothing without the weight. */
function lwfOptions(f: Flags): TuneOptions['lwf'] {
  const weight = num(f, 'lwf-weight');
  const temperature = num(f, 'lwf-temperature');
  const teacher = str(f, 'teacher');
  if (weight === undefined) {
    if (temperature !== undefined) throw invalidArgument('--lwf-temperature', 'needs --lwf-weight');
    if (teacher !== undefined) throw invalidArgument('--teacher', 'needs --lwf-weight');
    return null;
  }
  return { weight, temperature: temperature ?? DEFAULT_LWF_TEMPERATURE, teacher: teacher ?? null };
}

/** `--adapter lora [--lora-rank R] [--lora-alpha A] [--lora-dropout P] [--lora-target RE]...`; the others need --adapter. */
function loraOptions(f: Flags): TuneOptions['lora'] {
  const adapter = oneOf(f, 'adapter', ['lora'] as const);
  const given = { rank: int(f, 'lora-rank'), alpha: num(f, 'lora-alpha'), dropout: num(f, 'lora-dropout') };
  const targets = list(f, 'lora-target');
  if (adapter === undefined) {
    const stray =
      Object.entries({ 'lora-rank': given.rank, 'lora-alpha': given.alpha, 'lora-dropout': given.dropout }).find(([, x]) => x !== undefined)?.[0] ??
      (targets.length > 0 ? 'lora-target' : undefined);
    if (stray) throw invalidArgument(`--${stray}`, 'needs --adapter lora');
    return null;
  }
  return {
    rank: given.rank ?? LORA_DEFAULTS.rank,
    alpha: given.alpha ?? LORA_DEFAULTS.alpha,
    dropout: given.dropout ?? LORA_DEFAULTS.dropout,
    targets,
  };
}

/** A settings violation's field (snake case, maybe under drift_budget.) as the flag that sets it. */
function flagOf(field: string): string {
  return field === 'token_classes' ? '--token-class' : `--${field.slice(field.lastIndexOf('.') + 1).replace(/_/g, '-')}`;
}

/** Trainer options from parsed flags (paths are left as given); bad settings fail here, named by their flags. */
export function optionsFromFlags(f: Flags): Omit<TuneOptions, 'out'> {
  const o = readOptions(f);
  const v = settingsViolations(o, { validationData: o.validationData !== null, probeData: o.probeData !== null }).map((x) => ({ ...x, field: flagOf(x.field) }));
  if (v.length > 0) throw new NarrowtuneError('invalid_argument', v.map((x) => `${x.field}: ${x.description}`).join('\n'), v);
  return o;
}

function readOptions(f: Flags): Omit<TuneOptions, 'out'> {
  const clip = num(f, 'clip-norm');
  return {
    ...DEFAULTS,
    model: required(f, 'model'),
    data: required(f, 'data'),
    policy: { preset: str(f, 'policy'), include: list(f, 'include'), exclude: list(f, 'exclude') },
    optimizer: oneOf(f, 'optimizer', ['adamw', 'sgd'] as const) ?? DEFAULTS.optimizer,
    lr: num(f, 'lr') ?? DEFAULTS.lr,
    weightDecay: num(f, 'weight-decay') ?? DEFAULTS.weightDecay,
    steps: int(f, 'steps') ?? null,
    epochs: int(f, 'epochs') ?? DEFAULTS.epochs,
    batchSize: int(f, 'batch-size') ?? DEFAULTS.batchSize,
    gradAccum: int(f, 'grad-accum') ?? DEFAULTS.gradAccum,
    seqLen: int(f, 'seq-len') ?? DEFAULTS.seqLen,
    schedule: oneOf(f, 'schedule', ['constant', 'cosine'] as const) ?? DEFAULTS.schedule,
    warmupSteps: int(f, 'warmup-steps') ?? null,
    clipNorm: clip === undefined ? DEFAULTS.clipNorm : clip === 0 ? null : clip,
    seed: int(f, 'seed') ?? DEFAULTS.seed,
    device: oneOf(f, 'device', DEVICES) ?? DEFAULTS.device,
    precision: oneOf(f, 'precision', ['float32', 'float64'] as const) ?? DEFAULTS.precision,
    validationData: str(f, 'validation-data') ?? null,
    evalEvery: int(f, 'eval-every') ?? null,
    probeData: str(f, 'probe-data') ?? null,
    probeEvery: int(f, 'probe-every') ?? null,
    tokenClasses: tokenClasses(f),
    driftBudget: {
      maxKlToBase: num(f, 'max-kl-to-base') ?? null,
      maxNumberMassDelta: num(f, 'max-number-mass-delta') ?? null,
      maxHeldoutLossDelta: num(f, 'max-heldout-loss-delta') ?? null,
    },
    lwf: lwfOptions(f),
    lora: loraOptions(f),
    mergeAdapter: f['merge-adapter'] === true,
  };
}

export function parseTuneArgs(argv: string[]): TuneOptions & { overwrite: boolean } {
  const f = parseFlags(argv, {
    ...TRAINING_FLAGS,
    out: { type: 'string' },
    overwrite: { type: 'boolean' },
    precision: { type: 'string' },
    threads: { type: 'string' },
    'frozen-precision': { type: 'string' },
    'feature-cache': { type: 'string' },
  });
  // Not training flags: host settings, so `jobs start` does not send them (the server's own --threads applies).
  return {
    ...optionsFromFlags(f),
    threads: threadsFlag(f),
    frozenPrecision: frozenPrecisionFlag(f),
    featureCache: pathFlag(f, 'feature-cache') ?? null,
    out: required(f, 'out'),
    overwrite: f.overwrite === true,
  };
}

function frozenPrecisionFlag(f: Flags): TuneOptions['frozenPrecision'] {
  const p = typeof f['frozen-precision'] === 'string' ? f['frozen-precision'] : DEFAULTS.frozenPrecision;
  if (p !== 'float32' && p !== 'checkpoint') throw invalidArgument('--frozen-precision', `must be float32 or checkpoint, got "${p}"`);
  return p;
}

function threadsFlag(f: Flags): number | null {
  const n = int(f, 'threads');
  if (n === undefined) return null;
  const v = integerViolation(n, '--threads', LIMITS.threads);
  if (v) throw invalidArgument(v.field, v.description);
  return n;
}

/**
 * Refuses, before any training, an --out that holds something: a previous result only with --overwrite, anything
 * else never (writeCheckpoint would refuse it at the end). An empty directory holds nothing to lose.
 */
export async function checkOut(out: string, overwrite: boolean): Promise<void> {
  const st = await stat(out).catch(() => null);
  if (st === null) return;
  if (!st.isDirectory()) throw invalidArgument('--out', `${out} exists and is not a directory`);
  const entries = await readdir(out);
  if (entries.length === 0) return;
  if (!entries.includes(NARROWTUNE_MARKER)) {
    throw invalidArgument('--out', `${out} is not empty and holds no narrowtune output (no ${NARROWTUNE_MARKER}); choose another directory`);
  }
  if (!overwrite) throw invalidArgument('--out', `${out} already holds a fine-tuned model; pass --overwrite to replace it`);
}

/**
 * Adam moves a weight by about the learning rate per step at most (SGD too, under the default clip-norm 1), so
 * lr × steps bounds how far any weight can travel. At the recipe's lr 5e-6 a run needs hundreds of steps to show;
 * below 5e-4 in all (100 steps at 5e-6, a rule of thumb) the loss barely moves, and a first run on a small file
 * (5 steps) looks as if nothing happened.
 */
export const MIN_LR_STEPS = 5e-4;

/** One line saying which flags to raise when a run is too small to change the model visibly, else null. */
export function smallRunNote(lr: number, steps: number): string | null {
  if (lr * steps >= MIN_LR_STEPS) return null;
  const fmt = (x: number) => x.toExponential(0);
  const n = `${steps} step${steps === 1 ? '' : 's'}`;
  return (
    `note: ${n} at lr ${fmt(lr)} can move a weight by about ${fmt(lr * steps)} at most, likely too little to ` +
    `change the model; raise --steps or --epochs (${Math.ceil(Number((MIN_LR_STEPS / lr).toPrecision(12)))} steps at this lr) or --lr (${fmt(MIN_LR_STEPS / steps)} for ${n})`
  );
}

export async function tuneCommand(argv: string[]): Promise<void> {
  const { overwrite, ...options } = parseTuneArgs(argv);
  await checkOut(options.out, overwrite);
  const show = progressReporter(process.stderr);
  const onEvent = (e: TrainEvent) => {
    show(e);
    const note = e.type === 'started' ? smallRunNote(options.lr, e.totalSteps) : null;
    if (note) process.stderr.write(`${note}\n`);
  };
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  try {
    await tuneInWorker(options, onEvent, controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
  }
}
