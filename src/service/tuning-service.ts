// TuningService handlers: validate the request, call the store/runner/evaluator, map the result.
// Every error leaves through toGrpcError; nothing a client sends can throw past a handler.
import { access, constants } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import {
  EvalDataset_Kind,
  EvalDataset_Role,
  type EvaluateRequest,
  type EvaluateResponse,
  type ModelRef,
  StartTuneRequest,
  type StreamMetricsResponse,
  type TuneJob,
  type TuningServiceServer,
} from '../gen/narrowtune/v1/tuning_service.js';
import { evaluateInWorker } from '../eval/run-in-worker.js';
import { architectureDifference, compileAnswerRegex, EVAL_DEFAULTS, MAX_NEW_TOKENS, type EvalDatasetOptions, type EvalKind, type EvalRole } from '../eval/evaluate.js';
import { inspectCheckpoint } from '../model/checkpoint.js';
import { resolvePolicy } from '../policy/policy.js';
import { NUMBER_CLASS } from '../telemetry/token-classes.js';
import { DEVICES, type Device } from '../runtime/session.js';
import type { JobRunner, JobSpec } from '../runner/job-runner.js';
import { followEvents } from '../store/follow-events.js';
import type { JobRecord, JobStore } from '../store/job-store.js';
import { LIMITS, validateOptions } from '../trainer/options.js';
import { type FieldViolation, NarrowtuneError } from '../util/errors.js';
import { toGrpcError } from './grpc-errors.js';
import { eventToProto, JOB_NAME, jobToProto, OPTION_FIELDS, optionsFromRequest, stateFromProto } from './messages.js';
import { confinePath } from './paths.js';

export interface ServiceContext {
  store: JobStore;
  runner: JobRunner;
  /** Real paths of the directories requests may read models and data from. */
  modelRoots: string[];
  dataRoots: string[];
  maxQueuedJobs: number;
  checkpointEvery: number;
  /** Aborted on shutdown: open streams end cleanly. */
  shutdown: AbortSignal;
}

const MAX_REQUEST_ID = 128;
const MAX_EVAL_DATASETS = 32;
const MAX_PATTERNS = 64;
const MAX_TOKEN_CLASSES = 32;
const MAX_PATTERN_CHARS = 512;
const TOKEN_CLASS_NAME = /^[a-z][a-z0-9_]{0,63}$/;

class Violations {
  readonly list: FieldViolation[] = [];
  add(field: string, description: string): void {
    this.list.push({ field, description });
  }
  /** Runs `fn`, turning a domain error into violations (renamed by `rename`) instead of throwing. */
  collect<T>(fn: () => T, rename: (field: string) => string = (f) => f): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof NarrowtuneError) || e.kind !== 'invalid_argument') throw e;
      for (const v of e.violations) this.add(rename(v.field), v.description);
      return undefined;
    }
  }
  async collectAsync<T>(fn: () => Promise<T>, field: string): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof NarrowtuneError) || e.kind !== 'invalid_argument') throw e;
      this.add(field, e.message);
      return undefined;
    }
  }
  throwIfAny(): void {
    if (this.list.length > 0) {
      throw new NarrowtuneError('invalid_argument', this.list.map((v) => `${v.field}: ${v.description}`).join('\n'), this.list);
    }
  }
}

function parseJobName(name: string, field = 'name'): string {
  const m = JOB_NAME.exec(name);
  if (!m) throw new NarrowtuneError('invalid_argument', `${field}: "${name}" is not a job name (jobs/{id})`, [{ field, description: 'must be "jobs/{id}"' }]);
  return m[1];
}

function getJob(store: JobStore, name: string, field = 'name'): JobRecord {
  const job = store.getJob(parseJobName(name, field));
  if (!job) throw new NarrowtuneError('not_found', `job ${name} not found`, [{ field, description: 'no such job' }]);
  return job;
}

async function readable(path: string, field: string): Promise<string> {
  try {
    await access(path, constants.R_OK);
    return path;
  } catch {
    throw new NarrowtuneError('invalid_argument', `${field}: ${path} does not exist or is not readable`, [{ field, description: `${path} does not exist or is not readable` }]);
  }
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

/**
 * Syntax checks of token classes at request time; whether a pattern matches any token needs the
 * model's tokenizer and is checked by the job (or the evaluation) itself.
 */
function checkTokenClasses(v: Violations, classes: readonly { name: string; pattern: string }[]): void {
  if (classes.length > MAX_TOKEN_CLASSES) v.add('token_classes', `at most ${MAX_TOKEN_CLASSES} classes`);
  classes.forEach((c, i) => {
    if (!TOKEN_CLASS_NAME.test(c.name) || c.name === NUMBER_CLASS) v.add(`token_classes[${i}].name`, `must match ${TOKEN_CLASS_NAME} and not be "${NUMBER_CLASS}"`);
    try {
      if (c.pattern.length === 0 || c.pattern.length > MAX_PATTERN_CHARS) throw new Error(`must be 1 to ${MAX_PATTERN_CHARS} characters`);
      new RegExp(c.pattern, 'u');
    } catch (e) {
      v.add(`token_classes[${i}].pattern`, (e as Error).message);
    }
  });
}

export class TuningService {
  constructor(private readonly ctx: ServiceContext) {}

  /** A model reference → a directory: a path inside the model roots, or a SUCCEEDED job's output. */
  private modelPath(ref: ModelRef | undefined, field: string): string {
    const source = ref?.source;
    if (!source) throw new NarrowtuneError('invalid_argument', `${field}: is required`, [{ field, description: 'is required (path or job)' }]);
    if (source.$case === 'path') return confinePath(source.value, this.ctx.modelRoots, `${field}.path`);
    const job = getJob(this.ctx.store, source.value, `${field}.job`);
    if (job.state !== 'SUCCEEDED' || !job.outputPath) {
      throw new NarrowtuneError('failed_precondition', `${field}.job: job ${source.value} is ${job.state}; only a SUCCEEDED job has a model`, [
        { field: `${field}.job`, description: `job is ${job.state}, not SUCCEEDED` },
      ]);
    }
    return job.outputPath;
  }

  async startTune(req: StartTuneRequest): Promise<TuneJob> {
    const { store, runner } = this.ctx;
    const v = new Violations();
    if (req.requestId.length > MAX_REQUEST_ID) v.add('request_id', `must be at most ${MAX_REQUEST_ID} characters`);
    checkTokenClasses(v, req.tokenClasses);
    const patterns = (req.policy?.include.length ?? 0) + (req.policy?.exclude.length ?? 0);
    if (patterns > MAX_PATTERNS) v.add('policy', `at most ${MAX_PATTERNS} include/exclude patterns`);

    const model = v.collect(() => this.modelPath(req.baseModel, 'base_model'));
    let data = v.collect(() => (req.trainingData ? confinePath(req.trainingData, this.ctx.dataRoots, 'training_data') : undefined));
    if (!req.trainingData) v.add('training_data', 'is required');
    if (data) data = await v.collectAsync(() => readable(data!, 'training_data'), 'training_data');
    const optionalData = async (path: string, field: string) => {
      if (!path) return null;
      const confined = v.collect(() => confinePath(path, this.ctx.dataRoots, field));
      return confined ? ((await v.collectAsync(() => readable(confined, field), field)) ?? null) : null;
    };
    const validation = await optionalData(req.validationData, 'validation_data');
    const probe = await optionalData(req.probeData, 'probe_data');
    const inspected = model ? await v.collectAsync(() => inspectCheckpoint(model), 'base_model') : undefined;

    const options = optionsFromRequest(req, { model: model ?? '', data: data ?? '', validation, probe }, this.ctx.checkpointEvery);
    if (inspected) {
      v.collect(() => resolvePolicy(options.policy, [...inspected.tensors.keys()].filter((n) => n !== 'lm_head.weight' || !inspected.config.tieWordEmbeddings)));
    }
    v.collect(
      () =>
        validateOptions({
          ...options,
          model: options.model || '-',
          data: options.data || '-',
          // A path that failed its own check above must not also read as "missing" here.
          validationData: options.validationData ?? (req.validationData ? '-' : null),
          probeData: options.probeData ?? (req.probeData ? '-' : null),
          out: '-',
          checkpointDir: '-',
          resume: true,
        }),
      (f) => OPTION_FIELDS[f] ?? f,
    );
    if (req.hyperparameters?.steps !== undefined && req.hyperparameters.epochs !== undefined) {
      v.add('hyperparameters.steps', 'give steps or epochs, not both');
    }
    v.throwIfAny();

    if (store.countInStates(['PENDING']) >= this.ctx.maxQueuedJobs) {
      throw new NarrowtuneError('resource_exhausted', `the queue is full (${this.ctx.maxQueuedJobs} pending jobs); retry later`);
    }
    const spec: JobSpec = { options, request: StartTuneRequest.toJSON(req) };
    const { job } = store.createJob({ requestId: req.requestId || null, spec });
    runner.pump();
    return jobToProto(store.getJob(job.id) ?? job);
  }

  getTuneJob(name: string): TuneJob {
    return jobToProto(getJob(this.ctx.store, name));
  }

  listTuneJobs(pageSize: number, pageToken: string, states: number[]): { jobs: TuneJob[]; nextPageToken: string } {
    const v = new Violations();
    if (pageSize < 0) v.add('page_size', 'must not be negative');
    const mapped = states.map((s, i) => {
      const state = stateFromProto(s);
      if (!state) v.add(`states[${i}]`, `${s} is not a job state`);
      return state!;
    });
    v.throwIfAny();
    const page = this.ctx.store.listJobs({ pageSize, pageToken: pageToken || undefined, states: mapped });
    return { jobs: page.jobs.map(jobToProto), nextPageToken: page.nextPageToken };
  }

  cancelTuneJob(name: string): TuneJob {
    const { store } = this.ctx;
    const job = getJob(store, name);
    // A pending job never reaches a trainer: its stream gets its closing event here.
    if (job.state === 'PENDING') store.appendEvent(job.id, 'finished', { state: 'CANCELLED', outputPath: '' });
    return jobToProto(store.requestCancel(job.id));
  }

  async *streamMetrics(name: string, fromSequence: number, signal: AbortSignal): AsyncGenerator<StreamMetricsResponse> {
    if (fromSequence < 0) throw new NarrowtuneError('invalid_argument', 'from_sequence: must not be negative', [{ field: 'from_sequence', description: 'must not be negative' }]);
    const job = getJob(this.ctx.store, name);
    for await (const e of followEvents(this.ctx.store, job.id, fromSequence, signal)) yield eventToProto(e);
  }

  async evaluate(req: EvaluateRequest): Promise<EvaluateResponse> {
    const v = new Violations();
    const model = v.collect(() => this.modelPath(req.model, 'model'));
    const base = req.baseModel?.source ? v.collect(() => this.modelPath(req.baseModel, 'base_model')) : undefined;
    if (req.datasets.length === 0) v.add('datasets', 'at least one dataset is required');
    if (req.datasets.length > MAX_EVAL_DATASETS) v.add('datasets', `at most ${MAX_EVAL_DATASETS} datasets`);
    const kinds: Record<number, EvalKind> = { [EvalDataset_Kind.KIND_UNSPECIFIED]: 'loss', [EvalDataset_Kind.LOSS]: 'loss', [EvalDataset_Kind.GENERATE]: 'generate', [EvalDataset_Kind.CHOICE]: 'choice' };
    const roles: Record<number, EvalRole> = { [EvalDataset_Role.ROLE_UNSPECIFIED]: null, [EvalDataset_Role.TARGET]: 'target', [EvalDataset_Role.HELD_OUT]: 'held_out' };
    const datasets: EvalDatasetOptions[] = req.datasets.slice(0, MAX_EVAL_DATASETS).map((d, i) => {
      const at = `datasets[${i}]`;
      const path = d.path ? v.collect(() => confinePath(d.path, this.ctx.dataRoots, `${at}.path`)) : (v.add(`${at}.path`, 'is required'), undefined);
      const kind = kinds[d.kind];
      if (!kind) v.add(`${at}.kind`, `${d.kind} is not a kind (LOSS = 1, GENERATE = 2, CHOICE = 3)`);
      if (!(d.role in roles)) v.add(`${at}.role`, `${d.role} is not a role (TARGET = 1, HELD_OUT = 2)`);
      const maxNewTokens = d.maxNewTokens ?? EVAL_DEFAULTS.maxNewTokens;
      if (kind === 'generate') {
        if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > MAX_NEW_TOKENS) v.add(`${at}.max_new_tokens`, `must be in [1, ${MAX_NEW_TOKENS}], got ${maxNewTokens}`);
        v.collect(() => compileAnswerRegex(d.answerRegex, `${at}.answer_regex`));
      } else if (kind) {
        if (d.maxNewTokens !== undefined) v.add(`${at}.max_new_tokens`, 'applies only to GENERATE datasets');
        if (d.answerRegex) v.add(`${at}.answer_regex`, 'applies only to GENERATE datasets');
      }
      return { name: d.name || d.path, path: path ?? '', kind: kind ?? 'loss', role: roles[d.role] ?? null, maxNewTokens, answerRegex: d.answerRegex };
    });
    for (const [i, d] of datasets.entries()) if (d.path) await v.collectAsync(() => readable(d.path, `datasets[${i}].path`), `datasets[${i}].path`);
    if (req.tokenClasses.length > 0 && !req.baseModel?.source) v.add('token_classes', 'token classes are reported in the drift figures, which need base_model');
    checkTokenClasses(v, req.tokenClasses);
    const batchSize = req.batchSize ?? EVAL_DEFAULTS.batchSize;
    const seqLen = req.seqLen ?? EVAL_DEFAULTS.seqLen;
    const device = (req.device || EVAL_DEFAULTS.device) as Device;
    if (!Number.isInteger(batchSize) || batchSize < LIMITS.batchSize[0] || batchSize > LIMITS.batchSize[1]) v.add('batch_size', `must be in [1, ${LIMITS.batchSize[1]}]`);
    if (!Number.isInteger(seqLen) || seqLen < LIMITS.seqLen[0] || seqLen > LIMITS.seqLen[1]) v.add('seq_len', `must be in [${LIMITS.seqLen[0]}, ${LIMITS.seqLen[1]}]`);
    if (!DEVICES.includes(device)) v.add('device', `must be one of ${DEVICES.join(', ')}`);
    const modelInfo = model ? await v.collectAsync(() => inspectCheckpoint(model), 'model') : undefined;
    const baseInfo = base ? await v.collectAsync(() => inspectCheckpoint(base), 'base_model') : undefined;
    if (modelInfo && baseInfo) {
      const diff = architectureDifference(modelInfo.config, baseInfo.config);
      if (diff) v.add('base_model', diff);
    }
    v.throwIfAny();
    // Data files are parsed in the worker; their problems come back as INVALID_ARGUMENT with the file and line.
    const r = await evaluateInWorker({ model: model!, base: base ?? null, datasets, tokenClasses: req.tokenClasses, batchSize, seqLen, device });
    const kindOut: Record<EvalKind, EvalDataset_Kind> = { loss: EvalDataset_Kind.LOSS, generate: EvalDataset_Kind.GENERATE, choice: EvalDataset_Kind.CHOICE };
    const roleOut = (role: EvalRole) => (role === 'target' ? EvalDataset_Role.TARGET : role === 'held_out' ? EvalDataset_Role.HELD_OUT : EvalDataset_Role.ROLE_UNSPECIFIED);
    return {
      results: r.datasets.map((s) => ({
        name: s.name,
        loss: s.loss,
        tokenAccuracy: s.tokenAccuracy,
        tokens: s.tokens,
        examples: s.examples,
        kind: kindOut[s.kind],
        role: roleOut(s.role),
        accuracy: s.accuracy,
        base: s.base
          ? {
              loss: s.base.loss,
              tokenAccuracy: s.base.tokenAccuracy,
              accuracy: s.base.accuracy,
              lossDelta: s.base.lossDelta,
              accuracyDelta: s.base.accuracyDelta,
              drift: {
                positions: s.base.drift.positions,
                numberMass: s.base.drift.numberMass,
                numberMassBase: s.base.drift.numberMassBase,
                numberMassDelta: s.base.drift.numberMassDelta,
                klToBase: s.base.drift.klToBase,
                top1Agreement: s.base.drift.top1Agreement,
                heldoutLoss: s.base.drift.heldoutLoss,
                heldoutLossBase: s.base.drift.heldoutLossBase,
                heldoutLossDelta: s.base.drift.heldoutLossDelta,
                classes: s.base.drift.classes,
              },
            }
          : undefined,
      })),
      deltaLearning: r.deltaLearning ?? undefined,
      deltaForgetting: r.deltaForgetting ?? undefined,
      targetDatasets: r.targetDatasets,
      heldOutDatasets: r.heldOutDatasets,
    };
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
      getTuneJob: unary((r) => ({ job: this.getTuneJob(r.name) })),
      listTuneJobs: unary((r) => this.listTuneJobs(r.pageSize, r.pageToken, r.states)),
      cancelTuneJob: unary((r) => ({ job: this.cancelTuneJob(r.name) })),
      evaluate: unary((r) => this.evaluate(r)),
      streamMetrics: (call) => {
        const controller = new AbortController();
        const abort = () => controller.abort();
        call.on('cancelled', abort);
        call.on('close', abort);
        this.ctx.shutdown.addEventListener('abort', abort, { once: true });
        void (async () => {
          try {
            for await (const msg of this.streamMetrics(call.request.name, call.request.fromSequence, controller.signal)) {
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
