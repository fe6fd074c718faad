// Schedules stored jobs onto trainer processes: at most N at once, the rest in FIFO order; relays each
// process's events into the store; recovers jobs that were running when the server died.
import { basename, join } from 'node:path';
import { toJobEvent, type JobError, type RestingState } from '../store/job-events.js';
import type { JobRecord, JobStore } from '../store/job-store.js';
import { DISABLED, type JobAttrs, type Telemetry } from '../telemetry/otel.js';
import type { TrainEvent } from '../trainer/events.js';
import type { TuneOptions } from '../trainer/options.js';
import { tuneInProcess, type TuneProcess } from '../trainer/run-in-process.js';
import { TrainingStopped, type TuneResult } from '../trainer/trainer.js';
import { NarrowtuneError, serializeError } from '../util/errors.js';
import { type Logger, SILENT } from '../util/log.js';

export interface JobRunnerOptions {
  store: JobStore;
  dataDir: string;
  maxConcurrentJobs: number;
  /** Jobs of one tenant training at once; its further jobs wait while other tenants' start. Jobs without a tenant are not limited. */
  tenantMaxRunning?: number;
  /** Seconds a cancelled or shut-down trainer gets to checkpoint before it is killed. */
  stopGraceSeconds?: number;
  /** Lifecycle lines: started, resumed, checkpoints, stops, finished (default: none). */
  log?: Logger;
  /** Metrics and spans of each job; job ids go on spans only, never on metric attributes. */
  telemetry?: Telemetry;
  /** Injected in tests; defaults to a child process per job. */
  startProcess?: (options: TuneOptions, onEvent: (e: TrainEvent) => void) => TuneProcess;
}

const DEFAULT_STOP_GRACE_SECONDS = 30;

export function jobDir(dataDir: string, id: string): string {
  return join(dataDir, 'jobs', id);
}

export class JobRunner {
  private running = new Map<string, { proc: TuneProcess; unsubscribe: () => void; stopping: 'cancel' | 'shutdown' | null; tenant: string | null }>();
  private closed = false;
  private readonly start: NonNullable<JobRunnerOptions['startProcess']>;
  private readonly telemetry: Telemetry;
  private readonly log: Logger;

  constructor(private readonly o: JobRunnerOptions) {
    this.start = o.startProcess ?? tuneInProcess;
    this.telemetry = o.telemetry ?? DISABLED;
    this.log = o.log ?? SILENT;
  }

  /** Low-cardinality attributes: the base model's directory name and the policy. */
  private attrs(job: JobRecord): JobAttrs {
    const o = job.spec.options;
    const policy = (o.policy.include?.length ?? 0) > 0 ? 'custom' : (o.policy.preset ?? 'mlp_gate_up');
    return { baseModel: basename(o.model), policy };
  }

  /** Requeues jobs a dead server left RUNNING (they resume from their last checkpoint), then starts work. */
  recover(): void {
    for (const job of this.o.store.jobsInStates(['RUNNING'])) {
      if (job.cancelRequested) this.finishCancelled(job.id, 'cancelled while the server was down');
      else {
        this.o.store.requeue(job.id);
        this.log.info({ job: job.id, step: job.step }, 'job requeued: it was running when the server stopped');
      }
    }
    this.pump();
  }

  get activeCount(): number {
    return this.running.size;
  }

  /**
   * Starts queued jobs while there is capacity, in FIFO order but skipping those of a tenant at its
   * tenantMaxRunning (so one tenant's backlog does not hold up the others); called after every change that may
   * free or add work.
   */
  pump(): void {
    if (this.closed) return;
    const limit = this.o.tenantMaxRunning;
    const perTenant = new Map<string, number>();
    for (const { tenant } of this.running.values()) if (tenant !== null) perTenant.set(tenant, (perTenant.get(tenant) ?? 0) + 1);
    for (const job of this.o.store.jobsInStates(['PENDING'])) {
      if (this.running.size >= this.o.maxConcurrentJobs) return;
      if (this.running.has(job.id)) continue;
      if (limit !== undefined && job.tenant !== null) {
        const n = perTenant.get(job.tenant) ?? 0;
        if (n >= limit) continue;
        perTenant.set(job.tenant, n + 1);
      }
      this.launch(job);
    }
  }

  private launch(job: JobRecord): void {
    const { store } = this.o;
    const dir = jobDir(this.o.dataDir, job.id);
    const options: TuneOptions = { ...job.spec.options, out: join(dir, 'model'), checkpointDir: join(dir, 'checkpoints'), resume: true };
    store.markRunning(job.id);
    this.log.info({ job: job.id, tenant: job.tenant, queuedMs: Date.now() - job.createTime }, 'job started');
    const attrs = this.attrs(job);
    const proc = this.start(options, (e) => this.record(job.id, e, attrs));
    const unsubscribe = store.subscribe(job.id, (n) => {
      if (n.kind === 'state' && n.job.cancelRequested) this.stop(job.id, 'cancel');
    });
    this.running.set(job.id, { proc, unsubscribe, stopping: null, tenant: job.tenant });
    // These handlers write to the store; whatever goes wrong there must not become an unhandled
    // rejection that takes the server (and every other job) down.
    void this.telemetry.jobPhase('train', { ...attrs, jobId: job.id }, () => proc.done).catch(() => undefined);
    proc.done
      .then(
        (result) => this.succeeded(job.id, result),
        (error: unknown) => this.ended(job.id, error),
      )
      .catch((err: unknown) => {
        process.emitWarning(`job ${job.id}: could not record its end: ${(err as Error).message}`);
        this.release(job.id);
      });
  }

  /** Relays one trainer event into the store; a store error must never take the server down. */
  private record(id: string, e: TrainEvent, attrs: JobAttrs): void {
    // tokensPerSecond is tokens over the step's wall time, so this is that time.
    if (e.type === 'step') this.telemetry.recordStep(attrs, { ...e, stepSeconds: e.tokens / e.tokensPerSecond });
    if (e.type === 'probe') this.telemetry.recordProbe(attrs, e);
    const stored = toJobEvent(e);
    if (!stored) return;
    const { store } = this.o;
    try {
      this.logEvent(id, e);
      if (e.type === 'started') store.updateProgress(id, { step: e.resumedFromStep, totalSteps: e.totalSteps, trainable: e.trainableTensors });
      else if (e.type === 'step') store.updateProgress(id, { step: e.step });
      else if (e.type === 'checkpoint') store.addCheckpoint(id, { step: e.step, path: e.path, final: false });
      store.appendEvent(id, stored);
    } catch (err) {
      process.emitWarning(`job ${id}: could not record ${e.type} event: ${(err as Error).message}`);
    }
  }

  private logEvent(id: string, e: TrainEvent): void {
    if (e.type === 'started' && e.resumedFromStep > 0) this.log.info({ job: id, fromStep: e.resumedFromStep, totalSteps: e.totalSteps }, 'job resumed');
    else if (e.type === 'started') this.log.info({ job: id, totalSteps: e.totalSteps, provider: e.provider, trainable: e.trainableTensors.length }, 'job training');
    else if (e.type === 'checkpoint') this.log.info({ job: id, step: e.step }, 'job checkpoint');
    else if (e.type === 'budget_exceeded') this.log.info({ job: id, step: e.step, limit: e.limit, keptStep: e.keptStep }, 'job drift budget exceeded');
    else if (e.type === 'step') this.log.trace({ job: id, step: e.step, loss: e.loss }, 'job step');
  }

  private finished(id: string, state: RestingState): void {
    const job = this.o.store.getJob(id);
    if (!job) return;
    this.telemetry.recordJobState(this.attrs(job), state);
    const line = { job: id, state, step: job.step, totalSteps: job.totalSteps, ms: job.startTime === null ? null : Date.now() - job.startTime };
    if (state === 'FAILED') this.log.warn({ ...line, errorKind: job.error?.kind, err: job.error?.message }, 'job finished');
    else this.log.info(line, 'job finished');
  }

  private release(id: string): void {
    this.running.get(id)?.unsubscribe();
    this.running.delete(id);
    this.pump();
  }

  private succeeded(id: string, result: TuneResult): void {
    const { store } = this.o;
    store.addCheckpoint(id, { step: result.receipt.steps.length, path: result.out, final: true });
    const budgetStop = result.budgetStop ?? undefined;
    store.appendEvent(id, { type: 'finished', state: 'SUCCEEDED', outputPath: result.out, budgetStop });
    store.finish(id, 'SUCCEEDED', { outputPath: result.out, result: budgetStop && { budgetStop } });
    this.finished(id, 'SUCCEEDED');
    this.release(id);
  }

  private ended(id: string, error: unknown): void {
    const entry = this.running.get(id);
    if (error instanceof TrainingStopped && error.reason === 'shutdown') {
      // Left RUNNING on purpose: the next server start requeues it and it resumes from its checkpoint.
      this.release(id);
      return;
    }
    if ((error instanceof TrainingStopped && error.reason === 'cancel') || entry?.stopping === 'cancel') {
      this.finishCancelled(id);
    } else if (entry?.stopping === 'shutdown') {
      this.release(id);
      return;
    } else {
      const e = serializeError(error);
      const jobError: JobError = { kind: (error as NarrowtuneError).kind ?? 'internal', message: e.message, violations: (error as NarrowtuneError).violations ?? [] };
      const { store } = this.o;
      store.appendEvent(id, { type: 'finished', state: 'FAILED', error: jobError });
      store.finish(id, 'FAILED', { error: jobError });
      this.finished(id, 'FAILED');
    }
    this.release(id);
  }

  private finishCancelled(id: string, note?: string): void {
    const { store } = this.o;
    const job = store.getJob(id);
    const last = job?.checkpoints.at(-1);
    store.appendEvent(id, { type: 'finished', state: 'CANCELLED', outputPath: last?.path, note });
    store.finish(id, 'CANCELLED', last ? { outputPath: last.path } : {});
    this.finished(id, 'CANCELLED');
  }

  /** Asks a running job's trainer to stop; kills it if it does not stop within the grace period. */
  stop(id: string, reason: 'cancel' | 'shutdown'): void {
    const entry = this.running.get(id);
    if (!entry || entry.stopping) return;
    entry.stopping = reason;
    this.log.info({ job: id, reason }, 'job stopping');
    entry.proc.stop(reason);
    const grace = (this.o.stopGraceSeconds ?? DEFAULT_STOP_GRACE_SECONDS) * 1000;
    const timer = setTimeout(() => entry.proc.kill(), grace);
    timer.unref();
    entry.proc.done.finally(() => clearTimeout(timer)).catch(() => undefined);
  }

  /** Graceful shutdown: every running job checkpoints and stays RUNNING, to resume on the next start. */
  async shutdown(): Promise<void> {
    this.closed = true;
    const waits = [...this.running].map(([id, { proc }]) => {
      this.stop(id, 'shutdown');
      return proc.done.catch(() => undefined);
    });
    await Promise.all(waits);
  }
}
