// The durable job store, as an interface: jobs, their checkpoints and metric events, API keys, job leases for
// the workers that train them, and change notifications. SQLite (sqlite-job-store.ts) is the embedded default;
// PostgreSQL (postgres-job-store.ts) is the store several machines share. Both implement exactly this contract,
// and the shared checks and errors below, so that callers and tests cannot tell them apart.
import { NarrowtuneError, invalidArgument, quotaExceeded } from '../util/errors.js';
import type { JobError, JobEvent, JobResult, JobSpec, RestingState } from './job-events.js';
import type { KeyStore } from './key-store.js';

export type JobState = 'PENDING' | 'RUNNING' | RestingState;
export const JOB_STATES: readonly JobState[] = ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
export const RESTING_STATES: readonly JobState[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

export interface CheckpointRecord {
  step: number;
  path: string;
  final: boolean;
  createTime: number;
}

export interface JobRecord {
  id: string;
  /** The tenant that owns the job; null when it was created without authentication. */
  tenant: string | null;
  /** The API key that created it; null without authentication. */
  creatorKeyId: string | null;
  requestId: string | null;
  state: JobState;
  spec: JobSpec;
  createTime: number;
  /** When it was first claimed; a later claim (a resume) keeps it. */
  startTime: number | null;
  endTime: number | null;
  step: number;
  totalSteps: number;
  trainable: string[];
  error: JobError | null;
  cancelRequested: boolean;
  /** The API key that asked to cancel (null without authentication, or when nobody did). */
  cancelRequestedBy: string | null;
  /** When a cancel was first asked for. */
  cancelTime: number | null;
  /** Ascending by step. */
  checkpoints: CheckpointRecord[];
  outputPath: string | null;
  result: JobResult | null;
  /** FIFO position: increases with every job created and never changes or gets reused. */
  queueOrder: number;
  /** The worker holding the job's lease; null unless RUNNING (a release or finish clears it). */
  leaseOwner: string | null;
  /** When that lease expires (ms since epoch, the store's clock); null unless RUNNING. */
  leaseExpires: number | null;
  /** How many times the job has been claimed: 0 before its first claim, then the epoch of the newest lease. */
  leaseEpoch: number;
}

export interface MetricEvent {
  jobId: string;
  sequence: number;
  time: number;
  event: JobEvent;
}

/**
 * A worker's claim on one job. It stays valid while the job is RUNNING with this epoch: a later claim of the job
 * (after this lease expired), a release or a finish ends it, and every fenced write with it is then refused.
 */
export interface Lease {
  readonly jobId: string;
  readonly workerId: string;
  readonly epoch: number;
  /** The job as the claim committed it (state RUNNING, leaseEpoch === epoch). */
  readonly job: JobRecord;
}

export interface ClaimOptions {
  /** Who claims; stored as lease_owner (for operators and for a restarted process to recognise its old leases). */
  workerId: string;
  /** How long the lease lasts without a renewal. */
  leaseMs: number;
  /** Jobs of one tenant RUNNING with a live lease at once, counted in the store (so across workers); jobs without a tenant are not limited. */
  tenantMaxRunning?: number;
}

export type StoreNotification = { kind: 'event'; event: MetricEvent } | { kind: 'state'; job: JobRecord };
export type StoreListener = (n: StoreNotification) => void;

/** Who creates a job and what it is; tenant and creator are null on a server without authentication. */
export interface NewJob {
  requestId?: string | null;
  /** A digest of the request, so that a request id sent again with another request is refused (null: not checked). */
  requestHash?: string | null;
  tenant?: string | null;
  creatorKeyId?: string | null;
  spec: JobSpec;
  /**
   * Refuse a new job (resource_exhausted) when this many jobs are already PENDING, in all or in the job's tenant.
   * Counted in the insert's transaction, so concurrent calls, on any replica, never overshoot.
   */
  limits?: PendingLimits;
}

export interface PendingLimits {
  maxPending?: number;
  tenantMaxPending?: number;
}

/** The error for a new job over `limits`, or null; `pending` counts PENDING jobs (with a tenant: that tenant's). */
export function pendingLimitBroken(limits: PendingLimits | undefined, tenant: string | null, pending: { all: number; tenant: number }): NarrowtuneError | null {
  if (!limits) return null;
  if (limits.maxPending !== undefined && pending.all >= limits.maxPending) {
    return new NarrowtuneError('resource_exhausted', `the queue is full (${limits.maxPending} pending jobs); retry later`);
  }
  if (limits.tenantMaxPending !== undefined && tenant !== null && pending.tenant >= limits.tenantMaxPending) {
    return quotaExceeded(
      `tenant:${tenant}`,
      `tenant ${tenant} has ${limits.tenantMaxPending} pending jobs, the most --tenant-max-queued allows; retry when one has started`,
    );
  }
  return null;
}

export interface ListJobsOptions {
  pageSize?: number;
  pageToken?: string;
  states?: JobState[];
  tenant?: string;
}

export interface ProgressUpdate {
  step?: number;
  totalSteps?: number;
  trainable?: string[];
}

export interface FinishExtra {
  error?: JobError;
  outputPath?: string;
  result?: JobResult;
}

/**
 * Every method checks its arguments before touching the database (invalid_argument), reports an unknown job id
 * as not_found (jobNotFound), and, once the store is closed, fails with 'unavailable' (storeClosed). Each write is
 * one transaction: it happens entirely or not at all, and notifies subscribers only after it committed.
 *
 * Fenced writes (updateProgress, addCheckpoint, appendEvent, finish) take the writer's Lease and, inside their
 * transaction, check in this order: the job exists (not_found); it is RUNNING with lease_epoch = lease.epoch and
 * lease_owner = lease.workerId, else leaseLost (kind 'aborted') — a resting job is leaseLost too unless its
 * epoch still matches, in which case alreadyResting (failed_precondition) says the holder itself finished it.
 * An expired lease that nobody has claimed since still passes: nobody else is training the job.
 */
export interface JobStore {
  /** The API keys, in the same database. */
  readonly keys: KeyStore;

  /** Ends subscriptions and closes the connection(s); idempotent. Calls after it fail with storeClosed(). */
  close(): Promise<void>;

  // ---- jobs: any replica ----

  /**
   * Creates a PENDING job (leaseEpoch 0, no lease), or returns the job this tenant's request id already made
   * (created: false, the job as it is now); the same tenant + request id with a different non-null request hash is
   * requestIdReused (already_exists). A null tenant is its own namespace (''), an empty request id means none. The
   * spec must be JSON-serializable (invalid_argument on field 'spec'). A retry is answered before input.limits
   * are checked; a new job over them is refused (pendingLimitBroken). Notifies 'state' when created.
   */
  createJob(input: NewJob): Promise<{ job: JobRecord; created: boolean }>;

  /**
   * The job a tenant's request id made, or null; requestIdReused when it was made by a different request (a stored
   * or given null hash is not compared). The service asks before its capacity checks, so that a retry of an
   * accepted request never reads as "queue full".
   */
  findRequest(tenant: string | null, requestId: string, requestHash: string | null): Promise<JobRecord | null>;

  /** The job, or null (not an error) for an unknown id. */
  getJob(id: string): Promise<JobRecord | null>;

  /**
   * Newest first (createTime DESC, then queueOrder DESC). pageSize: unset or 0 → DEFAULT_PAGE_SIZE, else clamped to
   * [1, MAX_PAGE_SIZE] (pageSizeOf). states: any of these (duplicates ignored; unknown → invalid_argument on
   * 'states'); tenant: only that tenant's jobs. nextPageToken is '' on the last page (never an empty follow-up
   * page); tokens come from encodePageToken with the filter listFilter() names, so a token used with another filter
   * is invalid_argument on 'page_token', as decodePageToken says.
   */
  listJobs(opts: ListJobsOptions): Promise<{ jobs: JobRecord[]; nextPageToken: string }>;

  /** Every job in these states, in queueOrder (FIFO). Unknown states: invalid_argument on 'states'. */
  jobsInStates(states: JobState[]): Promise<JobRecord[]>;

  /** How many jobs are in these states; with `tenant`, only that tenant's. Unknown states: invalid_argument. */
  countInStates(states: JobState[], tenant?: string): Promise<number>;

  /**
   * Cancels a PENDING job at once: state CANCELLED, endTime now, and its 'finished' CANCELLED event appended, in
   * one transaction (so a worker claiming it at the same moment either gets it first or never sees it). On a
   * RUNNING job it only sets cancelRequested, for the lease holder to stop. Either way the first request's key
   * (cancelRequestedBy) and cancelTime are kept. A resting job: alreadyResting. Not fenced. Notifies 'state' (and
   * 'event' for the appended event). Returns the job as committed.
   */
  requestCancel(id: string, by?: string | null): Promise<JobRecord>;

  // ---- leases: workers ----

  /**
   * Atomically claims the first job, in queueOrder, that is PENDING or RUNNING with an expired lease
   * (lease_expires <= now), skipping jobs whose tenant already has tenantMaxRunning jobs RUNNING with a live lease
   * (lease_expires > now; the candidate itself is never counted). The claimed job becomes RUNNING with
   * lease_owner = workerId, lease_expires = now + leaseMs, lease_epoch + 1, startTime kept if set, else now. Jobs
   * with cancelRequested are claimed like any other: the worker finishes them CANCELLED. Two concurrent claims never
   * return the same job (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one write transaction). null when nothing is
   * claimable. Notifies 'state'.
   */
  claimJob(opts: ClaimOptions): Promise<Lease | null>;

  /**
   * Extends the lease to now + leaseMs when it still holds (RUNNING, same epoch and owner; an expired lease nobody
   * has claimed since still holds); false when it was lost (another claim, a release, a finish, or the job is gone).
   * Never throws for a lost lease. Does not notify.
   */
  renewLease(lease: Lease, leaseMs: number): Promise<boolean>;

  /**
   * Gives the job back for another worker to claim at once (graceful shutdown): RUNNING → PENDING, lease owner and
   * expiry cleared, epoch and queueOrder kept (so it is next in line). false, and no change, when the lease was
   * already lost. Notifies 'state' when it released.
   */
  releaseLease(lease: Lease): Promise<boolean>;

  /**
   * Expires the lease of epoch `epoch` on a RUNNING job now, so the next claimJob may take it, without changing the
   * epoch (the claim increments it). For a worker that knows the holder is dead (its own previous process), so it
   * need not wait out the lease. false when the job is not RUNNING with that epoch. Does not notify.
   */
  expireLease(jobId: string, epoch: number): Promise<boolean>;

  // ---- fenced writes: the lease holder only ----

  /** Sets the given fields (others unchanged). Non-negative integers, else invalid_argument on 'step'/'total_steps'. Does not notify. */
  updateProgress(lease: Lease, p: ProgressUpdate): Promise<void>;

  /** Records a checkpoint; a second one for the same step replaces it (path, final, createTime). Does not notify. */
  addCheckpoint(lease: Lease, c: { step: number; path: string; final: boolean }): Promise<void>;

  /**
   * Appends the job's next event: sequence = last + 1 (1 for the first), contiguous per job, time = now. The payload
   * must be JSON (invalid_argument on 'payload', nothing appended). Returns it as stored and notifies 'event'.
   */
  appendEvent(lease: Lease, e: JobEvent): Promise<MetricEvent>;

  /**
   * Ends the job in a resting state (invalid_argument on 'state' otherwise): endTime now, error and result as given
   * (null when absent), outputPath when given (else kept), lease owner and expiry cleared, epoch kept. Notifies
   * 'state' and returns the job as committed.
   */
  finish(lease: Lease, state: RestingState, extra?: FinishExtra): Promise<JobRecord>;

  // ---- events: any replica ----

  /** Events with sequence > afterSequence, ascending, at most `limit` (unset: all). An unknown job has none. */
  readEvents(jobId: string, afterSequence: number, limit?: number): Promise<MetricEvent[]>;

  /** The job's highest sequence; 0 when it has none or is unknown. */
  lastSequence(jobId: string): Promise<number>;

  // ---- notifications ----

  /**
   * Registers synchronously (so a read that follows cannot miss a change committed after this returns, as seen by
   * this process) and returns the unsubscribe. Delivery is best effort and may come late or from another process's
   * write (PostgreSQL: LISTEN/NOTIFY; an 'event' notification may then carry only what the channel carried, see
   * the implementation): readers treat a notification as "look again" and read the store as the truth, with a
   * polling fallback (followEvents). A listener that throws is reported with process.emitWarning, never to the writer.
   */
  subscribe(jobId: string, listener: StoreListener): () => void;
}

export const DB_FILE = 'narrowtune.db';
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;
// A fresh random id colliding is ~2^-60 per pair; a few retries make it impossible in practice without looping forever on a bug.
export const ID_ATTEMPTS = 5;

export function isResting(state: JobState): boolean {
  return RESTING_STATES.includes(state);
}

/** The JSON text of a value the store keeps; invalid_argument on `field` when it has none. */
export function toJson(value: unknown, field: string): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(value ?? null);
  } catch (e) {
    throw invalidArgument(field, `not JSON-serializable: ${(e as Error).message}`);
  }
  return s ?? 'null'; // a bare function or symbol stringifies to undefined
}

/** The error for a job id that names nothing; shared with followEvents so both read alike. */
export function jobNotFound(id: string): NarrowtuneError {
  return new NarrowtuneError('not_found', `job jobs/${id} not found`, [{ field: 'name', description: `no job jobs/${id}` }]);
}

/** A request id names one request per tenant; sent again with another request it is a client bug, not a retry. */
export function requestIdReused(requestId: string, job: { id: string }): NarrowtuneError {
  return new NarrowtuneError(
    'already_exists',
    `request_id "${requestId.slice(0, 128)}" was already used by a different request (it created jobs/${job.id}); send a new request_id for a new job`,
    [{ field: 'request_id', description: `already used by a different request (jobs/${job.id})` }],
  );
}

export function alreadyResting(job: { id: string; state: JobState }): NarrowtuneError {
  return new NarrowtuneError('failed_precondition', `job jobs/${job.id} is already ${job.state}`);
}

/** A fenced write by a worker whose lease on the job is gone: another worker owns the job now, or it was released. */
export function leaseLost(lease: Pick<Lease, 'jobId' | 'epoch'>): NarrowtuneError {
  return new NarrowtuneError('aborted', `lease lost: jobs/${lease.jobId} is no longer held at epoch ${lease.epoch}`);
}

export function storeClosed(): NarrowtuneError {
  return new NarrowtuneError('unavailable', 'the job store is closed');
}

/**
 * The check a fenced write makes on the job's row, inside its transaction (see JobStore): throws leaseLost or
 * alreadyResting, or returns when the lease holds.
 */
export function checkFence(row: { id: string; state: JobState; lease_epoch: number; lease_owner: string | null }, lease: Lease): void {
  if (row.lease_epoch !== lease.epoch) throw leaseLost(lease);
  if (isResting(row.state)) throw alreadyResting(row);
  if (row.state !== 'RUNNING' || row.lease_owner !== lease.workerId) throw leaseLost(lease);
}

export function checkStates(states: readonly string[], field: string): void {
  for (const s of states) if (!JOB_STATES.includes(s as JobState)) throw invalidArgument(field, `unknown job state ${JSON.stringify(s)}`);
}

export function checkCount(value: number | undefined, field: string): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw invalidArgument(field, `must be a non-negative integer, got ${value}`);
  }
}

export function checkResting(state: string): void {
  if (!isResting(state as JobState)) throw invalidArgument('state', `finish needs a resting state, got ${state}`);
}

export function checkLeaseMs(leaseMs: number): void {
  if (!Number.isSafeInteger(leaseMs) || leaseMs <= 0) throw invalidArgument('lease_ms', `must be a positive integer, got ${leaseMs}`);
}

/** listJobs' page size: unset or 0 → the default, else clamped. */
export function pageSizeOf(pageSize: number | undefined): number {
  return pageSize ? Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(pageSize))) : DEFAULT_PAGE_SIZE;
}

/** The sorted, de-duplicated states listJobs filters on (checked). */
export function listStates(states: JobState[] | undefined): JobState[] {
  const s = [...new Set(states ?? [])].sort();
  checkStates(s, 'states');
  return s;
}

/** The filter a page token is bound to. Tokens of unfiltered lists keep their old form, so they stay valid across upgrades. */
export function listFilter(states: JobState[], tenant: string | undefined): string {
  return states.join(',') + (tenant === undefined ? '' : `;tenant=${tenant}`);
}

/**
 * Calls each listener with `n`, reporting (not throwing) a listener's error: the write is already committed, and
 * failing the writer's call would make it retry or give up on a change that happened.
 */
export function notifyListeners(listeners: ReadonlyMap<string, ReadonlySet<StoreListener>>, jobId: string, n: StoreNotification): void {
  const set = listeners.get(jobId);
  if (!set) return;
  // Copy: a listener may unsubscribe (itself or another) while we iterate.
  for (const listener of [...set]) {
    try {
      listener(n);
    } catch (e) {
      process.emitWarning(`job store listener for jobs/${jobId} threw: ${(e as Error)?.stack ?? String(e)}`, 'NarrowtuneStoreWarning');
    }
  }
}

/** subscribe() over a listener map: registers at once, returns the unsubscribe. */
export function addListener(listeners: Map<string, Set<StoreListener>>, jobId: string, listener: StoreListener): () => void {
  let set = listeners.get(jobId);
  if (!set) listeners.set(jobId, (set = new Set()));
  set.add(listener);
  return () => {
    const s = listeners.get(jobId);
    if (!s) return;
    s.delete(listener);
    if (s.size === 0) listeners.delete(jobId);
  };
}
