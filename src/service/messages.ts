// Maps between protobuf messages and domain objects: job records → TuneJob, stored events → stream
// messages, StartTune hyper-parameters → trainer options. No I/O here.
import {
  type BudgetExceeded,
  StartTuneRequest,
  type StreamMetricsResponse,
  type TuneJob,
  TuneJob_State,
  tuneJob_StateToJSON,
} from '../gen/narrowtune/v1/tuning_service.js';
import type { JobRecord, JobState, MetricEvent } from '../store/job-store.js';
import { DEFAULTS, type TuneOptions } from '../trainer/options.js';
import type { Device } from '../runtime/session.js';
import { statusFromJobError } from './grpc-errors.js';

export const JOB_NAME = /^jobs\/([a-z2-7]{1,64})$/;

export function jobName(id: string): string {
  return `jobs/${id}`;
}

const STATE_TO_PROTO: Record<JobState, TuneJob_State> = {
  PENDING: TuneJob_State.PENDING,
  RUNNING: TuneJob_State.RUNNING,
  SUCCEEDED: TuneJob_State.SUCCEEDED,
  FAILED: TuneJob_State.FAILED,
  CANCELLED: TuneJob_State.CANCELLED,
};

export function stateToProto(s: JobState): TuneJob_State {
  return STATE_TO_PROTO[s];
}

/** Proto enum → store state; null for STATE_UNSPECIFIED or an unknown number. */
export function stateFromProto(s: TuneJob_State): JobState | null {
  const name = tuneJob_StateToJSON(s);
  return name in STATE_TO_PROTO ? (name as JobState) : null;
}

const date = (ms: number | null) => (ms === null ? undefined : new Date(ms));

export function jobToProto(job: JobRecord): TuneJob {
  const spec = job.spec as { request?: unknown };
  return {
    name: jobName(job.id),
    state: stateToProto(job.state),
    createTime: date(job.createTime),
    startTime: date(job.startTime),
    endTime: date(job.endTime),
    progress: { step: job.step, totalSteps: job.totalSteps },
    trainableTensors: job.trainable,
    error: job.error ? statusFromJobError(job.error) : undefined,
    checkpoints: job.checkpoints.map((c) => ({ step: c.step, path: c.path, final: c.final })),
    outputPath: job.state === 'SUCCEEDED' ? (job.outputPath ?? '') : '',
    request: spec.request === undefined ? undefined : StartTuneRequest.fromJSON(spec.request),
    budgetStop: (job.result as { budgetStop?: BudgetExceeded } | null)?.budgetStop,
  };
}

type Payload = Record<string, unknown>;

export function eventToProto(e: MetricEvent): StreamMetricsResponse {
  const p = e.payload as Payload;
  const base = { sequence: e.sequence, time: new Date(e.time) };
  switch (e.type) {
    case 'started':
      return {
        ...base,
        event: {
          $case: 'started',
          value: {
            totalSteps: p.totalSteps as number,
            trainableTensors: p.trainableTensors as string[],
            trainableParameters: p.trainableParameters as number,
            provider: p.provider as string,
            resumedFromStep: p.resumedFromStep as number,
          },
        },
      };
    case 'step':
      return {
        ...base,
        event: {
          $case: 'step',
          value: {
            step: p.step as number,
            totalSteps: p.totalSteps as number,
            loss: p.loss as number,
            learningRate: p.learningRate as number,
            gradNorm: p.gradNorm as number,
            tokensPerSecond: p.tokensPerSecond as number,
            elapsedSeconds: p.elapsedSeconds as number,
          },
        },
      };
    case 'validation':
      return { ...base, event: { $case: 'validation', value: { step: p.step as number, loss: p.loss as number, tokenAccuracy: p.tokenAccuracy as number } } };
    case 'probe':
      return {
        ...base,
        event: {
          $case: 'probe',
          value: {
            step: p.step as number,
            numberMass: p.numberMass as number,
            numberMassBase: p.numberMassBase as number,
            numberMassDelta: p.numberMassDelta as number,
            klToBase: p.klToBase as number,
            top1Agreement: p.top1Agreement as number,
            heldoutLoss: p.heldoutLoss as number,
            heldoutLossBase: p.heldoutLossBase as number,
            heldoutLossDelta: p.heldoutLossDelta as number,
            classes: (p.classes as { name: string; mass: number; massBase: number; delta: number }[]).map((c) => ({ ...c })),
          },
        },
      };
    case 'budget_exceeded':
      return { ...base, event: { $case: 'budgetExceeded', value: p as unknown as BudgetExceeded } };
    case 'checkpoint':
      return { ...base, event: { $case: 'checkpoint', value: { step: p.step as number, path: p.path as string } } };
    case 'finished':
      return {
        ...base,
        event: {
          $case: 'finished',
          value: {
            state: stateToProto(p.state as JobState),
            error: p.error ? statusFromJobError(p.error as Parameters<typeof statusFromJobError>[0]) : undefined,
            outputPath: (p.outputPath as string | undefined) ?? '',
          },
        },
      };
    default:
      return { ...base, event: undefined };
  }
}

/** Proto field names of the trainer options, for field violations that name what the client sent. */
export const OPTION_FIELDS: Record<string, string> = {
  model: 'base_model',
  data: 'training_data',
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
};

/** Trainer options from a request; unset fields take the trainer's defaults. Validation is separate. */
export function optionsFromRequest(
  r: StartTuneRequest,
  paths: { model: string; data: string; validation: string | null; probe: string | null },
  checkpointEvery: number,
): Omit<TuneOptions, 'out' | 'checkpointDir' | 'resume'> {
  const h = r.hyperparameters;
  const clip = h?.clipNorm;
  return {
    ...DEFAULTS,
    model: paths.model,
    data: paths.data,
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
    validationData: paths.validation,
    evalEvery: h?.evalEvery ?? null,
    probeData: paths.probe,
    probeEvery: h?.probeEvery ?? null,
    tokenClasses: r.tokenClasses.map((c) => ({ name: c.name, pattern: c.pattern })),
    driftBudget: {
      maxKlToBase: r.driftBudget?.maxKlToBase ?? null,
      maxNumberMassDelta: r.driftBudget?.maxNumberMassDelta ?? null,
      maxHeldoutLossDelta: r.driftBudget?.maxHeldoutLossDelta ?? null,
    },
  };
}
