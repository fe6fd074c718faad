// Domain results → protobuf messages: job records → TuneJob, evaluation results → EvaluateResponse, job states
// both ways. Requests → commands: requests.ts; stored events → stream messages: event-to-proto.ts. No I/O here.
import {
  type DriftFigures as ProtoDriftFigures,
  EvalDataset_Kind,
  EvalDataset_Role,
  type EvaluateResponse,
  StartTuneRequest,
  type TuneJob,
  type TuneMethod,
  TuneJob_State,
  tuneJob_StateToJSON,
} from '../gen/narrowtune/v1/tuning_service.js';
import type { EvalKind, EvalRole, EvaluateResult } from '../eval/evaluate.js';
import type { DriftFigures } from '../eval/scorer.js';
import type { JobSpec } from '../store/job-events.js';
import type { JobRecord, JobState } from '../store/job-store.js';
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
  const request = job.spec.request === undefined ? undefined : StartTuneRequest.fromJSON(job.spec.request);
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
    request,
    budgetStop: job.result?.budgetStop,
    tenant: job.tenant ?? '',
    creatorKeyId: job.creatorKeyId ?? '',
    cancelRequestedBy: job.cancelRequestedBy ?? '',
    cancelTime: date(job.cancelTime),
    method: methodToProto(job.spec.options, request),
  };
}

/**
 * How a job trains, from its stored options (defaults filled in); the teacher as the request named it, never as a
 * server path. Jobs stored before adapters and LwF existed have neither.
 */
export function methodToProto(options: Partial<Pick<JobSpec['options'], 'policy' | 'lora' | 'mergeAdapter' | 'lwf'>>, request?: StartTuneRequest): TuneMethod {
  const policy = options.policy?.preset ?? 'custom';
  const lora = options.lora ?? null;
  const lwf = options.lwf ?? null;
  const teacher = request?.lwf?.teacher;
  const teacherName = teacher?.source ? teacher.source.value : 'base';
  const parts = [lora ? `lora r=${lora.rank} alpha=${lora.alpha} on ${lora.targets.length > 0 ? lora.targets.join(' ') : policy}` : `policy ${policy}`];
  if (lora && options.mergeAdapter) parts.push('merged');
  if (lwf) parts.push(`+ lwf weight=${lwf.weight} T=${lwf.temperature} teacher=${teacherName}`);
  return {
    kind: lora ? 'lora' : 'policy',
    policy,
    adapter: lora ? { rank: lora.rank, alpha: lora.alpha, dropout: lora.dropout, targets: lora.targets, mergeAdapter: options.mergeAdapter ?? false } : undefined,
    lwf: lwf ? { weight: lwf.weight, temperature: lwf.temperature, teacher: teacher?.source ? teacher : undefined } : undefined,
    summary: parts.join(' '),
  };
}

const KIND_TO_PROTO: Record<EvalKind, EvalDataset_Kind> = { loss: EvalDataset_Kind.LOSS, generate: EvalDataset_Kind.GENERATE, choice: EvalDataset_Kind.CHOICE };

function roleToProto(role: EvalRole): EvalDataset_Role {
  return role === 'target' ? EvalDataset_Role.TARGET : role === 'held_out' ? EvalDataset_Role.HELD_OUT : EvalDataset_Role.ROLE_UNSPECIFIED;
}

/** The scorer's drift figures on the wire: the same fields, less the token accuracy (reported beside them). */
export function driftToProto(d: DriftFigures): ProtoDriftFigures {
  const { tokenAccuracy: _, classes, ...figures } = d;
  return { ...figures, classes: classes.map((c) => ({ ...c })) };
}

export function evaluateResponseToProto(r: EvaluateResult): EvaluateResponse {
  return {
    results: r.datasets.map((s) => ({
      name: s.name,
      loss: s.loss,
      tokenAccuracy: s.tokenAccuracy,
      tokens: s.tokens,
      examples: s.examples,
      kind: KIND_TO_PROTO[s.kind],
      role: roleToProto(s.role),
      accuracy: s.accuracy,
      base: s.base
        ? {
            loss: s.base.loss,
            tokenAccuracy: s.base.tokenAccuracy,
            accuracy: s.base.accuracy,
            lossDelta: s.base.lossDelta,
            accuracyDelta: s.base.accuracyDelta,
            drift: driftToProto(s.base.drift),
          }
        : undefined,
    })),
    deltaLearning: r.deltaLearning ?? undefined,
    deltaForgetting: r.deltaForgetting ?? undefined,
    targetDatasets: r.targetDatasets,
    heldOutDatasets: r.heldOutDatasets,
  };
}
