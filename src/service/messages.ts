// Domain results → protobuf messages: job records → TuneJob, evaluation results → EvaluateResponse, job states
// both ways. Requests → commands: requests.ts; stored events → stream messages: event-to-proto.ts. No I/O here.
import {
  type DriftFigures as ProtoDriftFigures,
  EvalDataset_Kind,
  EvalDataset_Role,
  type EvaluateResponse,
  StartTuneRequest,
  type TuneJob,
  TuneJob_State,
  tuneJob_StateToJSON,
} from '../gen/narrowtune/v1/tuning_service.js';
import type { EvalKind, EvalRole, EvaluateResult } from '../eval/evaluate.js';
import type { DriftFigures } from '../eval/scorer.js';
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
  const { request } = job.spec;
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
    request: request === undefined ? undefined : StartTuneRequest.fromJSON(request),
    budgetStop: job.result?.budgetStop,
    tenant: job.tenant ?? '',
    creatorKeyId: job.creatorKeyId ?? '',
    cancelRequestedBy: job.cancelRequestedBy ?? '',
    cancelTime: date(job.cancelTime),
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
