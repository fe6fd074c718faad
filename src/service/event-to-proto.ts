// Stored job events ⇄ StreamMetricsResponse: the one mapping between the store's events and the wire.
// Fields the proto lacks are dropped on the way out and stay absent on the way back.
import * as grpc from '@grpc/grpc-js';
import { BadRequest } from '../gen/google/rpc/error_details.js';
import type { Status } from '../gen/google/rpc/status.js';
import type { StreamMetricsResponse } from '../gen/narrowtune/v1/tuning_service.js';
import type { JobBudgetExceeded, JobError, JobEvent } from '../store/job-events.js';
import type { MetricEvent } from '../store/job-store.js';
import { BAD_REQUEST_TYPE_URL, statusFromJobError } from './grpc-errors.js';
import { stateFromProto, stateToProto } from './messages.js';

type ProtoEvent = NonNullable<StreamMetricsResponse['event']>;

// A Record makes a new budget limit without an entry here a type error.
const BUDGET_LIMITS: Readonly<Record<JobBudgetExceeded['limit'], true>> = {
  max_kl_to_base: true,
  max_number_mass_delta: true,
  max_heldout_loss_delta: true,
};

export function eventToProto(e: MetricEvent): StreamMetricsResponse {
  return { sequence: e.sequence, time: new Date(e.time), event: jobEventToProto(e.event) };
}

export function jobEventToProto(e: JobEvent): ProtoEvent {
  switch (e.type) {
    case 'started': {
      const { totalSteps, trainableTensors, trainableParameters, provider, resumedFromStep } = e;
      return { $case: 'started', value: { totalSteps, trainableTensors, trainableParameters, provider, resumedFromStep } };
    }
    case 'step': {
      const { type: _, tokens: __, ...value } = e;
      return { $case: 'step', value };
    }
    case 'validation': {
      const { type: _, ...value } = e;
      return { $case: 'validation', value };
    }
    case 'probe': {
      const { type: _, positions: __, tokenAccuracy: ___, ...value } = e;
      return { $case: 'probe', value };
    }
    case 'budget_exceeded': {
      const { type: _, ...value } = e;
      return { $case: 'budgetExceeded', value };
    }
    case 'checkpoint': {
      const { type: _, ...value } = e;
      return { $case: 'checkpoint', value };
    }
    case 'finished':
      return {
        $case: 'finished',
        value: { state: stateToProto(e.state), error: e.error && statusFromJobError(e.error), outputPath: e.outputPath ?? '' },
      };
    default:
      return unreachable(e);
  }
}

/**
 * A streamed event as the store would hold it, for clients that display events (the CLI); null for an
 * event this version cannot represent (an empty oneof, a state or limit it does not know).
 */
export function jobEventFromProto(e: StreamMetricsResponse['event']): JobEvent | null {
  switch (e?.$case) {
    case undefined:
      return null;
    case 'started':
      return { type: 'started', ...e.value };
    case 'step':
      return { type: 'step', ...e.value };
    case 'validation':
      return { type: 'validation', ...e.value };
    case 'probe':
      return { type: 'probe', ...e.value };
    case 'budgetExceeded': {
      const { limit } = e.value;
      return isBudgetLimit(limit) ? { type: 'budget_exceeded', ...e.value, limit } : null;
    }
    case 'checkpoint':
      return { type: 'checkpoint', ...e.value };
    case 'finished': {
      const state = stateFromProto(e.value.state);
      if (state === null || state === 'PENDING' || state === 'RUNNING') return null;
      return { type: 'finished', state, outputPath: e.value.outputPath || undefined, error: e.value.error && jobErrorFromStatus(e.value.error) };
    }
    default:
      return unreachable(e);
  }
}

function isBudgetLimit(limit: string): limit is JobBudgetExceeded['limit'] {
  return Object.hasOwn(BUDGET_LIMITS, limit);
}

/** The inverse of statusFromJobError: an ErrorKind is the lower-case name of its gRPC code. */
function jobErrorFromStatus(s: Status): JobError {
  const badRequest = s.details.find((d) => d.typeUrl === BAD_REQUEST_TYPE_URL);
  const violations = badRequest ? BadRequest.decode(badRequest.value).fieldViolations.map(({ field, description }) => ({ field, description })) : [];
  return { kind: (grpc.status[s.code] ?? 'INTERNAL').toLowerCase(), message: s.message, violations };
}

function unreachable(e: never): never {
  throw new Error(`unhandled event ${JSON.stringify(e)}`);
}
