// Promise wrappers over the generated grpc-js client, for tests.
import * as grpc from '@grpc/grpc-js';
import {
  type DeepPartial,
  type EvaluateRequest,
  type EvaluateResponse,
  type ListTuneJobsResponse,
  type StartTuneRequest,
  StartTuneRequest as StartTuneRequestMsg,
  type StreamMetricsResponse,
  type TuneJob,
  TuningServiceClient,
} from '../../src/gen/narrowtune/v1/tuning_service.js';
import { decodeStatusDetails } from '../../src/service/grpc-errors.js';

export interface RpcFailure {
  code: grpc.status;
  message: string;
  violations: { field: string; description: string }[];
}

export function connect(port: number): TestClient {
  return new TestClient(new TuningServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
}

function unary<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))));
}

export class TestClient {
  constructor(readonly raw: TuningServiceClient) {}

  startTune(r: DeepPartial<StartTuneRequest>): Promise<TuneJob> {
    return unary<{ job?: TuneJob }>((cb) => this.raw.startTune(StartTuneRequestMsg.fromPartial(r), cb)).then((x) => x.job!);
  }
  getJob(name: string): Promise<TuneJob> {
    return unary<{ job?: TuneJob }>((cb) => this.raw.getTuneJob({ name }, cb)).then((x) => x.job!);
  }
  list(pageSize = 0, pageToken = '', states: number[] = [], tenant = ''): Promise<ListTuneJobsResponse> {
    return unary((cb) => this.raw.listTuneJobs({ pageSize, pageToken, states, tenant }, cb));
  }
  cancel(name: string): Promise<TuneJob> {
    return unary<{ job?: TuneJob }>((cb) => this.raw.cancelTuneJob({ name }, cb)).then((x) => x.job!);
  }
  evaluate(r: EvaluateRequest): Promise<EvaluateResponse> {
    return unary((cb) => this.raw.evaluate(r, cb));
  }

  /** Collects a whole stream; `onEvent` may cancel it by returning false. */
  stream(name: string, fromSequence = 0, onEvent: (e: StreamMetricsResponse) => boolean | void = () => {}): Promise<StreamMetricsResponse[]> {
    return new Promise((resolve, reject) => {
      const events: StreamMetricsResponse[] = [];
      const call = this.raw.streamMetrics({ name, fromSequence });
      call.on('data', (e: StreamMetricsResponse) => {
        events.push(e);
        if (onEvent(e) === false) {
          call.cancel();
          resolve(events);
        }
      });
      call.on('end', () => resolve(events));
      call.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve(events) : reject(e)));
    });
  }

  close(): void {
    this.raw.close();
  }
}

/** The code, message and BadRequest field violations of a failed call. */
export async function failure(p: Promise<unknown>): Promise<RpcFailure> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    const details = decodeStatusDetails(err.metadata);
    return { code: err.code, message: err.details, violations: details?.badRequest?.fieldViolations.map((v) => ({ field: v.field, description: v.description })) ?? [] };
  }
  throw new Error('expected the call to fail');
}

export async function waitFor<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
