// A job's history as the store keeps it and StreamMetrics sends it: the trainer's events (all but the
// local-only `done`) plus the runner's `finished`; also the stored spec and result of a job.
import type { TuneOptions } from '../trainer/options.js';
import type { BudgetStop, TrainBudgetExceeded, TrainCheckpoint, TrainEvent, TrainProbe, TrainStarted, TrainStep, TrainValidation } from '../trainer/events.js';
import { NarrowtuneError } from '../util/errors.js';

/** Some fields of T may be absent: rows written before they were stored, and events read back from the proto, which lacks them. */
type Optional<T, K extends keyof T> = Omit<T, K> & Partial<Pick<T, K>>;

export type JobStarted = Optional<TrainStarted, 'batchSize' | 'gradAccum' | 'seq' | 'examples' | 'frozenTensors' | 'compileMs' | 'sessionMs'>;
export type JobStep = Optional<TrainStep, 'tokens'>;
export type JobValidation = TrainValidation;
export type JobProbe = Optional<TrainProbe, 'positions' | 'tokenAccuracy'>;
export type JobBudgetExceeded = TrainBudgetExceeded;
export type JobCheckpoint = TrainCheckpoint;

export type RestingState = 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** A job's error as stored (see serializeError): kind is an ErrorKind, or unfamiliar in old rows. */
export interface JobError {
  kind: string;
  message: string;
  violations: { field: string; description: string }[];
}

/** The last event of every job that comes to rest. */
export interface JobFinished {
  type: 'finished';
  state: RestingState;
  /** The trained model (SUCCEEDED) or the last step checkpoint (CANCELLED), if any. */
  outputPath?: string;
  error?: JobError;
  budgetStop?: BudgetStop;
  /** Why the job ended without its trainer, e.g. cancelled while the server was down. */
  note?: string | null;
}

export type JobEvent = JobStarted | JobStep | JobValidation | JobProbe | JobBudgetExceeded | JobCheckpoint | JobFinished;

// A Record makes a new event type without an entry here a type error.
const JOB_EVENT_TYPES: Readonly<Record<JobEvent['type'], true>> = {
  started: true,
  step: true,
  validation: true,
  probe: true,
  budget_exceeded: true,
  checkpoint: true,
  finished: true,
};

/** What the store keeps of a trainer event; null for the ones it does not keep. */
export function toJobEvent(e: TrainEvent): JobEvent | null {
  return e.type === 'done' ? null : e;
}

/** A stored row back as an event; the store writes only JobEvents, so anything else is a corrupt or newer database. */
export function decodeJobEvent(type: string, payload: unknown): JobEvent {
  if (!Object.hasOwn(JOB_EVENT_TYPES, type) || typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new NarrowtuneError('internal', `stored event of type ${JSON.stringify(type)} is not one this version knows`);
  }
  return { ...payload, type } as JobEvent;
}

/** What StartTune stores: trainer options without the paths the runner derives from the job id. */
export interface JobSpec {
  /** Where an attempt writes and what it resumes from are the runner's to decide, per attempt. */
  options: Omit<TuneOptions, 'out' | 'checkpointDir' | 'resume' | 'resumeFrom' | 'pruneCheckpoints' | 'threads' | 'frozenPrecision'>;
  /** The accepted StartTuneRequest in proto3 JSON, echoed back in the job resource. */
  request: unknown;
}

/** Extra facts about how a job ended. */
export interface JobResult {
  budgetStop?: BudgetStop;
}
