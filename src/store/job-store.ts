// The durable job store: jobs, their checkpoints and their metric events in one SQLite file, plus in-process change notifications.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { NarrowtuneError, invalidArgument } from '../util/errors.js';
import { KeyStore } from './key-store.js';
import { decodeJobEvent, type JobError, type JobEvent, type JobResult, type JobSpec, type RestingState } from './job-events.js';
import { newJobId } from './job-id.js';
import { decodePageToken, encodePageToken } from './page-token.js';
import { migrate } from './schema.js';

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
  checkpoints: CheckpointRecord[];
  outputPath: string | null;
  result: JobResult | null;
  queueOrder: number;
}

export interface MetricEvent {
  jobId: string;
  sequence: number;
  time: number;
  event: JobEvent;
}

export type StoreNotification = { kind: 'event'; event: MetricEvent } | { kind: 'state'; job: JobRecord };
export type StoreListener = (n: StoreNotification) => void;

export const DB_FILE = 'narrowtune.db';
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;
// How long a writer waits on another connection's lock (a second process, a CLI inspecting the file) before failing.
const BUSY_TIMEOUT_MS = 5000;
// A fresh random id colliding is ~2^-60 per pair; a few retries make it impossible in practice without looping forever on a bug.
const ID_ATTEMPTS = 5;

export function isResting(state: JobState): boolean {
  return RESTING_STATES.includes(state);
}

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

export interface JobStoreOptions {
  /** Clock in ms since epoch; tests pin it to get ties and exact times. */
  now?: () => number;
}

function toJson(value: unknown, field: string): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(value ?? null);
  } catch (e) {
    throw invalidArgument(field, `not JSON-serializable: ${(e as Error).message}`);
  }
  return s ?? 'null'; // a bare function or symbol stringifies to undefined
}

function toEvent(r: EventRow): MetricEvent {
  return { jobId: r.job_id, sequence: r.sequence, time: r.time, event: decodeJobEvent(r.type, JSON.parse(r.payload)) };
}

/** The error for a job id that names nothing; shared with followEvents so both read alike. */
export function jobNotFound(id: string): NarrowtuneError {
  return new NarrowtuneError('not_found', `job jobs/${id} not found`, [{ field: 'name', description: `no job jobs/${id}` }]);
}

/** A request id names one request per tenant; sent again with another request it is a client bug, not a retry. */
function requestIdReused(requestId: string, job: { id: string }): NarrowtuneError {
  return new NarrowtuneError(
    'already_exists',
    `request_id "${requestId.slice(0, 128)}" was already used by a different request (it created jobs/${job.id}); send a new request_id for a new job`,
    [{ field: 'request_id', description: `already used by a different request (jobs/${job.id})` }],
  );
}

function alreadyResting(job: { id: string; state: JobState }): NarrowtuneError {
  return new NarrowtuneError('failed_precondition', `job jobs/${job.id} is already ${job.state}`);
}

function checkStates(states: readonly string[], field: string): void {
  for (const s of states) if (!JOB_STATES.includes(s as JobState)) throw invalidArgument(field, `unknown job state ${JSON.stringify(s)}`);
}

function checkCount(value: number | undefined, field: string): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw invalidArgument(field, `must be a non-negative integer, got ${value}`);
  }
}

/** Who creates a job and what it is; tenant and creator are null on a server without authentication. */
export interface NewJob {
  requestId?: string | null;
  /** A digest of the request, so that a request id sent again with another request is refused (null: not checked). */
  requestHash?: string | null;
  tenant?: string | null;
  creatorKeyId?: string | null;
  spec: JobSpec;
}

export class JobStore {
  private readonly db: Database.Database;
  /** The API keys, in the same database. */
  readonly keys: KeyStore;
  private readonly now: () => number;
  private readonly listeners = new Map<string, Set<StoreListener>>();
  // Keyed by SQL text; the IN (?, ?, …) lists vary only with the number of states, so this stays small.
  private readonly statements = new Map<string, Database.Statement>();

  private constructor(db: Database.Database, options: JobStoreOptions) {
    this.db = db;
    this.now = options.now ?? Date.now;
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('foreign_keys = ON');
    migrate(db);
    this.keys = new KeyStore(db, this.now);
  }

  static open(dataDir: string, options: JobStoreOptions = {}): JobStore {
    mkdirSync(dataDir, { recursive: true });
    const db = new Database(join(dataDir, DB_FILE));
    try {
      // WAL lets StreamMetrics readers (even in another process) proceed while the runner appends.
      db.pragma('journal_mode = WAL');
      return new JobStore(db, options);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  static openInMemory(options: JobStoreOptions = {}): JobStore {
    return new JobStore(new Database(':memory:'), options);
  }

  close(): void {
    this.listeners.clear();
    this.statements.clear();
    if (this.db.open) this.db.close();
  }

  // ---- jobs ----

  /**
   * Creates a PENDING job, or returns the job its tenant's request id already made (created: false); the same
   * request id with a different request hash is ALREADY_EXISTS.
   */
  createJob(input: NewJob): { job: JobRecord; created: boolean } {
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
      for (let attempt = 1; attempt <= ID_ATTEMPTS; attempt++) {
        const id = newJobId();
        if (insert.run(id, tenant, input.creatorKeyId ?? null, requestId, requestHash, spec, this.now()).changes === 1) return { id, created: true };
        // Only reachable if another connection inserted the request id between our SELECT and INSERT.
        const existing = requestId === null ? undefined : this.requestRow(tenant, requestId, requestHash);
        if (existing) return { id: existing.id, created: false };
      }
      throw new NarrowtuneError('internal', `no unused job id after ${ID_ATTEMPTS} attempts`);
    });
    const job = this.getJob(result.id)!;
    if (result.created) this.emit(job.id, { kind: 'state', job });
    return { job, created: result.created };
  }

  /**
   * The job a tenant's request id made, or null; ALREADY_EXISTS when it was made by a different request. The
   * service asks before its capacity checks, so that a retry of an accepted request never reads as "queue full".
   */
  findRequest(tenant: string | null, requestId: string, requestHash: string | null): JobRecord | null {
    const r = this.requestRow(tenant, requestId, requestHash);
    return r ? this.toJobs([r])[0]! : null;
  }

  private requestRow(tenant: string | null, requestId: string, requestHash: string | null): JobRow | undefined {
    const r = this.row(`SELECT * FROM jobs WHERE coalesce(tenant, '') = ? AND request_id = ?`, tenant ?? '', requestId);
    // Jobs from before request hashes were stored cannot be compared: a retry of them is taken as the same request.
    if (r && requestHash !== null && r.request_hash !== null && r.request_hash !== requestHash) throw requestIdReused(requestId, r);
    return r;
  }

  getJob(id: string): JobRecord | null {
    const r = this.row('SELECT * FROM jobs WHERE id = ?', id);
    return r ? this.toJobs([r])[0]! : null;
  }

  /** Newest first; `tenant` limits the list to that tenant's jobs. */
  listJobs(opts: { pageSize?: number; pageToken?: string; states?: JobState[]; tenant?: string }): { jobs: JobRecord[]; nextPageToken: string } {
    const states = [...new Set(opts.states ?? [])].sort();
    checkStates(states, 'states');
    // Tokens of unfiltered lists keep their old form, so they stay valid across the upgrade.
    const filter = states.join(',') + (opts.tenant === undefined ? '' : `;tenant=${opts.tenant}`);
    const size = opts.pageSize ? Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(opts.pageSize))) : DEFAULT_PAGE_SIZE;
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

  jobsInStates(states: JobState[]): JobRecord[] {
    checkStates(states, 'states');
    if (states.length === 0) return [];
    const rows = this.stmt(`SELECT * FROM jobs WHERE state IN (${states.map(() => '?').join(', ')}) ORDER BY queue_order`).all(...states) as JobRow[];
    return this.toJobs(rows);
  }

  /** Jobs in these states; with `tenant`, only that tenant's. */
  countInStates(states: JobState[], tenant?: string): number {
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

  markRunning(id: string, totalSteps?: number): JobRecord {
    checkCount(totalSteps, 'total_steps');
    return this.transition(id, (r) => {
      if (r.state !== 'PENDING' && r.state !== 'RUNNING') throw alreadyResting(r);
      this.stmt(
        `UPDATE jobs SET state = 'RUNNING', start_time = coalesce(start_time, ?), total_steps = coalesce(?, total_steps) WHERE id = ?`,
      ).run(this.now(), totalSteps ?? null, id);
    });
  }

  updateProgress(id: string, p: { step?: number; totalSteps?: number; trainable?: string[] }): void {
    checkCount(p.step, 'step');
    checkCount(p.totalSteps, 'total_steps');
    this.write(() => {
      const r = this.requireRow(id);
      // A late progress report from a runner that lost a cancel race must not rewrite a finished job.
      if (isResting(r.state)) throw alreadyResting(r);
      this.stmt(
        `UPDATE jobs SET step = coalesce(?, step), total_steps = coalesce(?, total_steps), trainable = coalesce(?, trainable) WHERE id = ?`,
      ).run(
        p.step ?? null,
        p.totalSteps ?? null,
        p.trainable ? JSON.stringify(p.trainable) : null,
        id,
      );
    });
  }

  finish(id: string, state: RestingState, extra: { error?: JobError; outputPath?: string; result?: JobResult } = {}): JobRecord {
    if (!isResting(state)) throw invalidArgument('state', `finish needs a resting state, got ${state}`);
    return this.transition(id, (r) => {
      if (isResting(r.state)) throw alreadyResting(r);
      this.stmt(`UPDATE jobs SET state = ?, end_time = ?, error = ?, output_path = coalesce(?, output_path), result = ? WHERE id = ?`).run(
        state,
        this.now(),
        extra.error ? JSON.stringify(extra.error) : null,
        extra.outputPath ?? null,
        extra.result === undefined ? null : JSON.stringify(extra.result),
        id,
      );
    });
  }

  /** Cancels a PENDING job at once, or asks a RUNNING one to stop; the first request's key and time are kept. */
  requestCancel(id: string, by: string | null = null): JobRecord {
    return this.transition(id, (r) => {
      if (isResting(r.state)) throw alreadyResting(r);
      const now = this.now();
      const who = `cancel_requested_by = CASE WHEN cancel_requested = 1 THEN cancel_requested_by ELSE ? END, cancel_time = coalesce(cancel_time, ?)`;
      if (r.state === 'PENDING') {
        // Nothing is running it, so nobody else would ever finish it.
        this.stmt(`UPDATE jobs SET state = 'CANCELLED', ${who}, cancel_requested = 1, end_time = ? WHERE id = ?`).run(by, now, now, id);
      } else {
        this.stmt(`UPDATE jobs SET ${who}, cancel_requested = 1 WHERE id = ?`).run(by, now, id);
      }
    });
  }

  requeue(id: string): void {
    this.transition(id, (r) => {
      if (r.state === 'PENDING') return;
      if (r.state !== 'RUNNING') throw alreadyResting(r);
      this.stmt(`UPDATE jobs SET state = 'PENDING' WHERE id = ?`).run(id);
    });
  }

  addCheckpoint(jobId: string, c: { step: number; path: string; final: boolean }): void {
    checkCount(c.step, 'step');
    this.write(() => {
      this.requireRow(jobId);
      this.stmt(
        `INSERT INTO checkpoints (job_id, step, path, final, create_time) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path, final = excluded.final, create_time = excluded.create_time`,
      ).run(jobId, c.step, c.path, c.final ? 1 : 0, this.now());
    });
  }

  // ---- events ----

  appendEvent(jobId: string, e: JobEvent): MetricEvent {
    // The type has its own column; the payload keeps the event's own names (older rows use the same ones).
    const { type, ...payload } = e;
    const json = toJson(payload, 'payload');
    const event: MetricEvent = this.write(() => {
      const r = this.requireRow(jobId);
      // followEvents ends at "resting and nothing newer", so an event after the finish would never reach a follower.
      if (isResting(r.state)) throw alreadyResting(r);
      const sequence = this.lastSequence(jobId) + 1;
      const time = this.now();
      this.stmt('INSERT INTO events (job_id, sequence, time, type, payload) VALUES (?, ?, ?, ?, ?)').run(jobId, sequence, time, type, json);
      return { jobId, sequence, time, event: decodeJobEvent(type, JSON.parse(json)) };
    });
    this.emit(jobId, { kind: 'event', event });
    return event;
  }

  readEvents(jobId: string, afterSequence: number, limit?: number): MetricEvent[] {
    const rows = this.stmt('SELECT * FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?').all(
      jobId,
      afterSequence,
      limit === undefined ? -1 : Math.max(0, Math.floor(limit)), // SQLite: a negative LIMIT means none
    ) as EventRow[];
    return rows.map(toEvent);
  }

  lastSequence(jobId: string): number {
    const r = this.stmt('SELECT max(sequence) AS s FROM events WHERE job_id = ?').get(jobId) as { s: number | null };
    return r.s ?? 0;
  }

  // ---- notifications ----

  subscribe(jobId: string, listener: StoreListener): () => void {
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    return () => {
      const s = this.listeners.get(jobId);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.listeners.delete(jobId);
    };
  }

  // ---- internals ----

  private emit(jobId: string, n: StoreNotification): void {
    const set = this.listeners.get(jobId);
    if (!set) return;
    // Copy: a listener may unsubscribe (itself or another) while we iterate.
    for (const listener of [...set]) {
      try {
        listener(n);
      } catch (e) {
        // The write is already committed; failing the writer's call would make it retry or give up on a change that happened.
        process.emitWarning(`job store listener for jobs/${jobId} threw: ${(e as Error)?.stack ?? String(e)}`, 'NarrowtuneStoreWarning');
      }
    }
  }

  /** Runs a read-check-update on one job in a write transaction, then notifies with the job as committed. */
  private transition(id: string, change: (r: JobRow) => void): JobRecord {
    this.write(() => change(this.requireRow(id)));
    const job = this.getJob(id)!;
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
    if (!this.db.open) throw new NarrowtuneError('unavailable', 'the job store is closed');
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
    }));
  }
}
