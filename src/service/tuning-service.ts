// TuningService handlers: parse the request (requests.ts), call the store/runner/evaluator, map the result
// (messages.ts). Every error leaves through toGrpcError; nothing a client sends can throw past a handler.
import type * as grpc from '@grpc/grpc-js';
import type {
  CancelTuneJobRequest,
  EvaluateRequest,
  EvaluateResponse,
  GetTuneJobRequest,
  ListTuneJobsRequest,
  ListTuneJobsResponse,
  StartTuneRequest,
  StreamMetricsRequest,
  StreamMetricsResponse,
  TuneJob,
  TuningServiceServer,
} from '../gen/narrowtune/v1/tuning_service.js';
import { evaluateInWorker } from '../eval/run-in-worker.js';
import type { JobRunner } from '../runner/job-runner.js';
import { followEvents } from '../store/follow-events.js';
import type { JobStore } from '../store/job-store.js';
import { NarrowtuneError } from '../util/errors.js';
import { parseEvaluate } from './evaluate-request.js';
import { eventToProto } from './event-to-proto.js';
import { toGrpcError } from './grpc-errors.js';
import { evaluateResponseToProto, jobToProto } from './messages.js';
import { findJob, parseCancelTuneJob, parseGetTuneJob, parseListTuneJobs, parseStreamMetrics, type RequestContext } from './requests.js';
import { parseStartTune } from './start-tune-request.js';

export interface ServiceContext extends RequestContext {
  store: JobStore;
  runner: JobRunner;
  maxQueuedJobs: number;
  /** Aborted on shutdown: open streams end cleanly. */
  shutdown: AbortSignal;
}

function drainOrAbort(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

export class TuningService {
  constructor(private readonly ctx: ServiceContext) {}

  async startTune(req: StartTuneRequest): Promise<TuneJob> {
    const { store, runner, maxQueuedJobs } = this.ctx;
    const command = await parseStartTune(req, this.ctx);
    if (store.countInStates(['PENDING']) >= maxQueuedJobs) {
      throw new NarrowtuneError('resource_exhausted', `the queue is full (${maxQueuedJobs} pending jobs); retry later`);
    }
    const { job } = store.createJob(command);
    runner.pump();
    return jobToProto(store.getJob(job.id) ?? job);
  }

  getTuneJob(req: GetTuneJobRequest): TuneJob {
    return jobToProto(findJob(this.ctx.store, parseGetTuneJob(req).id));
  }

  listTuneJobs(req: ListTuneJobsRequest): ListTuneJobsResponse {
    const page = this.ctx.store.listJobs(parseListTuneJobs(req));
    return { jobs: page.jobs.map(jobToProto), nextPageToken: page.nextPageToken };
  }

  cancelTuneJob(req: CancelTuneJobRequest): TuneJob {
    const { store } = this.ctx;
    const job = findJob(store, parseCancelTuneJob(req).id);
    // A pending job never reaches a trainer: its stream gets its closing event here.
    if (job.state === 'PENDING') store.appendEvent(job.id, { type: 'finished', state: 'CANCELLED' });
    return jobToProto(store.requestCancel(job.id));
  }

  async *streamMetrics(req: StreamMetricsRequest, signal: AbortSignal): AsyncGenerator<StreamMetricsResponse> {
    const { id, fromSequence } = parseStreamMetrics(req);
    findJob(this.ctx.store, id);
    for await (const e of followEvents(this.ctx.store, id, fromSequence, signal)) yield eventToProto(e);
  }

  async evaluate(req: EvaluateRequest): Promise<EvaluateResponse> {
    // Data files are parsed in the worker; their problems come back as INVALID_ARGUMENT with the file and line.
    return evaluateResponseToProto(await evaluateInWorker(await parseEvaluate(req, this.ctx)));
  }

  /** The grpc-js implementation: thin adapters that only move values and errors. */
  handlers(): TuningServiceServer {
    const unary =
      <Req, Res>(fn: (req: Req) => Res | Promise<Res>) =>
      (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
        Promise.resolve()
          .then(() => fn(call.request))
          .then(
            (res) => callback(null, res),
            (e: unknown) => callback(toGrpcError(e)),
          );
      };
    return {
      startTune: unary(async (r) => ({ job: await this.startTune(r) })),
      getTuneJob: unary((r) => ({ job: this.getTuneJob(r) })),
      listTuneJobs: unary((r) => this.listTuneJobs(r)),
      cancelTuneJob: unary((r) => ({ job: this.cancelTuneJob(r) })),
      evaluate: unary((r) => this.evaluate(r)),
      streamMetrics: (call) => {
        const controller = new AbortController();
        const abort = () => controller.abort();
        call.on('cancelled', abort);
        call.on('close', abort);
        this.ctx.shutdown.addEventListener('abort', abort, { once: true });
        void (async () => {
          try {
            for await (const msg of this.streamMetrics(call.request, controller.signal)) {
              if (controller.signal.aborted) break;
              // Respect back-pressure: a slow dashboard pauses reading from the store, not memory growth.
              if (!call.write(msg)) await drainOrAbort(call, controller.signal);
            }
            call.end();
          } catch (e) {
            call.emit('error', toGrpcError(e));
          } finally {
            this.ctx.shutdown.removeEventListener('abort', abort);
          }
        })();
      },
    };
  }
}
