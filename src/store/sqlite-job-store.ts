// The embedded job store: everything in one SQLite file in the data directory, with in-process change
// notifications. better-sqlite3 is synchronous; the methods are async only to share the JobStore contract.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { NarrowtuneError } from '../util/errors.js';
import { decodeJobEvent, type JobEvent, type JobError, type JobResult, type JobSpec, type RestingState } from './job-events.js';
import { newJobId } from './job-id.js';
import {
  addListener,
  alreadyResting,
  checkCount,
  checkFence,
  checkLeaseMs,
  checkResting,
  checkStates,
  DB_FILE,
  ID_ATTEMPTS,
  isResting,
  jobNotFound,
  listFilter,
  listStates,
  notifyListeners,
  pageSizeOf,
  pendingLimitBroken,
  requestIdReused,
  storeClosed,
  toJson,
  type CheckpointRecord,
  type ClaimOptions,
  type FinishExtra,
  type JobRecord,
  type JobState,
  type JobStore,
  type Lease,
  type ListJobsOptions,
  type MetricEvent,
  type NewJob,
  type ProgressUpdate,
  type StoreListener,
  type StoreNotification,
} from './job-store.js';
import { decodePageToken, encodePageToken } from './page-token.js';
import { migrate } from './schema.js';
import { SqliteKeyStore } from './sqlite-key-store.js';

// How long a writer waits on another connection's lock (a second process, a CLI inspecting the file) before failing.
const BUSY_TIMEOUT_MS = 5000;

interface JobRow {
  queue_order: number;
  id: string;
  tenant: string | null;
  creator_key_id: string | null;
  request_id: string | null;
  request_hash: string | null;
  state: JobState;
  spec: string;
  create_time: number;
  start_time: number | null;
  end_time: number | null;
  step: number;
  total_steps: number;
  trainable: string;
  error: string | null;
  cancel_requested: number;
  cancel_requested_by: string | null;
  cancel_time: number | null;
  output_path: string | null;
  result: string | null;
  lease_owner: string | null;
  lease_expires: number | null;
  lease_epoch: number;
}

interface CheckpointRow {
  job_id: string;
  step: number;
  path: string;
  final: number;
  create_time: number;
}

interface EventRow {
  job_id: string;
  sequence: number;
  time: number;
  type: string;
  payload: string;
}

export interface SqliteJobStoreOptions {
  /** Clock in ms since epoch; tests pin it to get ties, exact times and lease expiry. */
  now?: () => number;
}

function toEvent(r: EventRow): MetricEvent {
  return { jobId: r.job_id, sequence: r.sequence, time: r.time, event: decodeJobEvent(r.type, JSON.parse(r.payload)) };
}

export class SqliteJobStore implements JobStore {
  private readonly db: Database.Database;
  readonly keys: SqliteKeyStore;
  private readonly now: () => number;
  private readonly listeners = new Map<string, Set<StoreListener>>();
  // Keyed by SQL text; the IN (?, ?, …) lists vary only with the number of states, so this stays small.
  private readonly statements = new Map<string, Database.Statement>();

  private constructor(db: Database.Database, options: SqliteJobStoreOptions) {
    this.db = db;
    this.now = options.now ?? Date.now;
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('foreign_keys = ON');
    migrate(db);
    this.keys = new SqliteKeyStore(db, this.now);
  }

  /** Opens (creating and migrating) `dataDir`/narrowtune.db. Synchronous, so the CLI can open and fail early. */
  static open(dataDir: string, options: SqliteJobStoreOptions = {}): SqliteJobStore {
    mkdirSync(dataDir, { recursive: true });
    const db = new Database(join(dataDir, DB_FILE));
    try {
      // WAL lets StreamMetrics readers (even in another process) proceed while the runner appends.
      db.pragma('journal_mode = WAL');
      return new SqliteJobStore(db, options);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  static openInMemory(options: SqliteJobStoreOptions = {}): SqliteJobStore {
    return new SqliteJobStore(new Database(':memory:'), options);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.statements.clear();
    if (this.db.open) this.db.close();
  }

  // ---- jobs ----

  async createJob(input: NewJob): Promise<{ job: JobRecord; created: boolean }> {
    const requestId = input.requestId || null; // proto3 sends '' for "not set"
    const requestHash = input.requestHash ?? null;
    const tenant = input.tenant ?? null;
    const spec = toJson(input.spec, 'spec');
    // No conflict target: the request id's unique index is on an expression; an id collision also lands here.
    const insert = this.stmt(
      `INSERT INTO jobs (id, tenant, creator_key_id, request_id, request_hash, state, spec, create_time) VALUES (?, ?, ?, ?, ?, 'PENDING', ?, ?)
       ON CONFLICT DO NOTHING`,
    );
    const result = this.write(() => {
      if (requestId !== null) {
        const existing = this.requestRow(tenant, requestId, requestHash);
        if (existing) return { id: existing.id, created: false };
      }
      if (input.limits) {
        const count = (sql: string, ...params: unknown[]) => (this.stmt(sql).get(...params) as { n: number }).n;
        const pending = {
          all: count(`SELECT count(*) AS n FROM jobs WHERE state = 'PENDING'`),
          tenant: tenant === null ? 0 : count(`SELECT count(*) AS n FROM jobs WHERE state = 'PENDING' AND tenant = ?`, tenant),
        };
        const full = pendingLimitBroken(input.limits, tenant, pending);
        if (full) throw full;
      }
      for (let attempt = 1; attempt <= ID_ATTEMPTS; attempt++) {
        const id = newJobId();
        if (insert.run(id, tenant, input.creatorKeyId ?? null, requestId, requestHash, spec, this.now()).changes === 1) return { id, created: true };
        // Only reachable if another connection inserted the request id between our SELECT and INSERT.
        const existing = requestId === null ? undefined : this.requestRow(tenant, requestId, requestHash);
        if (existing) return { id: existing.id, created: false };
      }
      throw new NarrowtuneError('internal', `no unused job id after ${ID_ATTEMPTS} attempts`);
    });
    const job = this.jobSync(result.id)!;
    if (result.created) this.emit(job.id, { kind: 'state', job });
    return { job, created: result.created };
  }

  async findRequest(tenant: string | null, requestId: string, requestHash: string | null): Promise<JobRecord | null> {
    const r = this.requestRow(tenant, requestId, requestHash);
    return r ? this.toJobs([r])[0]! : null;
  }

  private requestRow(tenant: string | null, requestId: string, requestHash: string | null): JobRow | undefined {
    const r = this.row(`SELECT * FROM jobs WHERE coalesce(tenant, '') = ? AND request_id = ?`, tenant ?? '', requestId);
    // Jobs from before request hashes were stored cannot be compared: a retry of them is taken as the same request.
    if (r && requestHash !== null && r.request_hash !== null && r.request_hash !== requestHash) throw requestIdReused(requestId, r);
    return r;
  }

  async getJob(id: string): Promise<JobRecord | null> {
    return this.jobSync(id);
  }

  private jobSync(id: string): JobRecord | null {
    const r = this.row('SELECT * FROM jobs WHERE id = ?', id);
    return r ? this.toJobs([r])[0]! : null;
  }

  async listJobs(opts: ListJobsOptions): Promise<{ jobs: JobRecord[]; nextPageToken: string }> {
    const states = listStates(opts.states);
    const filter = listFilter(states, opts.tenant);
    const size = pageSizeOf(opts.pageSize);
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (states.length > 0) {
      where.push(`state IN (${states.map(() => '?').join(', ')})`);
      params.push(...states);
    }
    if (opts.tenant !== undefined) {
      where.push('tenant = ?');
      params.push(opts.tenant);
    }
    if (opts.pageToken) {
      const c = decodePageToken(opts.pageToken, filter);
      where.push('(create_time < ? OR (create_time = ? AND queue_order < ?))');
      params.push(c.createTime, c.createTime, c.queueOrder);
    }
    // One extra row tells whether another page exists, so the last page never returns an empty-but-tokened follow-up.
    const rows = this.stmt(
      `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY create_time DESC, queue_order DESC LIMIT ?`,
    ).all(...params, size + 1) as JobRow[];
    const more = rows.length > size;
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      jobs: this.toJobs(page),
      nextPageToken: more && last ? encodePageToken({ createTime: last.create_time, queueOrder: last.queue_order, filter }) : '',
    };
  }

  async jobsInStates(states: JobState[]): Promise<JobRecord[]> {
    checkStates(states, 'states');
    if (states.length === 0) return [];
    const rows = this.stmt(`SELECT * FROM jobs WHERE state IN (${states.map(() => '?').join(', ')}) ORDER BY queue_order`).all(...states) as JobRow[];
    return this.toJobs(rows);
  }

  async countInStates(states: JobState[], tenant?: string): Promise<number> {
    checkStates(states, 'states');
    if (states.length === 0) return 0;
    const inStates = `state IN (${states.map(() => '?').join(', ')})`;
    const r = (
      tenant === undefined
        ? this.stmt(`SELECT count(*) AS n FROM jobs WHERE ${inStates}`).get(...states)
        : this.stmt(`SELECT count(*) AS n FROM jobs WHERE ${inStates} AND tenant = ?`).get(...states, tenant)
    ) as { n: number };
    return r.n;
  }

  async requestCancel(id: string, by: string | null = null): Promise<JobRecord> {
    const event = this.write(() => {
      const r = this.requireRow(id);
      if (isResting(r.state)) throw alreadyResting(r);
      const now = this.now();
      const who = `cancel_requested_by = CASE WHEN cancel_requested = 1 THEN cancel_requested_by ELSE ? END, cancel_time = coalesce(cancel_time, ?)`;
      if (r.state !== 'PENDING') {
        this.stmt(`UPDATE jobs SET ${who}, cancel_requested = 1 WHERE id = ?`).run(by, now, id);
        return null;
      }
      // Nothing is running it, so nobody else would ever finish it, nor write its last event.
      this.stmt(`UPDATE jobs SET state = 'CANCELLED', ${who}, cancel_requested = 1, end_time = ? WHERE id = ?`).run(by, now, now, id);
      return this.insertEvent(id, { type: 'finished', state: 'CANCELLED' });
    });
    if (event) this.emit(id, { kind: 'event', event });
    const job = this.jobSync(id)!;
    this.emit(id, { kind: 'state', job });
    return job;
  }

  // ---- leases ----

  async claimJob(opts: ClaimOptions): Promise<Lease | null> {
    checkLeaseMs(opts.leaseMs);
    checkCount(opts.tenantMaxRunning, 'tenant_max_running');
    const id = this.write(() => {
      const now = this.now();
      // One statement in one write transaction: no other connection can claim between the pick and the update.
      const pick = this.stmt(
        `SELECT id FROM jobs AS j
         WHERE (j.state = 'PENDING' OR (j.state = 'RUNNING' AND j.lease_expires <= @now))
           AND (@limit IS NULL OR j.tenant IS NULL OR
                (SELECT count(*) FROM jobs AS r WHERE r.tenant = j.tenant AND r.state = 'RUNNING' AND r.lease_expires > @now) < @limit)
         ORDER BY j.queue_order LIMIT 1`,
      ).get({ now, limit: opts.tenantMaxRunning ?? null }) as { id: string } | undefined;
      if (!pick) return null;
      this.stmt(
        `UPDATE jobs SET state = 'RUNNING', lease_owner = ?, lease_expires = ?, lease_epoch = lease_epoch + 1, start_time = coalesce(start_time, ?)
         WHERE id = ?`,
      ).run(opts.workerId, now + opts.leaseMs, now, pick.id);
      return pick.id;
    });
    if (id === null) return null;
    const job = this.jobSync(id)!;
    this.emit(id, { kind: 'state', job });
    return { jobId: id, workerId: opts.workerId, epoch: job.leaseEpoch, job };
  }

  async renewLease(lease: Lease, leaseMs: number): Promise<boolean> {
    checkLeaseMs(leaseMs);
    const info = this.stmt(`UPDATE jobs SET lease_expires = ? WHERE id = ? AND state = 'RUNNING' AND lease_epoch = ? AND lease_owner = ?`).run(
      this.now() + leaseMs,
      lease.jobId,
      lease.epoch,
      lease.workerId,
    );
    return info.changes === 1;
  }

  async releaseLease(lease: Lease): Promise<boolean> {
    const released = this.write(
      () =>
        this.stmt(
          `UPDATE jobs SET state = 'PENDING', lease_owner = NULL, lease_expires = NULL WHERE id = ? AND state = 'RUNNING' AND lease_epoch = ? AND lease_owner = ?`,
        ).run(lease.jobId, lease.epoch, lease.workerId).changes === 1,
    );
    if (released) this.emit(lease.jobId, { kind: 'state', job: this.jobSync(lease.jobId)! });
    return released;
  }

  async expireLease(jobId: string, epoch: number): Promise<boolean> {
    const info = this.stmt(`UPDATE jobs SET lease_expires = ? WHERE id = ? AND state = 'RUNNING' AND lease_epoch = ?`).run(
      this.now(),
      jobId,
      epoch,
    );
    return info.changes === 1;
  }

  // ---- fenced writes ----

  async updateProgress(lease: Lease, p: ProgressUpdate): Promise<void> {
    checkCount(p.step, 'step');
    checkCount(p.totalSteps, 'total_steps');
    this.write(() => {
      this.fence(lease);
      this.stmt(`UPDATE jobs SET step = coalesce(?, step), total_steps = coalesce(?, total_steps), trainable = coalesce(?, trainable) WHERE id = ?`).run(
        p.step ?? null,
        p.totalSteps ?? null,
        p.trainable ? JSON.stringify(p.trainable) : null,
        lease.jobId,
      );
    });
  }

  async addCheckpoint(lease: Lease, c: { step: number; path: string; final: boolean }): Promise<void> {
    checkCount(c.step, 'step');
    this.write(() => {
      this.fence(lease);
      this.stmt(
        `INSERT INTO checkpoints (job_id, step, path, final, create_time) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path, final = excluded.final, create_time = excluded.create_time`,
      ).run(lease.jobId, c.step, c.path, c.final ? 1 : 0, this.now());
    });
  }

  async appendEvent(lease: Lease, e: JobEvent): Promise<MetricEvent> {
    const event = this.write(() => {
      this.fence(lease);
      return this.insertEvent(lease.jobId, e);
    });
    this.emit(lease.jobId, { kind: 'event', event });
    return event;
  }

  async finish(lease: Lease, state: RestingState, extra: FinishExtra = {}): Promise<JobRecord> {
    checkResting(state);
    return this.transition(lease.jobId, (r) => {
      checkFence(r, lease);
      this.stmt(
        `UPDATE jobs SET state = ?, end_time = ?, error = ?, output_path = coalesce(?, output_path), result = ?, lease_owner = NULL, lease_expires = NULL
         WHERE id = ?`,
      ).run(
        state,
        this.now(),
        extra.error ? JSON.stringify(extra.error satisfies JobError) : null,
        extra.outputPath ?? null,
        extra.result === undefined ? null : JSON.stringify(extra.result satisfies JobResult),
        lease.jobId,
      );
    });
  }

  // ---- events ----

  async readEvents(jobId: string, afterSequence: number, limit?: number): Promise<MetricEvent[]> {
    const rows = this.stmt('SELECT * FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?').all(
      jobId,
      afterSequence,
      limit === undefined ? -1 : Math.max(0, Math.floor(limit)), // SQLite: a negative LIMIT means none
    ) as EventRow[];
    return rows.map(toEvent);
  }

  async lastSequence(jobId: string): Promise<number> {
    return this.lastSequenceSync(jobId);
  }

  private lastSequenceSync(jobId: string): number {
    const r = this.stmt('SELECT max(sequence) AS s FROM events WHERE job_id = ?').get(jobId) as { s: number | null };
    return r.s ?? 0;
  }

  // ---- notifications ----

  subscribe(jobId: string, listener: StoreListener): () => void {
    return addListener(this.listeners, jobId, listener);
  }

  // ---- internals ----

  private emit(jobId: string, n: StoreNotification): void {
    notifyListeners(this.listeners, jobId, n);
  }

  /** Inside a write transaction: appends the job's next event (the job must exist). */
  private insertEvent(jobId: string, e: JobEvent): MetricEvent {
    // The type has its own column; the payload keeps the event's own names (older rows use the same ones).
    const { type, ...payload } = e;
    const json = toJson(payload, 'payload');
    const sequence = this.lastSequenceSync(jobId) + 1;
    const time = this.now();
    this.stmt('INSERT INTO events (job_id, sequence, time, type, payload) VALUES (?, ?, ?, ?, ?)').run(jobId, sequence, time, type, json);
    return { jobId, sequence, time, event: decodeJobEvent(type, JSON.parse(json)) };
  }

  /** Inside a write transaction: the fenced writes' check (see JobStore). */
  private fence(lease: Lease): void {
    checkFence(this.requireRow(lease.jobId), lease);
  }

  /** Runs a read-check-update on one job in a write transaction, then notifies with the job as committed. */
  private transition(id: string, change: (r: JobRow) => void): JobRecord {
    this.write(() => change(this.requireRow(id)));
    const job = this.jobSync(id)!;
    this.emit(id, { kind: 'state', job });
    return job;
  }

  /** IMMEDIATE takes the write lock up front, so a read-then-write cannot lose a race to another connection. */
  private write<T>(fn: () => T): T {
    this.ensureOpen();
    return this.db.transaction(fn).immediate();
  }

  private stmt(sql: string): Database.Statement {
    this.ensureOpen();
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  private ensureOpen(): void {
    if (!this.db.open) throw storeClosed();
  }

  private row(sql: string, ...params: unknown[]): JobRow | undefined {
    return this.stmt(sql).get(...params) as JobRow | undefined;
  }

  private requireRow(id: string): JobRow {
    const r = this.row('SELECT * FROM jobs WHERE id = ?', id);
    if (!r) throw jobNotFound(id);
    return r;
  }

  private toJobs(rows: JobRow[]): JobRecord[] {
    if (rows.length === 0) return [];
    const cps = this.stmt(
      `SELECT * FROM checkpoints WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, step`,
    ).all(JSON.stringify(rows.map((r) => r.id))) as CheckpointRow[];
    const byJob = new Map<string, CheckpointRecord[]>();
    for (const c of cps) {
      let list = byJob.get(c.job_id);
      if (!list) byJob.set(c.job_id, (list = []));
      list.push({ step: c.step, path: c.path, final: c.final === 1, createTime: c.create_time });
    }
    return rows.map((r) => ({
      id: r.id,
      tenant: r.tenant,
      creatorKeyId: r.creator_key_id,
      requestId: r.request_id,
      state: r.state,
      spec: JSON.parse(r.spec) as JobSpec,
      createTime: r.create_time,
      startTime: r.start_time,
      endTime: r.end_time,
      step: r.step,
      totalSteps: r.total_steps,
      trainable: JSON.parse(r.trainable) as string[],
      error: r.error === null ? null : (JSON.parse(r.error) as JobError),
      cancelRequested: r.cancel_requested === 1,
      cancelRequestedBy: r.cancel_requested_by,
      cancelTime: r.cancel_time,
      checkpoints: byJob.get(r.id) ?? [],
      outputPath: r.output_path,
      result: r.result === null ? null : (JSON.parse(r.result) as JobResult),
      queueOrder: r.queue_order,
      leaseOwner: r.lease_owner,
      leaseExpires: r.lease_expires,
      leaseEpoch: r.lease_epoch,
    }));
  }
}
