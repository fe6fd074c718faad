// Request parsing shared by the RPCs, and the parsers of the job-reference RPCs (get, list, cancel, stream).
// A parser returns a typed command or throws one INVALID_ARGUMENT listing every field violation; field paths
// are the request's own (`base_model.path`, `datasets[2].path`), so a client can point at what it sent.
// StartTune and Evaluate have their own modules: start-tune-request.ts, evaluate-request.ts.
import type {
  CancelTuneJobRequest,
  GetTuneJobRequest,
  ListTuneJobsRequest,
  ModelRef,
  StreamMetricsRequest,
  TokenClass,
} from '../gen/narrowtune/v1/tuning_service.js';
import { adapterOf, type Checkpoint, type CheckpointInfo } from '../model/checkpoint.js';
import { inspectModel } from '../model/load-model.js';
import type { JobRecord, JobState, JobStore } from '../store/job-store.js';
import { TENANT_NAME } from '../store/key-store.js';
import { NUMBER_CLASS } from '../eval/token-classes.js';
import { NarrowtuneError, quote } from '../util/errors.js';
import { compileUserRegex } from '../util/user-regex.js';
import { visibleJob } from './access.js';
import type { Caller } from './caller.js';
import { JOB_NAME, stateFromProto } from './messages.js';
import { confinePath, confineReadable } from './paths.js';
import { Violations } from './violations.js';

/** What parsers read besides the request: the roots paths must lie in, and jobs a ModelRef may name. */
export interface RequestContext {
  store: Pick<JobStore, 'getJob'>;
  /** Real paths of the directories requests may read models and data from. */
  modelRoots: string[];
  dataRoots: string[];
  /** checkpoint_every when a StartTune request leaves it unset. */
  checkpointEvery: number;
  /** Whose request it is: a ModelRef may name only a job this caller can see. Absent: every job. */
  caller?: Caller;
}

// Bounds on what one request may ask the server to check; a 4 MiB request could otherwise carry millions.
export const MAX_REQUEST_ID = 128;
export const MAX_PATTERNS = 64;
export const MAX_TOKEN_CLASSES = 32;
export const MAX_PATTERN_CHARS = 512;
export const MAX_PAGE_TOKEN = 1024;
const TOKEN_CLASS_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/** A job name → its id; `field` names the request field it came from. */
export function parseJobName(name: string, field = 'name'): string {
  const m = JOB_NAME.exec(name);
  if (!m) {
    throw new NarrowtuneError('invalid_argument', `${field}: ${quote(name)} is not a job name (jobs/{id})`, [{ field, description: 'must be "jobs/{id}"' }]);
  }
  return m[1];
}

/** The job a (parsed) name refers to, if `caller` may see it: see access.ts for the answers otherwise. */
export function findJob(store: RequestContext['store'], id: string, field = 'name', caller?: Caller): Promise<JobRecord> {
  return visibleJob(store, caller, id, field);
}

export interface JobCommand {
  id: string;
}

export function parseGetTuneJob(r: GetTuneJobRequest): JobCommand {
  return { id: parseJobName(r.name) };
}

export function parseCancelTuneJob(r: CancelTuneJobRequest): JobCommand {
  return { id: parseJobName(r.name) };
}

export interface StreamMetricsCommand extends JobCommand {
  fromSequence: number;
}

export function parseStreamMetrics(r: StreamMetricsRequest): StreamMetricsCommand {
  const v = new Violations();
  if (r.fromSequence < 0) v.add('from_sequence', 'must not be negative');
  const id = v.collectSync(() => parseJobName(r.name));
  v.throwIfAny();
  return { id: id!, fromSequence: r.fromSequence };
}

export interface ListTuneJobsCommand {
  pageSize: number;
  pageToken: string | undefined;
  states: JobState[];
  /** Only this tenant's jobs; undefined: no filter asked for (access.ts decides what the caller may see). */
  tenant: string | undefined;
}

export function parseListTuneJobs(r: ListTuneJobsRequest): ListTuneJobsCommand {
  const v = new Violations();
  if (r.pageSize < 0) v.add('page_size', 'must not be negative');
  const states = new Set<JobState>();
  r.states.forEach((s, i) => {
    const state = stateFromProto(s);
    if (state) states.add(state);
    else v.add(`states[${i}]`, `${s} is not a job state`);
  });
  if (r.tenant && !TENANT_NAME.test(r.tenant)) v.add('tenant', `must match ${TENANT_NAME}`);
  // Tokens this server issues are a few hundred characters; a longer one is not worth decoding.
  if (r.pageToken.length > MAX_PAGE_TOKEN) v.add('page_token', 'not a page token returned by this list call');
  v.throwIfAny();
  return { pageSize: r.pageSize, pageToken: r.pageToken || undefined, states: [...states], tenant: r.tenant || undefined };
}

/** A ModelRef resolved to a directory that reads as a checkpoint: text-only, or LLaVA-style (then `info.llava`). */
export interface ResolvedModel {
  dir: string;
  /** A LLaVA model's decoder config and all its tensors under the names the trainer uses (load-model.ts). */
  info: CheckpointInfo & Pick<Checkpoint, 'llava'>;
  /** `base_model.path` or `base_model.job`: where later problems with this model are reported. */
  field: string;
}

/**
 * A ModelRef → a checkpoint directory: a path inside the model roots, or a SUCCEEDED job's output. Problems
 * go into `v` under `${field}.path` or `${field}.job`; an unknown or unfinished job throws (NOT_FOUND,
 * FAILED_PRECONDITION) as no other field could change that answer.
 */
export async function resolveModel(v: Violations, ctx: RequestContext, ref: ModelRef | undefined, field: string): Promise<ResolvedModel | undefined> {
  const source = ref?.source;
  if (!source) return v.add(field, 'is required (path or job)'), undefined;
  const at = `${field}.${source.$case}`;
  const rename = () => at;
  const dir = await v.collect(async () => {
    if (source.$case === 'path') return confinePath(source.value, ctx.modelRoots, at);
    const job = await findJob(ctx.store, parseJobName(source.value, at), at, ctx.caller);
    if (job.state !== 'SUCCEEDED' || !job.outputPath) {
      throw new NarrowtuneError('failed_precondition', `${at}: job ${source.value} is ${job.state}; only a SUCCEEDED job has a model`, [
        { field: at, description: `job is ${job.state}, not SUCCEEDED` },
      ]);
    }
    return job.outputPath;
  }, rename);
  if (dir === undefined) return undefined;
  // A PEFT adapter directory opens its base model too, which must lie inside the model roots like the adapter.
  const adapter = await v.collect(() => adapterOf(dir), rename);
  if (adapter === undefined) return undefined;
  if (adapter && (await v.collect(() => confinePath(adapter.base, ctx.modelRoots, at), rename)) === undefined) return undefined;
  const info = await v.collect(() => inspectModel(dir), rename);
  return info && { dir, info, field: at };
}

/** A data file inside the data roots that can be read; '' is reported as missing only when `required`. */
export async function dataFile(v: Violations, ctx: RequestContext, path: string, field: string, required: boolean): Promise<string | null> {
  if (!path) {
    if (required) v.add(field, 'is required');
    return null;
  }
  return (await v.collect(() => confineReadable(path, ctx.dataRoots, field))) ?? null;
}

/**
 * Syntax checks of token classes at request time; whether a pattern matches any token needs the
 * model's tokenizer and is checked by the job (or the evaluation) itself.
 */
export function checkTokenClasses(v: Violations, classes: readonly TokenClass[]): void {
  if (classes.length > MAX_TOKEN_CLASSES) return v.add('token_classes', `at most ${MAX_TOKEN_CLASSES} classes, got ${classes.length}`);
  classes.forEach((c, i) => {
    if (!TOKEN_CLASS_NAME.test(c.name) || c.name === NUMBER_CLASS) v.add(`token_classes[${i}].name`, `must match ${TOKEN_CLASS_NAME} and not be "${NUMBER_CLASS}"`);
    v.collectSync(() => compileUserRegex(c.pattern, `token_classes[${i}].pattern`, MAX_PATTERN_CHARS));
  });
}
