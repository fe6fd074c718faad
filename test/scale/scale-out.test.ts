// The scale-out topology on one machine, each part its own process: PostgreSQL, two API replicas
// (`serve --max-concurrent-jobs 0`) and two `narrowtune worker`s sharing one --data-dir. A worker killed with -9
// mid-job and a worker paused past its lease: every job succeeds with the weights of an uninterrupted run, streams
// from either replica are the same and gap-free, no job trains in two places at once, and the paused worker's
// writes after it lost its lease are refused.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { type TuneJob, TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { attemptDir } from '../../src/runner/job-runner.js';
import { startServer } from '../../src/service/server.js';
import type { JobRecord, JobStore, MetricEvent } from '../../src/store/job-store.js';
import { PostgresJobStore } from '../../src/store/postgres-job-store.js';
import { startPostgres, type TestPostgres } from '../support/postgres.js';
import { needs } from '../support/system-tools.js';
import { connect, type TestClient, waitFor } from '../service/client.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
// Long enough that a kill at step 3 lands mid-job on a loaded machine (at 40 a CI run once saw the job finish
// between two polls); every step checkpoints, so a resume may start anywhere.
const STEPS = 80;
const LEASE_SECONDS = 2;
const POLL_MS = 100;
const QUEUE = 4;

interface Proc {
  proc: ChildProcess;
  pid: number;
  /** stderr so far, line by line (workers: pino JSON lines and a few plain ones). */
  lines: string[];
  exited: Promise<number | null>;
}

const procs: Proc[] = [];

/** A `narrowtune` process; resolves with the first match of `ready` on its stderr. */
function cli(args: string[], ready: RegExp): Promise<Proc & { match: RegExpExecArray }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: string[] = [];
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const p: Proc = { proc, pid: proc.pid!, lines, exited };
  procs.push(p);
  return new Promise((resolve, reject) => {
    let partial = '';
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        const match = ready.exec(line);
        if (match) resolve({ ...p, match });
      }
    });
    proc.on('exit', (code) => reject(new Error(`narrowtune ${args[0]} exited with ${code}:\n${lines.join('\n')}`)));
  });
}

/** The worker's JSON log lines whose message starts with `msg`. */
function logged(w: Proc, msg: string): Record<string, unknown>[] {
  return w.lines.flatMap((l) => {
    if (!l.startsWith('{')) return [];
    const o = JSON.parse(l) as Record<string, unknown>;
    return String(o.msg).startsWith(msg) ? [o] : [];
  });
}

const stepsOf = (events: MetricEvent[]) => events.flatMap((e) => (e.event.type === 'step' ? [e.event.step] : []));

/**
 * The job's events cut at each 'started' (one piece per attempt). Within an attempt the steps run on from its
 * resume point without a gap or a repeat, and each attempt resumes at or before where the previous one got to: had
 * two workers trained the job at once, or a stale worker written after losing its lease, their steps would
 * interleave and break this.
 */
function attemptsOf(events: MetricEvent[]): { resumedFrom: number; steps: number[]; from: number; to: number }[] {
  const starts = events.flatMap((e, i) => (e.event.type === 'started' ? [i] : []));
  expect(starts[0]).toBe(0);
  return starts.map((s, k) => {
    const piece = events.slice(s, starts[k + 1] ?? events.length);
    const started = piece[0]!.event;
    const resumedFrom = started.type === 'started' ? started.resumedFromStep : -1;
    const steps = stepsOf(piece);
    expect(steps).toEqual(Array.from({ length: steps.length }, (_, i) => resumedFrom + 1 + i));
    return { resumedFrom, steps, from: piece[0]!.time, to: piece.at(-1)!.time };
  });
}

function checkNoOverlap(job: JobRecord, events: MetricEvent[], dataDir: string): void {
  const attempts = attemptsOf(events);
  expect(attempts).toHaveLength(job.leaseEpoch);
  for (let k = 1; k < attempts.length; k++) {
    const [prev, next] = [attempts[k - 1]!, attempts[k]!];
    expect(next.from).toBeGreaterThanOrEqual(prev.to);
    expect(next.resumedFrom).toBeLessThanOrEqual(prev.steps.at(-1) ?? prev.resumedFrom);
    // It resumed from a checkpoint the previous attempt recorded, in that attempt's own directory.
    const from = job.checkpoints.find((c) => c.step === next.resumedFrom && !c.final);
    if (next.resumedFrom > 0) expect(from?.path.startsWith(attemptDir(dataDir, job.id, k) + sep)).toBe(true);
  }
  expect(attempts.at(-1)!.steps.at(-1)).toBe(STEPS);
  expect(events.at(-1)!.event).toMatchObject({ type: 'finished', state: 'SUCCEEDED' });
  expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
}

let dir: string;
let shared: string;
let base: string;
let data: string;
let pg: TestPostgres | null = null;
let store: JobStore | null = null;
const clients: TestClient[] = [];

beforeAll(async () => {
  dir = await tempDir('nt-scale-');
  shared = join(dir, 'shared');
  base = await tinyModel(dir, TINY_QWEN2);
  data = await repeatData(dir, 32);
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of procs) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await store?.close();
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

const request = (requestId: string, steps = STEPS) => ({
  requestId,
  baseModel: { source: { $case: 'path' as const, value: base } },
  trainingData: data,
  hyperparameters: { steps, learningRate: 1e-2, batchSize: 4, gradAccum: 1, seqLen: 32, checkpointEvery: 1 },
});

/** The same request through one process with the SQLite store: the weights every job must end with. */
async function reference(): Promise<Buffer> {
  const server = await startServer({ port: 0, dataDir: join(dir, 'reference'), modelRoots: [dir], dataRoots: [dir] });
  const client = connect(server.port);
  try {
    const job = await client.startTune(request('reference'));
    await client.stream(job.name);
    const done = await client.getJob(job.name);
    expect(done.state).toBe(TuneJob_State.SUCCEEDED);
    return await readFile(join(done.outputPath, 'model.safetensors'));
  } finally {
    client.close();
    await server.shutdown();
  }
}

const worker = (url: string) =>
  cli(['worker', '--database-url', url, '--data-dir', shared, '--lease-seconds', String(LEASE_SECONDS), '--poll-ms', String(POLL_MS)], /^narrowtune worker (\S+) training/);
const replica = (url: string) =>
  cli(['serve', '--port', '0', '--database-url', url, '--data-dir', shared, '--max-concurrent-jobs', '0', '--model-root', dir, '--data-root', dir, '--log-level', 'warn'], /serving on .*:(\d+)/);

/** A check that counts a store error (a connection being replaced) as "not yet". */
const tolerant =
  <T>(fn: () => Promise<T>) =>
  async (): Promise<T | null> => {
    try {
      return await fn();
    } catch {
      return null;
    }
  };
const idOf = (job: TuneJob) => job.name.replace(/^jobs\//, '');
const pidOf = (owner: string | null) => Number(owner?.split('/').at(-2)); // host/pidns/pid/nonce

describe('scale-out on PostgreSQL', needs('postgres'), () => {
  it('2 API replicas, 2 workers: kill -9 and SIGSTOP a worker mid-job; every job succeeds, once, with the same weights', async () => {
    const t0 = performance.now();
    // What each process said, and where each job stands, when something fails: a timeout alone says nothing.
    onTestFailed(async () => {
      for (const p of procs) process.stderr.write(`--- pid ${p.pid} (${p.proc.spawnargs.slice(3, 4).join(' ')}):\n${p.lines.slice(-40).join('\n')}\n`);
      for (const j of (await store?.jobsInStates(['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'])) ?? []) {
        process.stderr.write(`job ${j.id}: ${j.state} step ${j.step}/${j.totalSteps} epoch ${j.leaseEpoch} owner ${j.leaseOwner} error ${j.error?.message ?? ''}\n`);
      }
      const sessions = await pg?.admin(`SELECT pid, application_name, state, xact_start, wait_event_type, wait_event, left(query, 120) AS query FROM pg_stat_activity WHERE datname IS NOT NULL`);
      for (const r of sessions?.rows ?? []) process.stderr.write(`session ${JSON.stringify(r)}\n`);
    });
    pg = await startPostgres();
    const url = await pg.createDatabase();
    // Migrates the database before four processes race to.
    store = await PostgresJobStore.open(url);
    const referenceWeights = reference();
    const [a, b, w1, w2] = await Promise.all([replica(url), replica(url), worker(url), worker(url)]);
    const workers = [w1, w2];
    const [ra, rb] = [connect(Number(a.match[1])), connect(Number(b.match[1]))];
    clients.push(ra, rb);

    // A queue through replica A; the same request id through replica B is the same job.
    const jobs: TuneJob[] = [];
    for (let i = 0; i < QUEUE; i++) jobs.push(await ra.startTune(request(`scale-${i}`)));
    expect((await rb.startTune(request('scale-0'))).name).toBe(jobs[0]!.name);

    // Replica B follows job 0 live from the start, through the kill and the resume.
    const first = jobs[0]!;
    const streamedOnB = rb.stream(first.name);
    await waitFor(async () => (await store!.getJob(idOf(first)))!.step >= 3, 60_000, 10);
    const holder = (await store.getJob(idOf(first)))!;
    expect(holder.state).toBe('RUNNING');
    const victim = workers.find((w) => w.pid === pidOf(holder.leaseOwner))!;
    expect(victim).toBeDefined();
    victim.proc.kill('SIGKILL');
    await victim.exited;
    const killedAt = Date.now();
    // Two workers again: a replacement starts while the job waits out the dead worker's lease.
    const w3 = await worker(url);
    workers.splice(workers.indexOf(victim), 1, w3);

    const done = await Promise.all(jobs.map((j) => waitFor(async () => ((await ra.getJob(j.name)).state === TuneJob_State.SUCCEEDED ? ra.getJob(j.name) : null), 90_000)));
    const firstEvents = await streamedOnB;
    const resumed = (await store.getJob(idOf(first)))!;
    expect(resumed.leaseEpoch).toBe(2);
    const second = (await store.readEvents(resumed.id, 0)).filter((e) => e.event.type === 'started')[1]!;
    // Begun after the kill. (Here a worker on the same host expires a dead local worker's leases when it starts; on
    // another machine the job would wait out --lease-seconds.)
    expect(second.time).toBeGreaterThanOrEqual(killedAt - 50);

    // Job 0's stream, live from replica B and afterwards from replica A: the same events, 1..n without a gap.
    const fromA = await ra.stream(first.name);
    expect(firstEvents.map((e) => e.sequence)).toEqual(firstEvents.map((_, i) => i + 1));
    expect(firstEvents).toEqual(fromA);
    expect(fromA.at(-1)?.event?.$case).toBe('finished');

    // Every job: trained by one worker at a time, to the end, with the weights of the uninterrupted reference run.
    const expected = await referenceWeights;
    for (const job of done) {
      const record = (await store.getJob(idOf(job)))!;
      checkNoOverlap(record, await store.readEvents(record.id, 0), shared);
      expect(relative(attemptDir(shared, record.id, record.leaseEpoch), job.outputPath).startsWith('..')).toBe(false);
      expect((await readFile(join(job.outputPath, 'model.safetensors'))).equals(expected)).toBe(true);
    }
    const t1 = performance.now();

    // A worker paused past its lease: the other takes the job over; when the paused one wakes, its trainer (which
    // kept running) has events and checkpoints to report, and every write of them is refused.
    const paused = await rb.startTune(request('paused'));
    const pausedId = idOf(paused);
    await waitFor(async () => (await store!.getJob(pausedId))!.step >= 3, 60_000);
    const before = (await store.getJob(pausedId))!;
    const sleeper = workers.find((w) => w.pid === pidOf(before.leaseOwner))!;
    const awake = workers.find((w) => w !== sleeper)!;
    sleeper.proc.kill('SIGSTOP');
    // Taken over once the lease expired, and the new attempt has started (so the old one is behind it).
    await waitFor(async () => {
      const j = (await store!.getJob(pausedId))!;
      return j.leaseEpoch === before.leaseEpoch + 1 && (await store!.readEvents(pausedId, 0)).filter((e) => e.event.type === 'started').length === 2;
    }, 30_000);
    expect(pidOf((await store.getJob(pausedId))!.leaseOwner)).toBe(awake.pid);
    sleeper.proc.kill('SIGCONT');
    await waitFor(async () => (await store!.getJob(pausedId))!.state === 'SUCCEEDED', 60_000);
    await waitFor(async () => logged(sleeper, 'job lease lost').some((l) => l.job === pausedId), 10_000);

    const job = (await store.getJob(pausedId))!;
    expect(job.leaseEpoch).toBe(before.leaseEpoch + 1);
    const events = await store.readEvents(pausedId, 0);
    checkNoOverlap(job, events, shared);
    const [, again] = attemptsOf(events);
    const resumedAt = events.filter((e) => e.event.type === 'started')[1]!.time;
    // What the store holds of the paused attempt ends where the new one resumed: nothing it reported after its
    // lease was lost was recorded, though its trainer wrote more checkpoints into its own directory meanwhile.
    const staleDir = attemptDir(shared, pausedId, before.leaseEpoch) + sep;
    const stale = job.checkpoints.filter((c) => c.path.startsWith(staleDir));
    expect(Math.max(...stale.map((c) => c.step))).toBe(again!.resumedFrom);
    expect(stale.every((c) => c.createTime <= resumedAt)).toBe(true);
    expect(job.checkpoints.filter((c) => !c.path.startsWith(staleDir)).every((c) => c.path.startsWith(attemptDir(shared, pausedId, job.leaseEpoch) + sep))).toBe(true);
    expect(job.outputPath!.startsWith(attemptDir(shared, pausedId, job.leaseEpoch) + sep)).toBe(true);
    expect((await readdir(join(shared, 'jobs', pausedId))).sort()).toEqual([`attempt-${before.leaseEpoch}`, `attempt-${job.leaseEpoch}`]);
    expect((await readFile(join(job.outputPath!, 'model.safetensors'))).equals(expected)).toBe(true);
    const t2 = performance.now();

    // SIGTERM: the worker checkpoints, releases the lease and exits 0; the other worker continues at once (well
    // within the lease), from where it stopped. Then every database session is dropped, and a cancel sent to
    // replica A reaches the worker within seconds.
    const long = await rb.startTune(request('long', 100_000));
    const longId = idOf(long);
    const longOnA = ra.stream(long.name);
    await waitFor(async () => (await store!.getJob(longId))!.step >= 2, 60_000);

    const longOwner = pidOf((await store.getJob(longId))!.leaseOwner);
    const termed = workers.find((w) => w.pid === longOwner)!;
    const other = workers.find((w) => w !== termed)!;
    termed.proc.kill('SIGTERM');
    expect(await termed.exited).toBe(0);
    const exitedAt = Date.now();
    // Released before it exited: nobody holds the job (or the other worker already does).
    expect(pidOf((await store.getJob(longId))!.leaseOwner)).not.toBe(termed.pid);
    await waitFor(async () => (await store!.getJob(longId))!.leaseEpoch === 2, 10_000, 10);
    const reclaimMs = Date.now() - exitedAt;
    expect(reclaimMs).toBeLessThan(LEASE_SECONDS * 1000);
    const [, afterTerm] = await waitFor(async () => {
      const started = (await store!.readEvents(longId, 0)).filter((e) => e.event.type === 'started');
      return started.length === 2 && started;
    }, 30_000);
    const termedAt = (await store.getJob(longId))!;
    expect(pidOf(termedAt.leaseOwner)).toBe(other.pid);
    expect(logged(termed, 'job released').some((l) => l.job === longId)).toBe(true);
    const lastBeforeTerm = Math.max(...stepsOf((await store.readEvents(longId, 0)).filter((e) => e.sequence < afterTerm!.sequence)));
    expect(afterTerm!.event).toMatchObject({ type: 'started', resumedFromStep: lastBeforeTerm });

    // Every process's database connections dropped at once (what a database restart does to them): pools reconnect,
    // the replicas' LISTEN connections come back, and the job trains on.
    const dropped = await pg.admin<{ n: string }>(`SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = 'narrowtune'`);
    expect(Number(dropped.rows[0]!.n)).toBeGreaterThan(QUEUE);
    const stepAtDrop = (await tolerant(() => store!.getJob(longId))())?.step ?? 0;
    await waitFor(tolerant(async () => (await store!.getJob(longId))!.step >= stepAtDrop + 3), 30_000);

    const asked = Date.now();
    await ra.cancel(long.name);
    await waitFor(async () => ((await rb.getJob(long.name)).state === TuneJob_State.CANCELLED ? true : null), 10_000);
    const cancelMs = Date.now() - asked;
    expect(cancelMs).toBeLessThan(5000);
    // Replica A followed it all: the dropped connections, the hand-over and the cancel, without a gap.
    const followed = await longOnA;
    expect(followed.map((e) => e.sequence)).toEqual(followed.map((_, i) => i + 1));
    expect(followed.length).toBe(await store.lastSequence(longId));
    expect(followed.at(-1)?.event).toMatchObject({ $case: 'finished', value: { state: TuneJob_State.CANCELLED } });

    // Every attempt of every job was started by exactly one worker (the replicas train nothing).
    for (const j of await store.jobsInStates(['SUCCEEDED', 'CANCELLED'])) {
      const starts = procs.flatMap((p) => logged(p, 'job started').filter((l) => l.job === j.id).map((l) => l.epoch));
      expect(starts.sort()).toEqual(Array.from({ length: j.leaseEpoch }, (_, i) => i + 1));
    }
    expect(other.proc.exitCode).toBeNull();
    process.stderr.write(
      `scale-out: kill phase ${((t1 - t0) / 1000).toFixed(1)} s, pause phase ${((t2 - t1) / 1000).toFixed(1)} s, ` +
        `claimed again ${reclaimMs} ms after the SIGTERMed worker exited, cancel reached the worker in ${cancelMs} ms\n`,
    );
  }, 240_000);
});

describe('narrowtune worker', () => {
  it('answers /healthz while its store does, and exits 0 on SIGTERM (SQLite in --data-dir without a database URL)', async () => {
    const w = await cli(['worker', '--data-dir', join(dir, 'health'), '--health-port', '0'], /^health on (\S+)/);
    const res = await fetch(w.match[1]!);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', running: 0, worker: expect.stringMatching(/\/\d+\/[0-9a-f]+$/) });
    expect(w.lines.join('\n')).toContain(`from SQLite ${join(dir, 'health')}/narrowtune.db`);
    w.proc.kill('SIGTERM');
    expect(await w.exited).toBe(0);
  });

  it('names its database without the password, also when it cannot connect', async () => {
    const secret = 'hunter2-not-logged';
    const p = cli(['worker', '--database-url', `postgresql://nt:${secret}@127.0.0.1:1/narrowtune`, '--data-dir', join(dir, 'nowhere')], /^never$/);
    await expect(p).rejects.toThrow(/exited with 1/);
    const out = procs.at(-1)!.lines.join('\n');
    expect(out).toMatch(/narrowtune worker: the job database postgresql:\/\/nt:\*\*\*@127\.0\.0\.1:1\/narrowtune is unavailable/);
    expect(out).not.toContain(secret);
  });
});
