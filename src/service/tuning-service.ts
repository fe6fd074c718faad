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
  MergeModelsRequest,
  MergeModelsResponse,
  StartTuneRequest,
  StreamMetricsRequest,
  StreamMetricsResponse,
  TuneJob,
} from '../gen/narrowtune/v1/tuning_service.js';
import { evaluateInWorker } from '../eval/run-in-worker.js';
import { mergeInWorker } from '../model/merge-in-worker.js';
import type { JobRunner } from '../runner/job-runner.js';
import { followEvents } from '../store/follow-events.js';
import type { JobStore } from '../store/job-store.js';
import { tenantFeatureCache } from '../trainer/options.js';
import { NarrowtuneError, quotaExceeded } from '../util/errors.js';
import { listTenant, requireRole } from './access.js';
import { parseEvaluate } from './evaluate-request.js';
import { parseMergeModels } from './merge-request.js';
import { eventToProto } from './event-to-proto.js';
import type { CallContext } from './caller.js';
import { evaluateResponseToProto, jobToProto } from './messages.js';
import { findJob, parseCancelTuneJob, parseGetTuneJob, parseListTuneJobs, parseStreamMetrics, type RequestContext } from './requests.js';
import { startTuneHash } from './request-hash.js';
import { parseStartTune, requestIdViolation } from './start-tune-request.js';
import type { RateLimiter } from './rate-limit.js';
import { withRootsHidden } from './paths.js';
import { type Logger, SILENT } from '../util/log.js';

export interface ServiceContext extends RequestContext {
  store: JobStore;
  runner: JobRunner;
  maxQueuedJobs: number;
  /** Pending jobs of one tenant before its StartTune is RESOURCE_EXHAUSTED; undefined: no limit. */
  tenantMaxQueued?: number;
  /** Per-key limits on StartTune and Evaluate (rate-limit.ts); undefined: none. */
  rateLimiter?: RateLimiter;
  /** On-disk image-feature cache for Evaluate, a subdirectory per tenant (tenantFeatureCache); undefined: memory only. */
  featureCache?: string;
  /** Aborted on shutdown: open streams end cleanly. */
  shutdown: AbortSignal;
  /** Job lines: created, cancel requested (the runner logs the rest of a job's life). */
  log?: Logger;
}

/** Errors of work done on the caller's paths name files relative to the roots, never where the roots are. */
function hidingRoots<T>(call: CallContext, work: Promise<T>): Promise<T> {
  return work.catch((e: unknown) => {
    throw withRootsHidden(e, [...call.caller.modelRoots, ...call.caller.dataRoots]);
  });
}

export class TuningService {
  private readonly log: Logger;

  constructor(private readonly ctx: ServiceContext) {
    this.log = ctx.log ?? SILENT;
  }

  /** The parsers' context for this caller: its roots (a key may narrow the server's), and the jobs it may name. */
  private requestContext(call: CallContext): RequestContext {
    return { ...this.ctx, modelRoots: call.caller.modelRoots, dataRoots: call.caller.dataRoots, caller: call.caller };
  }

  async startTune(req: StartTuneRequest, call: CallContext): Promise<TuneJob> {
    const { store, runner, maxQueuedJobs } = this.ctx;
    requireRole(call.caller, 'StartTune');
    const owner = { tenant: call.caller.tenant, creatorKeyId: call.caller.keyId, requestHash: startTuneHash(req) };
    // A retry of an accepted request gets its job back before any capacity check: a full queue must not hide it.
    // An id the parser refuses is not looked up: the parser's violation is the answer on every store.
    const retried = req.requestId && !requestIdViolation(req.requestId) ? await store.findRequest(owner.tenant, req.requestId, owner.requestHash) : null;
    if (retried) return jobToProto(retried);
    // Before parsing, which reads the model and the data: a flood costs the server a map lookup per call.
    this.ctx.rateLimiter?.take('StartTune', call.caller.keyId);
    const command = await hidingRoots(call, parseStartTune(req, this.requestContext(call), call.signal));
    // The store counts the queue in the insert's transaction: concurrent calls, on any replica, never overshoot.
    const limits = { maxPending: maxQueuedJobs, tenantMaxPending: this.ctx.tenantMaxQueued };
    const { job, created } = await store.createJob({ ...command, ...owner, limits });
    if (created) this.log.info({ job: job.id, tenant: owner.tenant, key: owner.creatorKeyId }, 'job created');
    void runner.pump();
    // The job as accepted (a new one is PENDING), even if the runner has just started it.
    return jobToProto(job);
  }

  async getTuneJob(req: GetTuneJobRequest, call: CallContext): Promise<TuneJob> {
    return jobToProto(await findJob(this.ctx.store, parseGetTuneJob(req).id, 'name', call.caller));
  }

  async listTuneJobs(req: ListTuneJobsRequest, call: CallContext): Promise<ListTuneJobsResponse> {
    const command = parseListTuneJobs(req);
    const page = await this.ctx.store.listJobs({ ...command, tenant: listTenant(call.caller, command.tenant) });
    return { jobs: page.jobs.map(jobToProto), nextPageToken: page.nextPageToken };
  }

  async cancelTuneJob(req: CancelTuneJobRequest, call: CallContext): Promise<TuneJob> {
    const { store } = this.ctx;
    requireRole(call.caller, 'CancelTuneJob');
    const job = await findJob(store, parseCancelTuneJob(req).id, 'name', call.caller);
    // A pending job never reaches a trainer: the store gives its stream the closing event in the same write.
    const cancelled = await store.requestCancel(job.id, call.caller.keyId);
    this.log.info({ job: job.id, tenant: job.tenant, by: call.caller.keyId, state: cancelled.state }, 'job cancel requested');
    return jobToProto(cancelled);
  }

  async *streamMetrics(req: StreamMetricsRequest, call: CallContext): AsyncGenerator<StreamMetricsResponse> {
    const { id, fromSequence } = parseStreamMetrics(req);
    await findJob(this.ctx.store, id, 'name', call.caller);
    for await (const e of followEvents(this.ctx.store, id, fromSequence, call.signal)) yield eventToProto(e);
  }

  async evaluate(req: EvaluateRequest, call: CallContext): Promise<EvaluateResponse> {
    requireRole(call.caller, 'Evaluate');
    this.ctx.rateLimiter?.take('Evaluate', call.caller.keyId);
    // Data files are parsed in the worker; their problems come back as INVALID_ARGUMENT with the file and line.
    // The worker stops when the call's signal aborts: a client that gave up frees its core.
    const featureCache = tenantFeatureCache(this.ctx.featureCache, call.caller.tenant);
    const evaluation = parseEvaluate(req, this.requestContext(call)).then((options) => evaluateInWorker({ ...options, featureCache }, call.signal));
    return evaluateResponseToProto(await hidingRoots(call, evaluation));
  }

  async mergeModels(req: MergeModelsRequest, call: CallContext): Promise<MergeModelsResponse> {
    requireRole(call.caller, 'MergeModels');
    // Counted against Evaluate's limit: both are CPU work on whole models that the caller waits for.
    this.ctx.rateLimiter?.take('Evaluate', call.caller.keyId);
    // Off the event loop: interpolating every tensor of a model takes seconds of CPU.
    const merge = parseMergeModels(req, this.requestContext(call)).then((options) => mergeInWorker(options));
    const receipt = await hidingRoots(call, merge);
    this.log.info({ tenant: call.caller.tenant, key: call.caller.keyId, alpha: req.alpha, interpolated: receipt.interpolated }, 'models merged');
    return {
      outputPath: req.outputPath,
      tensors: receipt.tensors,
      interpolatedTensors: receipt.interpolated,
      baseSha256: receipt.base.sha256,
      tunedSha256: receipt.tuned.sha256,
    };
  }
}
