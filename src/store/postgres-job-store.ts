// The shared job store: jobs, checkpoints, events, keys and leases in a PostgreSQL database that API replicas and
// workers on many machines use at once. Claims take rows with FOR UPDATE SKIP LOCKED, fenced writes check the
// lease inside their transaction, and every write NOTIFYs in its transaction, so other processes hear of it once
// it commits (one LISTEN connection per store; followEvents' polling covers a dropped one).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { decodeJobEvent, type JobError, type JobEvent, type JobResult, type JobSpec, type RestingState } from './job-events.js';
import { newJobId } from './job-id.js';
import {
  addListener,
  alreadyResting,
  checkCount,
  checkFence,
  checkLeaseMs,
  checkResting,
  checkStates,
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
import { PgListener } from './postgres-listener.js';
import { PostgresKeyStore } from './postgres-key-store.js';
import { migratePostgres } from './postgres-schema.js';

export const DEFAULT_POOL_SIZE = 10;
/** Every write announces itself here (per database). */
export const NOTIFY_CHANNEL = 'narrowtune_jobs';
// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; a bigger event is announced without its payload.
const MAX_NOTIFY_BYTES = 7900;
const CONNECT_TIMEOUT_MS = 10_000;
const QUERY_TIMEOUT_MS = 30_000;
// Our transactions take milliseconds. A process stopped inside one (SIGSTOP, a long GC pause, a partition) would
// hold its job's row lock, and with it claims (SKIP LOCKED passes the job over) and cancels (they wait) of that
// job: the server ends such a session after this long, which releases the lock and rolls the writes back.
const IDLE_IN_TRANSACTION_MS = 5000;
// Claims that respect tenantMaxRunning take this advisory lock (with the tenant's hash) while they count.
const TENANT_LOCK_CLASS = 0x6e74_636c; // "ntcl"
// Creates with queue limits take this advisory lock while they count and insert, so that concurrent StartTunes on
// any replica cannot all see room for one more job.
const PENDING_LOCK_KEY = 0x6e74_7071; // "ntpq"

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
  cancel_requested: boolean;
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
  final: boolean;
  create_time: number;
}

interface EventRow {
  job_id: string;
  sequence: number;
  time: number;
  type: string;
  payload: string;
}

/** What a NOTIFY carries: the writing store (o), the job (j), and for an event its row, payload left out when too big. */
type Notice = { o: string; j: string; k: 'state' } | { o: string; j: string; k: 'event'; q: number; t: number; y: string; p?: string };

export interface PostgresJobStoreOptions {
  /** Clock in ms since epoch; tests pin it. Leases compare times from every worker's clock: keep them in sync (NTP). */
  now?: () => number;
  /** Connections in the query pool (the LISTEN connection is one more). */
  poolSize?: number;
}

/**
 * The URL with its password (in the authority or a password= parameter) replaced by ***, for messages and logs. An
 * unescaped @ in a password makes the last @ the end of it: this may hide more than the password, never less.
 */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:).*@/i, '$1***@').replace(/([?&]password=)[^&#]*/gi, '$1***');
}

// BIGINT arrives as text, since it may exceed 2^53; ours are milliseconds, counters and steps, which the store's
// checks keep to safe integers.
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** A driver error as the store reports it: the server or network failing is 'unavailable', anything else 'internal'. */
function storeError(e: unknown, where: string): unknown {
  if (e instanceof NarrowtuneError) return e;
  const err = e as Error & { code?: string };
  const code = err?.code ?? '';
  const message = err?.message ?? String(e);
  // SQLSTATE 08: connection exceptions; 57P0x: the server shutting down or restarting; 53300: too many connections;
  // 25P03: the session sat in a transaction past IDLE_IN_TRANSACTION_MS (this process was stopped) and was ended.
  const down = CONNECTION_ERRORS.has(code) || /^08|^57P0|^53300$|^25P03$/.test(code) || /Connection terminated|timeout exceeded when trying to connect|Query read timeout/i.test(message);
  // The driver's error is not kept as the cause: its client and config would carry the URL into logs.
  return down
    ? new NarrowtuneError('unavailable', `the job database ${where} is unavailable: ${message}`)
    : new NarrowtuneError('internal', `the job database ${where} failed${code ? ` (${code})` : ''}: ${message}`);
}

/** PostgreSQL's text cannot hold U+0000 (JSON escapes it, so only plain text columns need this). */
function checkText(value: string, field: string): void {
  if (value.includes('\0')) throw invalidArgument(field, 'must not contain the NUL character (U+0000)');
}

function toEvent(r: EventRow): MetricEvent {
  return { jobId: r.job_id, sequence: r.sequence, time: r.time, event: decodeJobEvent(r.type, JSON.parse(r.payload)) };
}

export class PostgresJobStore implements JobStore {
  readonly keys: PostgresKeyStore;
  private readonly now: () => number;
  private readonly listeners = new Map<string, Set<StoreListener>>();
  /** Tells this store's own NOTIFYs apart: its subscribers heard of those writes directly. */
  private readonly origin = randomUUID();
  private readonly listener: PgListener;
  // Notifications from other processes are turned into records one at a time, so they reach subscribers in order.
  private deliveries: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly pool: pg.Pool,
    config: pg.ClientConfig,
    /** The database as errors name it (no password). */
    private readonly where: string,
    options: PostgresJobStoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.keys = new PostgresKeyStore((sql, params) => this.query(sql, params), this.now);
    this.listener = new PgListener(config, NOTIFY_CHANNEL, {
      onPayload: (p) => this.received(p),
      onReconnect: () => this.refreshSubscribed(),
      onError: (e) => process.emitWarning(`job database ${where}: LISTEN connection: ${e.message}; reconnecting`, 'NarrowtuneStoreWarning'),
    });
  }

  /** Connects, migrates (failed_precondition for a newer schema) and starts listening; 'unavailable' when it cannot. */
  static async open(url: string, options: PostgresJobStoreOptions = {}): Promise<PostgresJobStore> {
    const where = redactDatabaseUrl(url);
    const config: pg.ClientConfig = {
      connectionString: url,
      application_name: 'narrowtune',
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      // Finds a connection to a vanished host (partition) instead of waiting on it forever.
      keepAlive: true,
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
      // Bounds a query whose connection died unseen (a process stopped mid-query, a half-open socket): without it
      // the call, and the pool slot it holds, could wait forever.
      query_timeout: QUERY_TIMEOUT_MS,
    };
    const pool = new pg.Pool({ ...config, types: TYPES, max: options.poolSize ?? DEFAULT_POOL_SIZE });
    // An idle pooled connection that drops (server restart) is replaced on next use; without a listener it would crash the process.
    pool.on('error', (e) => process.emitWarning(`job database ${where}: idle connection dropped: ${e.message}`, 'NarrowtuneStoreWarning'));
    try {
      const client = await pool.connect();
      try {
        await migratePostgres(client, where);
      } finally {
        client.release();
      }
      const store = new PostgresJobStore(pool, config, where, options);
      await store.listener.start();
      return store;
    } catch (e) {
      await pool.end().catch(() => {});
      const err = storeError(e, where) as Error;
      // A driver's message may quote the URL it could not parse.
      if (url) err.message = err.message.split(url).join(where);
      throw err;
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.listeners.clear();
      await this.listener.close();
      await this.pool.end();
    })();
    return this.closing;
  }

  // ---- jobs ----

  async createJob(input: NewJob): Promise<{ job: JobRecord; created: boolean }> {
    const requestId = input.requestId || null; // proto3 sends '' for "not set"
    const requestHash = input.requestHash ?? null;
    const tenant = input.tenant ?? null;
    const spec = toJson(input.spec, 'spec');
    if (requestId !== null) checkText(requestId, 'request_id');
    const result = await this.tx(async (c) => {
      if (requestId !== null) {
        const existing = await this.requestRow(c, tenant, requestId, requestHash);
        if (existing) return { row: existing, created: false };
      }
      if (input.limits) {
        await c.query('SELECT pg_advisory_xact_lock($1)', [PENDING_LOCK_KEY]);
        const [n] = (
          await c.query<{ all: string; tenant: string }>(
            `SELECT count(*) AS all, count(*) FILTER (WHERE tenant = $1) AS tenant FROM jobs WHERE state = 'PENDING'`,
            [tenant],
          )
        ).rows;
        const full = pendingLimitBroken(input.limits, tenant, { all: Number(n!.all), tenant: Number(n!.tenant) });
        if (full) throw full;
      }
      for (let attempt = 1; attempt <= ID_ATTEMPTS; attempt++) {
        // No conflict target: the request id's unique index is on an expression; an id collision also lands here.
        // A concurrent insert of the same request id makes this wait for that transaction, then do nothing.
        const { rows } = await c.query<JobRow>(
          `INSERT INTO jobs (id, tenant, creator_key_id, request_id, request_hash, state, spec, create_time)
           VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7) ON CONFLICT DO NOTHING RETURNING *`,
          [newJobId(), tenant, input.creatorKeyId ?? null, requestId, requestHash, spec, this.now()],
        );
        if (rows[0]) {
          await this.notify(c, { o: this.origin, j: rows[0].id, k: 'state' });
          return { row: rows[0], created: true };
        }
        const existing = requestId === null ? undefined : await this.requestRow(c, tenant, requestId, requestHash);
        if (existing) return { row: existing, created: false };
      }
      throw new NarrowtuneError('internal', `no unused job id after ${ID_ATTEMPTS} attempts`);
    });
    const job = (await this.toJobs([result.row]))[0]!;
    if (result.created) this.emit(job.id, { kind: 'state', job });
    return { job, created: result.created };
  }

  async findRequest(tenant: string | null, requestId: string, requestHash: string | null): Promise<JobRecord | null> {
    checkText(requestId, 'request_id');
    const r = await this.requestRow(null, tenant, requestId, requestHash);
    return r ? (await this.toJobs([r]))[0]! : null;
  }

  private async requestRow(c: pg.PoolClient | null, tenant: string | null, requestId: string, requestHash: string | null): Promise<JobRow | undefined> {
    const sql = `SELECT * FROM jobs WHERE coalesce(tenant, '') = $1 AND request_id = $2`;
    const [r] = c ? (await c.query<JobRow>(sql, [tenant ?? '', requestId])).rows : await this.query<JobRow>(sql, [tenant ?? '', requestId]);
    // Jobs from before request hashes were stored cannot be compared: a retry of them is taken as the same request.
    if (r && requestHash !== null && r.request_hash !== null && r.request_hash !== requestHash) throw requestIdReused(requestId, r);
    return r;
  }

  async getJob(id: string): Promise<JobRecord | null> {
    const [r] = await this.query<JobRow>('SELECT * FROM jobs WHERE id = $1', [id]);
    return r ? (await this.toJobs([r]))[0]! : null;
  }

  async listJobs(opts: ListJobsOptions): Promise<{ jobs: JobRecord[]; nextPageToken: string }> {
    const states = listStates(opts.states);
    const filter = listFilter(states, opts.tenant);
    const size = pageSizeOf(opts.pageSize);
    const cursor = opts.pageToken ? decodePageToken(opts.pageToken, filter) : null;
    this.ensureOpen();
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => `$${params.push(v)}`;
    if (states.length > 0) where.push(`state = ANY(${p(states)}::text[])`);
    if (opts.tenant !== undefined) where.push(`tenant = ${p(opts.tenant)}`);
    if (cursor) where.push(`(create_time, queue_order) < (${p(cursor.createTime)}::bigint, ${p(cursor.queueOrder)}::bigint)`);
    // One extra row tells whether another page exists, so the last page never returns an empty-but-tokened follow-up.
    const rows = await this.query<JobRow>(
      `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY create_time DESC, queue_order DESC LIMIT ${p(size + 1)}`,
      params,
    );
    const more = rows.length > size;
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      jobs: await this.toJobs(page),
      nextPageToken: more && last ? encodePageToken({ createTime: last.create_time, queueOrder: last.queue_order, filter }) : '',
    };
  }

  async jobsInStates(states: JobState[]): Promise<JobRecord[]> {
    checkStates(states, 'states');
    if (states.length === 0) return [];
    return this.toJobs(await this.query<JobRow>('SELECT * FROM jobs WHERE state = ANY($1::text[]) ORDER BY queue_order', [states]));
  }

  async countInStates(states: JobState[], tenant?: string): Promise<number> {
    checkStates(states, 'states');
    if (states.length === 0) return 0;
    const [r] =
      tenant === undefined
        ? await this.query<{ n: number }>('SELECT count(*) AS n FROM jobs WHERE state = ANY($1::text[])', [states])
        : await this.query<{ n: number }>('SELECT count(*) AS n FROM jobs WHERE state = ANY($1::text[]) AND tenant = $2', [states, tenant]);
    return r!.n;
  }

  async requestCancel(id: string, by: string | null = null): Promise<JobRecord> {
    const { row, event } = await this.tx(async (c) => {
      const r = await this.lockRow(c, id);
      if (isResting(r.state)) throw alreadyResting(r);
      const now = this.now();
      const who = `cancel_requested_by = CASE WHEN cancel_requested THEN cancel_requested_by ELSE $2 END, cancel_time = coalesce(cancel_time, $3)`;
      let event: MetricEvent | null = null;
      let updated: JobRow;
      if (r.state !== 'PENDING') {
        [updated] = (await c.query<JobRow>(`UPDATE jobs SET ${who}, cancel_requested = true WHERE id = $1 RETURNING *`, [id, by, now])).rows as [JobRow];
      } else {
        // Nothing is running it, so nobody else would ever finish it, nor write its last event.
        [updated] = (
          await c.query<JobRow>(`UPDATE jobs SET state = 'CANCELLED', ${who}, cancel_requested = true, end_time = $3 WHERE id = $1 RETURNING *`, [id, by, now])
        ).rows as [JobRow];
        event = await this.insertEvent(c, id, { type: 'finished', state: 'CANCELLED' });
      }
      await this.notify(c, { o: this.origin, j: id, k: 'state' });
      return { row: updated, event };
    });
    if (event) this.emit(id, { kind: 'event', event });
    const job = (await this.toJobs([row]))[0]!;
    this.emit(id, { kind: 'state', job });
    return job;
  }

  // ---- leases ----

  async claimJob(opts: ClaimOptions): Promise<Lease | null> {
    checkLeaseMs(opts.leaseMs);
    checkCount(opts.tenantMaxRunning, 'tenant_max_running');
    const limit = opts.tenantMaxRunning ?? null;
    const row = await this.tx(async (c) => {
      const now = this.now();
      // Tenants passed over in this claim: at their limit, or being counted by another claim right now.
      const passed: string[] = [];
      for (;;) {
        // SKIP LOCKED: a job another claim is taking is not waited for, so concurrent claims never get the same job.
        const [pick] = (
          await c.query<{ id: string; tenant: string | null }>(
            `SELECT id, tenant FROM jobs
             WHERE (state = 'PENDING' OR (state = 'RUNNING' AND lease_expires <= $1)) AND (tenant IS NULL OR tenant <> ALL($2::text[]))
             ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED`,
            [now, passed],
          )
        ).rows;
        if (!pick) return null;
        if (limit !== null && pick.tenant !== null && !(await this.tenantHasRoom(c, pick.tenant, limit, now))) {
          passed.push(pick.tenant);
          continue;
        }
        const [claimed] = (
          await c.query<JobRow>(
            `UPDATE jobs SET state = 'RUNNING', lease_owner = $2, lease_expires = $3, lease_epoch = lease_epoch + 1, start_time = coalesce(start_time, $4)
             WHERE id = $1 RETURNING *`,
            [pick.id, opts.workerId, now + opts.leaseMs, now],
          )
        ).rows;
        await this.notify(c, { o: this.origin, j: pick.id, k: 'state' });
        return claimed!;
      }
    });
    if (!row) return null;
    const job = (await this.toJobs([row]))[0]!;
    this.emit(job.id, { kind: 'state', job });
    return { jobId: job.id, workerId: opts.workerId, epoch: job.leaseEpoch, job };
  }

  /**
   * Whether the tenant has fewer than `limit` live leases. Two claims of one tenant's jobs must see each other, so
   * each counts under the tenant's lock, which it holds until commit. It only tries the lock: waiting could deadlock
   * with a claim that holds another tenant's; a tenant whose lock is busy is passed over this time.
   */
  private async tenantHasRoom(c: pg.PoolClient, tenant: string, limit: number, now: number): Promise<boolean> {
    const [lock] = (await c.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS ok', [TENANT_LOCK_CLASS, tenant])).rows;
    if (!lock!.ok) return false;
    const [r] = (
      await c.query<{ n: number }>(`SELECT count(*) AS n FROM jobs WHERE tenant = $1 AND state = 'RUNNING' AND lease_expires > $2`, [tenant, now])
    ).rows;
    return r!.n < limit;
  }

  async renewLease(lease: Lease, leaseMs: number): Promise<boolean> {
    checkLeaseMs(leaseMs);
    const rows = await this.query(
      `UPDATE jobs SET lease_expires = $1 WHERE id = $2 AND state = 'RUNNING' AND lease_epoch = $3 AND lease_owner = $4 RETURNING id`,
      [this.now() + leaseMs, lease.jobId, lease.epoch, lease.workerId],
    );
    return rows.length === 1;
  }

  async releaseLease(lease: Lease): Promise<boolean> {
    const row = await this.tx(async (c) => {
      const [r] = (
        await c.query<JobRow>(
          `UPDATE jobs SET state = 'PENDING', lease_owner = NULL, lease_expires = NULL
           WHERE id = $1 AND state = 'RUNNING' AND lease_epoch = $2 AND lease_owner = $3 RETURNING *`,
          [lease.jobId, lease.epoch, lease.workerId],
        )
      ).rows;
      if (r) await this.notify(c, { o: this.origin, j: lease.jobId, k: 'state' });
      return r;
    });
    if (!row) return false;
    this.emit(lease.jobId, { kind: 'state', job: (await this.toJobs([row]))[0]! });
    return true;
  }

  async expireLease(jobId: string, epoch: number): Promise<boolean> {
    const rows = await this.query(`UPDATE jobs SET lease_expires = $1 WHERE id = $2 AND state = 'RUNNING' AND lease_epoch = $3 RETURNING id`, [
      this.now(),
      jobId,
      epoch,
    ]);
    return rows.length === 1;
  }

  // ---- fenced writes ----

  async updateProgress(lease: Lease, p: ProgressUpdate): Promise<void> {
    checkCount(p.step, 'step');
    checkCount(p.totalSteps, 'total_steps');
    await this.tx(async (c) => {
      await this.fence(c, lease);
      await c.query(`UPDATE jobs SET step = coalesce($1, step), total_steps = coalesce($2, total_steps), trainable = coalesce($3, trainable) WHERE id = $4`, [
        p.step ?? null,
        p.totalSteps ?? null,
        p.trainable ? JSON.stringify(p.trainable) : null,
        lease.jobId,
      ]);
    });
  }

  async addCheckpoint(lease: Lease, c: { step: number; path: string; final: boolean }): Promise<void> {
    checkCount(c.step, 'step');
    await this.tx(async (client) => {
      await this.fence(client, lease);
      await client.query(
        `INSERT INTO checkpoints (job_id, step, path, final, create_time) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path, final = excluded.final, create_time = excluded.create_time`,
        [lease.jobId, c.step, c.path, c.final, this.now()],
      );
    });
  }

  async appendEvent(lease: Lease, e: JobEvent): Promise<MetricEvent> {
    toJson(e, 'payload'); // refused before a transaction starts
    const event = await this.tx(async (c) => {
      await this.fence(c, lease);
      return this.insertEvent(c, lease.jobId, e);
    });
    this.emit(lease.jobId, { kind: 'event', event });
    return event;
  }

  async finish(lease: Lease, state: RestingState, extra: FinishExtra = {}): Promise<JobRecord> {
    checkResting(state);
    const row = await this.tx(async (c) => {
      await this.fence(c, lease);
      const [r] = (
        await c.query<JobRow>(
          `UPDATE jobs SET state = $1, end_time = $2, error = $3, output_path = coalesce($4, output_path), result = $5, lease_owner = NULL, lease_expires = NULL
           WHERE id = $6 RETURNING *`,
          [
            state,
            this.now(),
            extra.error ? JSON.stringify(extra.error satisfies JobError) : null,
            extra.outputPath ?? null,
            extra.result === undefined ? null : JSON.stringify(extra.result satisfies JobResult),
            lease.jobId,
          ],
        )
      ).rows;
      await this.notify(c, { o: this.origin, j: lease.jobId, k: 'state' });
      return r!;
    });
    const job = (await this.toJobs([row]))[0]!;
    this.emit(job.id, { kind: 'state', job });
    return job;
  }

  // ---- events ----

  async readEvents(jobId: string, afterSequence: number, limit?: number): Promise<MetricEvent[]> {
    const rows = await this.query<EventRow>('SELECT * FROM events WHERE job_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3', [
      jobId,
      Math.max(-1, Math.floor(afterSequence)),
      limit === undefined ? null : Math.max(0, Math.floor(limit)), // LIMIT NULL: all
    ]);
    return rows.map(toEvent);
  }

  async lastSequence(jobId: string): Promise<number> {
    const [r] = await this.query<{ s: number }>('SELECT coalesce(max(sequence), 0) AS s FROM events WHERE job_id = $1', [jobId]);
    return r!.s;
  }

  // ---- notifications ----

  subscribe(jobId: string, listener: StoreListener): () => void {
    return addListener(this.listeners, jobId, listener);
  }

  private emit(jobId: string, n: StoreNotification): void {
    notifyListeners(this.listeners, jobId, n);
  }

  /** Inside a write transaction: announces the write to every process listening, at commit. */
  private async notify(c: pg.PoolClient, n: Notice): Promise<void> {
    let payload = JSON.stringify(n);
    if (Buffer.byteLength(payload) >= MAX_NOTIFY_BYTES && n.k === 'event') payload = JSON.stringify({ ...n, p: undefined });
    await c.query('SELECT pg_notify($1, $2)', [NOTIFY_CHANNEL, payload]);
  }

  /** A NOTIFY from any store on this database, this one included. */
  private received(payload: string): void {
    let n: Notice;
    try {
      n = JSON.parse(payload) as Notice;
    } catch {
      return; // not one of ours
    }
    if (n.o === this.origin || !this.listeners.has(n.j)) return;
    this.deliver(async () => {
      if (n.k === 'state') {
        const job = await this.getJob(n.j);
        if (job) this.emit(n.j, { kind: 'state', job });
        return;
      }
      const event =
        n.p === undefined
          ? (await this.readEvents(n.j, n.q - 1, 1))[0]
          : { jobId: n.j, sequence: n.q, time: n.t, event: decodeJobEvent(n.y, JSON.parse(n.p)) };
      if (event) this.emit(n.j, { kind: 'event', event });
    });
  }

  /** After the LISTEN connection came back: whatever it missed is unknown, so every subscriber hears "look again". */
  private refreshSubscribed(): void {
    for (const id of this.listeners.keys()) {
      this.deliver(async () => {
        const job = await this.getJob(id);
        if (job) this.emit(id, { kind: 'state', job });
      });
    }
  }

  private deliver(fn: () => Promise<void>): void {
    this.deliveries = this.deliveries.then(fn).catch((e: unknown) => {
      if (!this.closing) process.emitWarning(`job database ${this.where}: a notification could not be read: ${(e as Error).message}`, 'NarrowtuneStoreWarning');
    });
  }

  // ---- internals ----

  /** Inside a write transaction: appends the job's next event; the caller holds the job's row lock, so sequences stay contiguous. */
  private async insertEvent(c: pg.PoolClient, jobId: string, e: JobEvent): Promise<MetricEvent> {
    // The type has its own column; the payload keeps the event's own names.
    const { type, ...payload } = e;
    const json = toJson(payload, 'payload');
    const time = this.now();
    const [r] = (
      await c.query<{ sequence: number }>(
        `INSERT INTO events (job_id, sequence, time, type, payload)
         VALUES ($1, (SELECT coalesce(max(sequence), 0) + 1 FROM events WHERE job_id = $1), $2, $3, $4) RETURNING sequence`,
        [jobId, time, type, json],
      )
    ).rows;
    const sequence = r!.sequence;
    await this.notify(c, { o: this.origin, j: jobId, k: 'event', q: sequence, t: time, y: type, p: json });
    return { jobId, sequence, time, event: decodeJobEvent(type, JSON.parse(json)) };
  }

  /** Inside a write transaction: locks the job's row until commit; not_found when there is none. */
  private async lockRow(c: pg.PoolClient, id: string): Promise<JobRow> {
    const [r] = (await c.query<JobRow>('SELECT * FROM jobs WHERE id = $1 FOR UPDATE', [id])).rows;
    if (!r) throw jobNotFound(id);
    return r;
  }

  /** Inside a write transaction: the fenced writes' check (see JobStore), holding the row so no claim can slip in. */
  private async fence(c: pg.PoolClient, lease: Lease): Promise<void> {
    checkFence(await this.lockRow(c, lease.jobId), lease);
  }

  private ensureOpen(): void {
    if (this.closing) throw storeClosed();
  }

  private async query<R>(sql: string, params: unknown[]): Promise<R[]> {
    this.ensureOpen();
    try {
      return (await this.pool.query(sql, params)).rows as R[];
    } catch (e) {
      throw this.closing ? storeClosed() : storeError(e, this.where);
    }
  }

  /** Runs `fn` in one transaction on one pooled connection; any throw rolls it back. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    this.ensureOpen();
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (e) {
      throw this.closing ? storeClosed() : storeError(e, this.where);
    }
    let broken: Error | undefined;
    // The pool listens for errors on idle clients only: the server ending this session between our queries (a
    // restart, pg_terminate_backend) would be an unhandled 'error' event that takes the whole process down.
    const onError = (e: Error) => (broken = e);
    c.on('error', onError);
    try {
      await c.query('BEGIN');
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (e) {
      await c.query('ROLLBACK').catch((rollbackError: Error) => {
        broken = rollbackError; // the connection is gone: drop it from the pool
      });
      throw storeError(e, this.where);
    } finally {
      c.removeListener('error', onError);
      c.release(broken);
    }
  }

  private async toJobs(rows: JobRow[]): Promise<JobRecord[]> {
    if (rows.length === 0) return [];
    const cps = await this.query<CheckpointRow>('SELECT * FROM checkpoints WHERE job_id = ANY($1::text[]) ORDER BY job_id, step', [rows.map((r) => r.id)]);
    const byJob = new Map<string, CheckpointRecord[]>();
    for (const c of cps) {
      let list = byJob.get(c.job_id);
      if (!list) byJob.set(c.job_id, (list = []));
      list.push({ step: c.step, path: c.path, final: c.final, createTime: c.create_time });
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
      cancelRequested: r.cancel_requested,
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
