// A worker's half of the job queue: claims jobs from the store with a lease (at most N at once), heartbeats each
// lease, runs a trainer process per job and relays its events into the store with fenced writes. The queue is the
// store's, shared by every worker: a job whose worker died is claimed again once its lease expires, and resumes
// from the step checkpoint the store recorded.
import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { toJobEvent, type JobError, type JobEvent, type RestingState } from '../store/job-events.js';
import type { JobRecord, JobStore, Lease } from '../store/job-store.js';
import { DISABLED, type JobAttrs, type Telemetry } from '../telemetry/otel.js';
import type { TrainEvent } from '../trainer/events.js';
import { tenantFeatureCache, type TuneOptions } from '../trainer/options.js';
import { tuneInProcess, type TuneProcess } from '../trainer/run-in-process.js';
import { removeStepCheckpointsBefore } from '../trainer/step-checkpoint.js';
import { TrainingStopped, type TuneResult } from '../trainer/trainer.js';
import { NarrowtuneError, serializeError } from '../util/errors.js';
import { type Logger, SILENT } from '../util/log.js';
import { DEFAULT_LEASE_SECONDS } from './lease-defaults.js';

export interface JobRunnerOptions {
  store: JobStore;
  dataDir: string;
  /** Jobs this worker trains at once; 0: it claims none. */
  maxConcurrentJobs: number;
  /** Jobs of one tenant training at once, across every worker of the store; jobs without a tenant are not limited. */
  tenantMaxRunning?: number;
  /** Seconds a cancelled or shut-down trainer gets to checkpoint before it is killed. */
  stopGraceSeconds?: number;
  /** How long a claim holds without a heartbeat: after a worker dies, its jobs wait this long for another (default 30). */
  leaseSeconds?: number;
  /** onnxruntime intra-op threads of every job this process trains (default: onnxruntime's, one per physical core). */
  threads?: number;
  /** On-disk image-feature cache of LLaVA jobs, a subdirectory per tenant (tenantFeatureCache); default: memory only. */
  featureCache?: string;
  /** How often an idle worker looks for claimable jobs (default 1000 ms); a job created in this process is claimed at once. */
  pollMs?: number;
  /** This process's identity in the store (default: newWorkerId()). */
  workerId?: string;
  /** Lifecycle lines: started, resumed, checkpoints, stops, finished (default: none). */
  log?: Logger;
  /** Metrics and spans of each job; job ids go on spans only, never on metric attributes. */
  telemetry?: Telemetry;
  /** Injected in tests; defaults to a child process per job. */
  startProcess?: (options: TuneOptions, onEvent: (e: TrainEvent) => void) => TuneProcess;
}

const DEFAULT_STOP_GRACE_SECONDS = 30;
const DEFAULT_POLL_MS = 1000;

/**
 * Where this process's pids mean something: the host name and, on Linux, the pid namespace (containers sharing a
 * host name, e.g. with host networking, each have their own pids, and a pid of one says nothing in another).
 */
function pidScope(): string {
  let ns = '-';
  try {
    ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '-';
  } catch {
    // not Linux: the host name alone
  }
  return `${hostname()}/${ns}`;
}

const PID_SCOPE = pidScope();

/**
 * `host/pidns/pid/nonce`: unique per process (two workers on one host sharing a data dir must not take each
 * other's leases), and telling a restarted process which leases its dead predecessor left (isDeadLocalWorker).
 */
export function newWorkerId(): string {
  return `${PID_SCOPE}/${process.pid}/${randomBytes(4).toString('hex')}`;
}

/**
 * Whether `owner` is a process of our own host and pid namespace that is gone: its pid is dead, or it is our own
 * pid with another nonce (the pid was reused). Its leases can be expired at once instead of waited out, which is
 * what lets a restarted `serve` resume its own jobs without waiting --lease-seconds. Anything else (another host,
 * another container) may be alive: its leases are waited out. A wrong "alive" only costs that wait, and a wrong
 * "dead" is still safe: the live holder's writes are fenced and its trainer stops at its next heartbeat.
 */
export function isDeadLocalWorker(owner: string, self: string): boolean {
  if (owner === self) return false;
  const m = /^(.*)\/(\d+)\/([0-9a-f]+)$/.exec(owner);
  if (!m || m[1] !== PID_SCOPE) return false;
  const pid = Number(m[2]);
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export function jobDir(dataDir: string, id: string): string {
  return join(dataDir, 'jobs', id);
}

/** Each claim trains in its own directory, so a worker that lost the job never writes where its successor reads. */
export function attemptDir(dataDir: string, id: string, epoch: number): string {
  return join(jobDir(dataDir, id), `attempt-${epoch}`);
}

/** The newest step checkpoint the store recorded for the job (final ones are outputs, not resumable state). */
export function resumePoint(job: JobRecord): string | null {
  return job.checkpoints.filter((c) => !c.final).at(-1)?.path ?? null;
}

interface Running {
  lease: Lease;
  /** null while nothing trains (a job claimed only to be finished CANCELLED). */
  proc: TuneProcess | null;
  unsubscribe: () => void;
  heartbeat: NodeJS.Timeout;
  stopping: 'cancel' | 'shutdown' | null;
  /** The lease was lost: the trainer is killed and nothing more is written for this attempt. */
  lost: boolean;
  /** The store writes of this attempt, in the order the trainer emitted them. */
  writes: Promise<void>;
  /** Settles once the attempt's end is recorded (or given up) and its slot is free. */
  ended: Promise<void>;
}

export class JobRunner {
  private running = new Map<string, Running>();
  private closed = false;
  private started = false;
  private pumping: Promise<void> | null = null;
  private again = false;
  private poll: NodeJS.Timeout | null = null;
  readonly workerId: string;
  private readonly leaseMs: number;
  private readonly start: NonNullable<JobRunnerOptions['startProcess']>;
  private readonly telemetry: Telemetry;
  private readonly log: Logger;

  constructor(private readonly o: JobRunnerOptions) {
    this.start = o.startProcess ?? tuneInProcess;
    this.telemetry = o.telemetry ?? DISABLED;
    this.log = o.log ?? SILENT;
    this.workerId = o.workerId ?? newWorkerId();
    this.leaseMs = Math.round((o.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000);
  }

  /** Low-cardinality attributes: the base model's directory name and the policy. */
  private attrs(job: JobRecord): JobAttrs {
    const o = job.spec.options;
    const policy = (o.policy.include?.length ?? 0) > 0 ? 'custom' : (o.policy.preset ?? 'mlp_gate_up');
    return { baseModel: basename(o.model), policy };
  }

  get activeCount(): number {
    return this.running.size;
  }

  /**
   * Starts working: expires the leases a dead predecessor of this process left (a restarted `serve` resumes its
   * own jobs at once instead of after --lease-seconds), claims what it can, and keeps polling for more.
   */
  async begin(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    if (this.o.maxConcurrentJobs <= 0) return;
    for (const job of await this.o.store.jobsInStates(['RUNNING'])) {
      if (job.leaseOwner !== null && isDeadLocalWorker(job.leaseOwner, this.workerId) && (await this.o.store.expireLease(job.id, job.leaseEpoch))) {
        this.log.info({ job: job.id, step: job.step, previousWorker: job.leaseOwner }, 'job lease expired: its worker on this host is gone');
      }
    }
    const poll = this.o.pollMs ?? DEFAULT_POLL_MS;
    this.poll = setInterval(() => void this.pump(), poll);
    this.poll.unref();
    await this.pump();
  }

  /**
   * Claims jobs while this worker has free slots (the store picks FIFO, skipping tenants at tenantMaxRunning across
   * workers); called after every change that may free or add work, and by the poll. Calls overlapping a running
   * pump make it go round once more instead of claiming concurrently.
   */
  pump(): Promise<void> {
    if (this.closed || this.o.maxConcurrentJobs <= 0) return Promise.resolve();
    if (this.pumping) {
      this.again = true;
      return this.pumping;
    }
    this.pumping = (async () => {
      try {
        do {
          this.again = false;
          while (!this.closed && this.running.size < this.o.maxConcurrentJobs) {
            const lease = await this.o.store.claimJob({ workerId: this.workerId, leaseMs: this.leaseMs, tenantMaxRunning: this.o.tenantMaxRunning });
            if (!lease) break;
            if (this.closed) {
              await this.o.store.releaseLease(lease);
              break;
            }
            this.launch(lease);
          }
        } while (this.again && !this.closed);
      } catch (e) {
        // The poll tries again; a store outage must not take the process down.
        process.emitWarning(`could not claim a job: ${(e as Error).message}`);
      }
      // Cleared in a callback, never in the body: a pass with no free slot finishes synchronously, before the
      // assignment below, and would leave a settled promise that makes every later pump a no-op.
    })().finally(() => {
      this.pumping = null;
    });
    return this.pumping;
  }

  private launch(lease: Lease): void {
    const { store } = this.o;
    const job = lease.job;
    const resumeFrom = resumePoint(job);
    const dir = attemptDir(this.o.dataDir, job.id, lease.epoch);
    const options: TuneOptions = { ...job.spec.options, out: join(dir, 'model'), checkpointDir: join(dir, 'checkpoints'), resume: false, resumeFrom, pruneCheckpoints: false, threads: this.o.threads ?? null, frozenPrecision: 'float32', featureCache: tenantFeatureCache(this.o.featureCache, job.tenant) };
    const attrs = this.attrs(job);
    const entry: Running = {
      lease,
      proc: null,
      unsubscribe: () => undefined,
      heartbeat: setInterval(() => void this.beat(job.id), Math.max(1, Math.floor(this.leaseMs / 3))),
      stopping: null,
      lost: false,
      writes: Promise.resolve(),
      ended: Promise.resolve(),
    };
    entry.heartbeat.unref();
    this.running.set(job.id, entry);
    if (job.cancelRequested) {
      // Cancelled while no worker ran it (its worker died or shut down): nothing to train.
      entry.ended = this.settle(entry, () => this.finishCancelled(lease, 'cancelled while no worker was running it'));
      return;
    }
    this.log.info({ job: job.id, tenant: job.tenant, epoch: lease.epoch, worker: this.workerId, queuedMs: Date.now() - job.createTime }, 'job started');
    const proc = this.start(options, (e) => {
      entry.writes = entry.writes.then(() => this.record(entry, e, attrs));
    });
    entry.proc = proc;
    entry.unsubscribe = store.subscribe(job.id, (n) => {
      if (n.kind === 'state' && n.job.cancelRequested) this.stop(job.id, 'cancel');
    });
    // A cancel committed between the claim and the subscription notified nobody here.
    store.getJob(job.id).then((j) => j?.cancelRequested && this.stop(job.id, 'cancel'), () => undefined);
    // These handlers write to the store; whatever goes wrong there must not become an unhandled
    // rejection that takes the server (and every other job) down.
    void this.telemetry.jobPhase('train', { ...attrs, jobId: job.id }, () => proc.done).catch(() => undefined);
    entry.ended = proc.done.then(
      (result) => this.settle(entry, () => this.succeeded(entry, result)),
      (error: unknown) => this.settle(entry, () => this.ended(entry, error)),
    );
  }

  /** After the attempt's event writes: records its end unless the lease was lost, then frees the slot. */
  private async settle(entry: Running, end: () => Promise<void>): Promise<void> {
    const id = entry.lease.jobId;
    try {
      await entry.writes;
      if (!entry.lost) await end();
    } catch (err) {
      if (isLeaseLost(err)) this.lostLease(entry);
      else process.emitWarning(`job ${id}: could not record its end: ${(err as Error).message}`);
    } finally {
      clearInterval(entry.heartbeat);
      entry.unsubscribe();
      this.running.delete(id);
      void this.pump();
    }
  }

  /** Renews the lease and looks for a cancel another process asked for; a lost lease kills the trainer at once. */
  private async beat(id: string): Promise<void> {
    const entry = this.running.get(id);
    if (!entry || entry.lost) return;
    const { store } = this.o;
    try {
      if (!(await store.renewLease(entry.lease, this.leaseMs))) {
        this.lostLease(entry);
        return;
      }
      if (!entry.stopping && (await store.getJob(id))?.cancelRequested) this.stop(id, 'cancel');
    } catch (err) {
      // Not lost yet: a store that is briefly away comes back, and if another worker took the job meanwhile the
      // next renewal says so (and its writes are fenced until then).
      process.emitWarning(`job ${id}: could not renew its lease: ${(err as Error).message}`);
    }
  }

  private lostLease(entry: Running): void {
    if (entry.lost) return;
    entry.lost = true;
    this.log.warn({ job: entry.lease.jobId, epoch: entry.lease.epoch, worker: this.workerId }, 'job lease lost: another worker owns the job now; stopping its trainer');
    entry.proc?.kill();
  }

  /** Relays one trainer event into the store; a store error must never take the server down. */
  private async record(entry: Running, e: TrainEvent, attrs: JobAttrs): Promise<void> {
    if (entry.lost) return;
    const { lease } = entry;
    const id = lease.jobId;
    // tokensPerSecond is tokens over the step's wall time, so this is that time.
    if (e.type === 'step') this.telemetry.recordStep(attrs, { ...e, stepSeconds: e.tokens / e.tokensPerSecond });
    if (e.type === 'probe') this.telemetry.recordProbe(attrs, e);
    const stored = toJobEvent(e);
    if (!stored) return;
    const { store } = this.o;
    try {
      this.logEvent(id, e);
      if (e.type === 'started') await store.updateProgress(lease, { step: e.resumedFromStep, totalSteps: e.totalSteps, trainable: e.trainableTensors });
      else if (e.type === 'step') await store.updateProgress(lease, { step: e.step });
      else if (e.type === 'checkpoint') await store.addCheckpoint(lease, { step: e.step, path: e.path, final: false });
      await store.appendEvent(lease, stored);
      // Only now may the older ones go: until the store recorded this one, they are what a successor resumes from.
      if (e.type === 'checkpoint') await removeStepCheckpointsBefore(dirname(e.path), e.step);
    } catch (err) {
      if (isLeaseLost(err)) this.lostLease(entry);
      else process.emitWarning(`job ${id}: could not record ${e.type} event: ${(err as Error).message}`);
    }
  }

  private logEvent(id: string, e: TrainEvent): void {
    if (e.type === 'started' && e.resumedFromStep > 0) this.log.info({ job: id, fromStep: e.resumedFromStep, totalSteps: e.totalSteps }, 'job resumed');
    else if (e.type === 'started') this.log.info({ job: id, totalSteps: e.totalSteps, provider: e.provider, trainable: e.trainableTensors.length }, 'job training');
    else if (e.type === 'checkpoint') this.log.info({ job: id, step: e.step }, 'job checkpoint');
    else if (e.type === 'budget_exceeded') this.log.info({ job: id, step: e.step, limit: e.limit, keptStep: e.keptStep }, 'job drift budget exceeded');
    else if (e.type === 'step') this.log.trace({ job: id, step: e.step, loss: e.loss }, 'job step');
  }

  private finished(job: JobRecord, state: RestingState): void {
    this.telemetry.recordJobState(this.attrs(job), state);
    const line = { job: job.id, state, step: job.step, totalSteps: job.totalSteps, ms: job.startTime === null ? null : Date.now() - job.startTime };
    if (state === 'FAILED') this.log.warn({ ...line, errorKind: job.error?.kind, err: job.error?.message }, 'job finished');
    else this.log.info(line, 'job finished');
  }

  /** The job's last event, then its resting state. */
  private async finishWith(lease: Lease, state: RestingState, event: JobEvent, extra: Parameters<JobStore['finish']>[2]): Promise<void> {
    await this.o.store.appendEvent(lease, event);
    this.finished(await this.o.store.finish(lease, state, extra), state);
  }

  private async succeeded(entry: Running, result: TuneResult): Promise<void> {
    const { lease } = entry;
    await this.o.store.addCheckpoint(lease, { step: result.receipt.steps.length, path: result.out, final: true });
    const budgetStop = result.budgetStop ?? undefined;
    await this.finishWith(lease, 'SUCCEEDED', { type: 'finished', state: 'SUCCEEDED', outputPath: result.out, budgetStop }, {
      outputPath: result.out,
      result: budgetStop && { budgetStop },
    });
  }

  private async ended(entry: Running, error: unknown): Promise<void> {
    const { lease } = entry;
    const stoppedFor = error instanceof TrainingStopped ? error.reason : null;
    // A shutdown stop, asked by this runner or by a signal to the process group, or a trainer that died while
    // shutting down: the job is resumable, so it goes back to the queue for the next worker (or this one, restarted).
    if (stoppedFor === 'shutdown' || (stoppedFor === null && entry.stopping === 'shutdown')) {
      if (await this.o.store.releaseLease(lease)) this.log.info({ job: lease.jobId, epoch: lease.epoch }, 'job released: it resumes on the next worker');
      return;
    }
    if (stoppedFor === 'cancel' || entry.stopping === 'cancel') {
      await this.finishCancelled(lease);
      return;
    }
    const e = serializeError(error);
    const jobError: JobError = { kind: (error as NarrowtuneError).kind ?? 'internal', message: e.message, violations: (error as NarrowtuneError).violations ?? [] };
    await this.finishWith(lease, 'FAILED', { type: 'finished', state: 'FAILED', error: jobError }, { error: jobError });
  }

  private async finishCancelled(lease: Lease, note?: string): Promise<void> {
    const job = await this.o.store.getJob(lease.jobId);
    const last = job?.checkpoints.at(-1);
    await this.finishWith(lease, 'CANCELLED', { type: 'finished', state: 'CANCELLED', outputPath: last?.path, note }, last ? { outputPath: last.path } : {});
  }

  /** Asks a running job's trainer to stop; kills it if it does not stop within the grace period. */
  stop(id: string, reason: 'cancel' | 'shutdown'): void {
    const entry = this.running.get(id);
    const proc = entry?.proc;
    if (!entry || !proc || entry.stopping || entry.lost) return;
    entry.stopping = reason;
    this.log.info({ job: id, reason }, 'job stopping');
    proc.stop(reason);
    const grace = (this.o.stopGraceSeconds ?? DEFAULT_STOP_GRACE_SECONDS) * 1000;
    const timer = setTimeout(() => proc.kill(), grace);
    timer.unref();
    proc.done.finally(() => clearTimeout(timer)).catch(() => undefined);
  }

  /**
   * Graceful shutdown: claims nothing more; every running job checkpoints and its lease is released, so another
   * worker (or this one, restarted) continues it at once. Heartbeats go on until then: a slow checkpoint keeps its lease.
   */
  async shutdown(): Promise<void> {
    this.closed = true;
    if (this.poll) clearInterval(this.poll);
    await this.pumping;
    const entries = [...this.running.entries()];
    for (const [id] of entries) this.stop(id, 'shutdown');
    await Promise.all(entries.map(([, e]) => e.ended));
  }
}

function isLeaseLost(e: unknown): boolean {
  return e instanceof NarrowtuneError && e.kind === 'aborted';
}
