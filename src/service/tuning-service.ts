// The TuningService implementation, transport-neutral: parse the request (requests.ts), call the
// store/runner/evaluator, map the result (messages.ts). grpc-handlers.ts (and any other transport) adapts it;
// every call arrives with its caller (caller.ts), already authenticated by the transport.
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
} from '../gen/narrowtune/v1/tuning_service.js';
import { evaluateInWorker } from '../eval/run-in-worker.js';
import type { JobRunner } from '../runner/job-runner.js';
import { followEvents } from '../store/follow-events.js';
import type { JobStore } from '../store/job-store.js';
import { NarrowtuneError } from '../util/errors.js';
import { parseEvaluate } from './evaluate-request.js';
import { eventToProto } from './event-to-proto.js';
import type { CallContext } from './caller.js';
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

export class TuningService {
  constructor(private readonly ctx: ServiceContext) {}

  /** The parsers' context for this caller: its roots (a key may narrow the server's). */
  private requestContext(call: CallContext): RequestContext {
    return { ...this.ctx, modelRoots: call.caller.modelRoots, dataRoots: call.caller.dataRoots };
  }

  async startTune(req: StartTuneRequest, call: CallContext): Promise<TuneJob> {
    const { store, runner, maxQueuedJobs } = this.ctx;
    const command = await parseStartTune(req, this.requestContext(call));
    if (store.countInStates(['PENDING']) >= maxQueuedJobs) {
      throw new NarrowtuneError('resource_exhausted', `the queue is full (${maxQueuedJobs} pending jobs); retry later`);
    }
    const { job } = store.createJob(command);
    runner.pump();
    return jobToProto(store.getJob(job.id) ?? job);
  }

  getTuneJob(req: GetTuneJobRequest, _call: CallContext): TuneJob {
    return jobToProto(findJob(this.ctx.store, parseGetTuneJob(req).id));
  }

  listTuneJobs(req: ListTuneJobsRequest, _call: CallContext): ListTuneJobsResponse {
    const page = this.ctx.store.listJobs(parseListTuneJobs(req));
    return { jobs: page.jobs.map(jobToProto), nextPageToken: page.nextPageToken };
  }

  cancelTuneJob(req: CancelTuneJobRequest, _call: CallContext): TuneJob {
    const { store } = this.ctx;
    const job = findJob(store, parseCancelTuneJob(req).id);
    // A pending job never reaches a trainer: its stream gets its closing event here.
    if (job.state === 'PENDING') store.appendEvent(job.id, { type: 'finished', state: 'CANCELLED' });
    return jobToProto(store.requestCancel(job.id));
  }

  async *streamMetrics(req: StreamMetricsRequest, call: CallContext): AsyncGenerator<StreamMetricsResponse> {
    const { id, fromSequence } = parseStreamMetrics(req);
    findJob(this.ctx.store, id);
    for await (const e of followEvents(this.ctx.store, id, fromSequence, call.signal)) yield eventToProto(e);
  }

  async evaluate(req: EvaluateRequest, call: CallContext): Promise<EvaluateResponse> {
    // Data files are parsed in the worker; their problems come back as INVALID_ARGUMENT with the file and line.
    return evaluateResponseToProto(await evaluateInWorker(await parseEvaluate(req, this.requestContext(call))));
  }
}
