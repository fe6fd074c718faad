// `narrowtune tune`: fine-tune a Hugging Face checkpoint under a freezing policy.
import { PRESET_NAMES } from '../policy/policy.js';
import { DEVICES } from '../runtime/session.js';
import { DEFAULTS, type TuneOptions } from '../trainer/options.js';
import { tuneInWorker } from '../trainer/run-in-worker.js';
import { invalidArgument } from '../util/errors.js';
import { type Flags, int, list, num, oneOf, parseFlags, required, str } from './args.js';
import { progressReporter } from './progress.js';

export const TUNE_HELP = `Usage: narrowtune tune --model DIR --data FILE --out DIR [options]

Fine-tunes a Hugging Face Llama/Qwen2/Qwen3 checkpoint. Only the tensors the policy allows change;
every other tensor is compiled into the graph as a constant, and narrowtune.json in --out proves with
SHA-256 hashes that they did not move.

Required:
  --model DIR            Hugging Face model directory (config.json, *.safetensors, tokenizer.json)
  --data FILE            JSONL: {"prompt","completion"} | {"messages":[...]} | {"input_ids","labels"}
  --out DIR              output checkpoint directory (written atomically)

Policy (default ${DEFAULTS.policy.preset ?? 'mlp_gate_up'}):
  --policy NAME          ${PRESET_NAMES.join(' | ')}
  --include RE           train tensors whose full name matches RE (repeatable; replaces --policy)
  --exclude RE           keep tensors matching RE frozen (repeatable)

Optimisation:
  --optimizer adamw|sgd  (default ${DEFAULTS.optimizer})
  --lr X                 peak learning rate (default ${DEFAULTS.lr})
  --weight-decay X       (default ${DEFAULTS.weightDecay})
  --steps N              optimizer steps, cycling through the data as needed
  --epochs N             passes over the data when --steps is not given (default ${DEFAULTS.epochs})
  --batch-size B         sequences per micro-batch (default ${DEFAULTS.batchSize})
  --grad-accum K         micro-batches per optimizer step (default ${DEFAULTS.gradAccum})
  --seq-len L            truncate examples to L tokens (default ${DEFAULTS.seqLen})
  --schedule constant|cosine  (default ${DEFAULTS.schedule})
  --warmup-steps W       linear warm-up steps (default 3% of the steps)
  --clip-norm X          global gradient-norm clip, 0 disables (default ${DEFAULTS.clipNorm})
  --seed S               data order seed (default ${DEFAULTS.seed})
  --device D             ${DEVICES.join(' | ')} (default ${DEFAULTS.device}); auto: cuda if installed, then
                         webgpu if a GPU device node exists (never a software Vulkan), then cpu
  --precision P          float32 | float64 compute (default ${DEFAULTS.precision}; float64 for exactness checks)

Validation and drift telemetry:
  --validation-data FILE validation JSONL: loss and token accuracy every --eval-every steps
  --eval-every N         (default: about ten times per run, and the last step)
  --probe-data FILE      held-out JSONL: drift from the base model every --probe-every steps
                         (number_mass, kl_to_base, top1_agreement, heldout_loss, token classes)
  --probe-every N        (default: about ten times per run, and the last step)
  --token-class NAME=RE  report the probability mass of tokens whose text matches RE (repeatable)
  --max-kl-to-base X     drift budget: stop when a probe exceeds it and keep the last checkpoint
  --max-number-mass-delta X        that was within budget as the result
  --max-heldout-loss-delta X
`;

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
} as const;

/** `--token-class NAME=REGEX` → a class; the regex may itself contain '='. */
function tokenClasses(f: Flags): { name: string; pattern: string }[] {
  return list(f, 'token-class').map((spec) => {
    const at = spec.indexOf('=');
    if (at <= 0) throw invalidArgument('--token-class', `expected NAME=REGEX, got "${spec}"`);
    return { name: spec.slice(0, at), pattern: spec.slice(at + 1) };
  });
}

/** Trainer options from parsed flags (paths are left as given). */
export function optionsFromFlags(f: Flags): Omit<TuneOptions, 'out'> {
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
  };
}

export function parseTuneArgs(argv: string[]): TuneOptions {
  const f = parseFlags(argv, { ...TRAINING_FLAGS, out: { type: 'string' }, precision: { type: 'string' } });
  return { ...optionsFromFlags(f), out: required(f, 'out') };
}

export async function tuneCommand(argv: string[]): Promise<void> {
  const options = parseTuneArgs(argv);
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  try {
    await tuneInWorker(options, progressReporter(process.stderr), controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
  }
}
