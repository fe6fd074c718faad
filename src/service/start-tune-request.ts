// StartTuneRequest → the job to store: paths confined and readable, the base model inspected, the policy
// resolved against its tensor names, the settings checked by the trainer's own rules; every violation at once.
import { StartTuneRequest } from '../gen/narrowtune/v1/tuning_service.js';
import type { CheckpointInfo } from '../model/checkpoint.js';
import { type PolicySpec, resolvePolicy } from '../policy/policy.js';
import type { Device } from '../runtime/session.js';
import type { JobSpec } from '../store/job-events.js';
import { architectureDifference } from '../model/same-architecture.js';
import { loraTargets } from '../trainer/lora.js';
import { refuseVisionPatterns } from '../trainer/setup.js';
import { DEFAULT_LWF_TEMPERATURE, DEFAULTS, LIMITS, LORA_DEFAULTS, settingsViolations, type TuneOptions, type TuneSettings } from '../trainer/options.js';
import { checkStartTuneData } from './data-check.js';
import { checkTokenClasses, dataFile, MAX_PATTERNS, MAX_REQUEST_ID, type RequestContext, resolveModel } from './requests.js';
import { compileUserRegex } from '../util/user-regex.js';
import { Violations } from './violations.js';

export interface StartTuneCommand {
  /** null: every call makes a new job. */
  requestId: string | null;
  spec: JobSpec;
}

/** Request field paths of the settings, keyed by the field names options.ts reports. */
export const OPTION_FIELDS: Readonly<Record<string, string>> = {
  optimizer: 'hyperparameters.optimizer',
  lr: 'hyperparameters.learning_rate',
  weight_decay: 'hyperparameters.weight_decay',
  steps: 'hyperparameters.steps',
  epochs: 'hyperparameters.epochs',
  batch_size: 'hyperparameters.batch_size',
  grad_accum: 'hyperparameters.grad_accum',
  seq_len: 'hyperparameters.seq_len',
  schedule: 'hyperparameters.schedule',
  warmup_steps: 'hyperparameters.warmup_steps',
  clip_norm: 'hyperparameters.clip_norm',
  seed: 'hyperparameters.seed',
  checkpoint_every: 'hyperparameters.checkpoint_every',
  eval_every: 'hyperparameters.eval_every',
  probe_every: 'hyperparameters.probe_every',
  device: 'device',
  token_classes: 'token_classes',
  lora_rank: 'adapter.rank',
  lora_alpha: 'adapter.alpha',
  lora_dropout: 'adapter.dropout',
  lora_target: 'adapter.targets',
  merge_adapter: 'adapter.merge_adapter',
  lwf_weight: 'lwf.weight',
  lwf_temperature: 'lwf.temperature',
  teacher: 'lwf.teacher',
};

/** A trainer field name as the request's path: `lora_target[2]` → `adapter.targets[2]`. */
function requestField(field: string): string {
  const m = /^(\w+)(\[\d+\])?$/.exec(field);
  return m && OPTION_FIELDS[m[1]] ? `${OPTION_FIELDS[m[1]]}${m[2] ?? ''}` : field;
}

/** What is wrong with a request_id, or null; '' (none) is fine. */
export function requestIdViolation(requestId: string): string | null {
  if (requestId.length > MAX_REQUEST_ID) return `must be at most ${MAX_REQUEST_ID} characters`;
  // PostgreSQL's text cannot hold NUL: refusing every control character makes a request id valid on both stores alike.
  if (/\p{Cc}/u.test(requestId)) return 'must not contain control characters';
  return null;
}

/** `signal` ends the data check (the slow part) when the client goes away. */
export async function parseStartTune(req: StartTuneRequest, ctx: RequestContext, signal?: AbortSignal): Promise<StartTuneCommand> {
  const v = new Violations();
  const requestIdProblem = requestIdViolation(req.requestId);
  if (requestIdProblem) v.add('request_id', requestIdProblem);
  checkTokenClasses(v, req.tokenClasses);
  const model = await resolveModel(v, ctx, req.baseModel, 'base_model');
  const data = await dataFile(v, ctx, req.trainingData, 'training_data', true);
  const validationData = await dataFile(v, ctx, req.validationData, 'validation_data', false);
  const probeData = await dataFile(v, ctx, req.probeData, 'probe_data', false);

  const settings = settingsFromRequest(req, ctx.checkpointEvery);
  // Whether optional data was sent, not whether it passed its own check: a bad path must not also read as missing.
  const given = { validationData: req.validationData !== '', probeData: req.probeData !== '' };
  for (const x of settingsViolations(settings, given)) v.add(requestField(x.field), x.description);
  if (req.hyperparameters?.steps !== undefined && req.hyperparameters.epochs !== undefined) {
    v.add('hyperparameters.steps', 'give steps or epochs, not both');
  }
  const resolved = model ? resolveRequestPolicy(v, settings.policy, model.info) : undefined;
  const policy = resolved?.spec;
  if (resolved && settings.lora) checkLoraTargets(v, settings.lora.targets, model!.info, resolved.trainable);
  const llava = model?.info.llava;
  // The trainer's refusal for LLaVA models, before the job is accepted.
  if (llava && resolved) v.collectSync(() => refuseVisionPatterns(settings.policy, model!.info));
  const teacher = req.lwf?.teacher?.source ? await resolveModel(v, ctx, req.lwf.teacher, 'lwf.teacher') : undefined;
  if (model && teacher) {
    const shapes = (info: CheckpointInfo) => new Map([...info.tensors].map(([n, t]) => [n, t.shape]));
    const diff = architectureDifference({ config: model.info.config, shapes: shapes(model.info) }, { config: teacher.info.config, shapes: shapes(teacher.info) });
    if (diff) v.add(teacher.field, `${diff}; the teacher must have the base model's architecture and shapes`);
  }
  v.throwIfAny();
  // Last: it reads every line, so only a request that is otherwise sound pays for it.
  const files = { data: data!, validationData, probeData };
  const names = { data: req.trainingData, validationData: req.validationData, probeData: req.probeData };
  await checkStartTuneData({ model: model!, files, names, seqLen: settings.seqLen, dataRoots: ctx.dataRoots }, signal);

  const lwf = settings.lwf && { ...settings.lwf, teacher: teacher?.dir ?? null };
  // The job reads images from the roots this caller may read, as checked above (a text model's spec stays as it was).
  const imageRoots = llava ? { imageRoots: ctx.dataRoots } : {};
  const options = { ...settings, policy: policy!, model: model!.dir, ...files, lwf, ...imageRoots };
  // The resolved preset is stored with the job rather than filled in when the job is shown: the echo (and
  // `jobs get`) then says what the job trains with, and so does a runner that resumes it after a restart, even
  // if a later version changes the default.
  const echo: StartTuneRequest = { ...req, policy: { preset: policy!.preset ?? '', include: policy!.include ?? [], exclude: policy!.exclude ?? [] } };
  return { requestId: req.requestId || null, spec: { options, request: StartTuneRequest.toJSON(echo) } };
}

/** The trainer settings a request asks for; unset fields take the trainer's defaults. */
export function settingsFromRequest(r: StartTuneRequest, checkpointEvery: number): TuneSettings {
  const h = r.hyperparameters;
  const clip = h?.clipNorm;
  return {
    ...DEFAULTS,
    policy: { preset: r.policy?.preset || undefined, include: r.policy?.include ?? [], exclude: r.policy?.exclude ?? [] },
    optimizer: (h?.optimizer || DEFAULTS.optimizer) as TuneOptions['optimizer'],
    lr: h?.learningRate ?? DEFAULTS.lr,
    weightDecay: h?.weightDecay ?? DEFAULTS.weightDecay,
    steps: h?.steps ?? null,
    epochs: h?.epochs ?? DEFAULTS.epochs,
    batchSize: h?.batchSize ?? DEFAULTS.batchSize,
    gradAccum: h?.gradAccum ?? DEFAULTS.gradAccum,
    seqLen: h?.seqLen ?? DEFAULTS.seqLen,
    schedule: (h?.schedule || DEFAULTS.schedule) as TuneOptions['schedule'],
    warmupSteps: h?.warmupSteps ?? null,
    clipNorm: clip === undefined ? DEFAULTS.clipNorm : clip === 0 ? null : clip,
    seed: h?.seed ?? DEFAULTS.seed,
    device: (r.device || DEFAULTS.device) as Device,
    checkpointEvery: h?.checkpointEvery ?? checkpointEvery,
    evalEvery: h?.evalEvery ?? null,
    probeEvery: h?.probeEvery ?? null,
    tokenClasses: r.tokenClasses.map((c) => ({ name: c.name, pattern: c.pattern })),
    driftBudget: {
      maxKlToBase: r.driftBudget?.maxKlToBase ?? null,
      maxNumberMassDelta: r.driftBudget?.maxNumberMassDelta ?? null,
      maxHeldoutLossDelta: r.driftBudget?.maxHeldoutLossDelta ?? null,
    },
    lora: r.adapter
      ? {
          rank: r.adapter.rank ?? LORA_DEFAULTS.rank,
          alpha: r.adapter.alpha ?? LORA_DEFAULTS.alpha,
          dropout: r.adapter.dropout ?? LORA_DEFAULTS.dropout,
          targets: r.adapter.targets,
        }
      : null,
    mergeAdapter: r.adapter?.mergeAdapter ?? false,
    // The teacher is a ModelRef, resolved by parseStartTune; null here is the base model.
    lwf: r.lwf ? { weight: r.lwf.weight, temperature: r.lwf.temperature ?? DEFAULT_LWF_TEMPERATURE, teacher: null } : null,
  };
}

/**
 * What the LoRA targets match among the model's projection weights (or, with none, whether the policy trains any).
 * Their syntax and count are settingsViolations' to report; a pattern that does not compile is not matched.
 */
function checkLoraTargets(v: Violations, targets: string[], info: CheckpointInfo, policyTrainable: string[]): void {
  const compiles = (p: string, i: number) => {
    try {
      return compileUserRegex(p, `adapter.targets[${i}]`), true;
    } catch {
      return false;
    }
  };
  if (targets.length > LIMITS.loraTargets[1] || !targets.every(compiles)) return;
  v.collectSync(() => loraTargets(targets, [...info.tensors.keys()], policyTrainable), requestField);
}

/**
 * The policy checked against the model's trainable tensor names, with the preset it resolves to filled in
 * (the default when the request names none and gives no include patterns). Matched here, on the server's
 * thread: patterns are RE2 (linear time, bounded program size), so 64 of them over a model's names take
 * milliseconds whatever they are.
 */
function resolveRequestPolicy(v: Violations, spec: PolicySpec, info: CheckpointInfo): { spec: PolicySpec; trainable: string[] } | undefined {
  const include = spec.include ?? [];
  const exclude = spec.exclude ?? [];
  if (include.length + exclude.length > MAX_PATTERNS) {
    return v.add('policy', `at most ${MAX_PATTERNS} include/exclude patterns, got ${include.length + exclude.length}`), undefined;
  }
  // A tied model's lm_head is the embedding, which no policy may train.
  const names = [...info.tensors.keys()].filter((n) => n !== 'lm_head.weight' || !info.config.tieWordEmbeddings);
  const resolved = v.collectSync(() => resolvePolicy(spec, names));
  if (!resolved) return undefined;
  return { spec: { preset: resolved.name === 'custom' ? undefined : resolved.name, include, exclude }, trainable: resolved.trainable };
}
