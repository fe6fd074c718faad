// JobRunner against a real SQLite store, with fake trainer processes the tests drive by hand.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { attemptDir, isDeadLocalWorker, JobRunner, newWorkerId, type JobRunnerOptions } from '../../src/runner/job-runner.js';
import { toJobEvent } from '../../src/store/job-events.js';
import type { JobStore } from '../../src/store/job-store.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { DISABLED, type ProbeSample, type StepSample, type Telemetry } from '../../src/telemetry/otel.js';
import type { TrainEvent } from '../../src/trainer/events.js';
import type { TuneOptions } from '../../src/trainer/options.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import type { TuneProcess } from '../../src/trainer/run-in-process.js';
import { TrainingStopped, type TuneResult } from '../../src/trainer/trainer.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec, tempDirs } from '../store/fixtures.js';

const DATA_DIR = '/srv/narrowtune';

/** A trainer process the test drives: emit events, then settle `done`. */
class FakeProcess implements TuneProcess {
  readonly pid = undefined;
  readonly done: Promise<TuneResult>;
  readonly stops: string[] = [];
  killed = false;
  private settle!: { resolve: (r: TuneResult) => void; reject: (e: unknown) => void };

  constructor(
    readonly options: TuneOptions,
    readonly emit: (e: TrainEvent) => void,
  ) {
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
  }

  stop(reason: 'cancel' | 'shutdown'): void {
    this.stops.push(reason);
  }

  kill(): void {
    this.killed = true;
    this.settle.reject(new Error('trainer process killed'));
  }

  succeed(steps: number, budgetStop: TuneResult['budgetStop'] = null): void {
    const receipt = { steps: Array.from({ length: steps }, (_, i) => ({ step: i + 1, loss: 1, lr: 0.1, grad_norm: 1 })) } as unknown as Receipt;
    this.settle.resolve({ out: this.options.out, receipt, budgetStop });
  }

  fail(error: unknown): void {
    this.settle.reject(error);
  }
}

const stores: JobStore[] = [];
const runners: JobRunner[] = [];
const allProcs: FakeProcess[] = [];
afterEach(async () => {
  // Stop heartbeats and polls before the stores close under them; trainers a test left running die.
  const downs = runners.splice(0).map((r) => r.shutdown());
  for (const p of allProcs.splice(0)) p.kill();
  await Promise.all(downs);
  while (stores.length) await stores.pop()!.close();
  vi.restoreAllMocks();
});
const tempDir = tempDirs();

function setup(o: Partial<JobRunnerOptions> = {}) {
  const store = o.store ?? SqliteJobStore.openInMemory();
  stores.push(store);
  const procs: FakeProcess[] = [];
  const runner = new JobRunner({
    dataDir: DATA_DIR,
    maxConcurrentJobs: 1,
    workerId: 'w1',
    ...o,
    store,
    startProcess: (options, onEvent) => {
      const p = new FakeProcess(options, onEvent);
      procs.push(p);
      allProcs.push(p);
      return p;
    },
  });
  runners.push(runner);
  const submit = async (model = 'base') => (await store.createJob({ spec: spec(`/models/${model}`) })).job.id;
  return { store, runner, procs, submit };
}

/** Lets the runner's store writes and settled `done` handlers run. */
const settled = () => new Promise<void>((r) => setImmediate(r));

const STARTED: TrainEvent = {
  type: 'started',
  totalSteps: 4,
  trainableTensors: ['model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.gate_proj.weight'],
  trainableParameters: 4096,
  provider: 'cpu',
  resumedFromStep: 0,
  batchSize: 4,
  gradAccum: 1,
  seq: 32,
  examples: 12,
  frozenTensors: 20,
  compileMs: 50,
  sessionMs: 20,
};
const step = (n: number): TrainEvent => ({ type: 'step', step: n, totalSteps: 4, loss: 3 - n / 2, learningRate: 1e-3, gradNorm: 0.5, tokens: 128, tokensPerSecond: 256, elapsedSeconds: n / 2 });
const PROBE: TrainEvent = {
  type: 'probe',
  step: 2,
  positions: 30,
  tokenAccuracy: 0.4,
  heldoutLoss: 2.1,
  heldoutLossBase: 2,
  heldoutLossDelta: 0.1,
  numberMass: 0.3,
  numberMassBase: 0.2,
  numberMassDelta: 0.1,
  klToBase: 0.02,
  top1Agreement: 0.95,
  classes: [{ name: 'digit', mass: 0.2, massBase: 0.1, delta: 0.1 }],
};

describe('JobRunner scheduling', () => {
  it('claims jobs in FIFO order, never more than maxConcurrentJobs at once', async () => {
    const { store, runner, procs, submit } = setup({ maxConcurrentJobs: 2 });
    const ids = [];
    for (const m of ['a', 'b', 'c', 'd']) ids.push(await submit(m));
    await runner.pump();
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/b']);
    expect(runner.activeCount).toBe(2);
    expect((await store.jobsInStates(['PENDING'])).map((j) => j.id)).toEqual(ids.slice(2));
    await runner.pump(); // no capacity: nothing new
    expect(procs).toHaveLength(2);

    procs[1]!.succeed(4);
    await vi.waitFor(() => expect(procs).toHaveLength(3));
    expect(procs[2]!.options.model).toBe('/models/c');
    procs[0]!.fail(new Error('boom'));
    await vi.waitFor(() => expect(procs).toHaveLength(4));
    expect(procs[3]!.options.model).toBe('/models/d');
    expect(runner.activeCount).toBe(2);
  });

  it('trains each claim in its own attempt directory, with the stored options, holding the lease', async () => {
    const { store, runner, procs, submit } = setup();
    const id = await submit('qwen');
    await runner.pump();
    const dir = attemptDir(DATA_DIR, id, 1);
    expect(dir).toBe(join(DATA_DIR, 'jobs', id, 'attempt-1'));
    const job = (await store.getJob(id))!;
    expect(procs[0]!.options).toEqual({ ...job.spec.options, out: join(dir, 'model'), checkpointDir: join(dir, 'checkpoints'), resume: false, resumeFrom: null, pruneCheckpoints: false, threads: null, featureCache: null });
    expect(job).toMatchObject({ state: 'RUNNING', leaseOwner: 'w1', leaseEpoch: 1 });
  });

  it("gives every job this process's onnxruntime thread count, a host setting the request never carries", async () => {
    const { runner, procs, submit } = setup({ threads: 3 });
    await submit();
    await runner.pump();
    expect(procs[0]!.options.threads).toBe(3);
  });

  it('runs at most tenantMaxRunning jobs of one tenant; the others wait while other tenants start', async () => {
    const { store, runner, procs } = setup({ maxConcurrentJobs: 3, tenantMaxRunning: 1 });
    const submit = async (tenant: string | null, model: string) => (await store.createJob({ tenant, spec: spec(`/models/${model}`) })).job.id;
    const a1 = await submit('acme', 'a1');
    const a2 = await submit('acme', 'a2');
    await submit('beta', 'b1');
    await submit(null, 'n1'); // made without authentication: no tenant, no tenant limit
    await runner.pump();
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a1', '/models/b1', '/models/n1']);
    expect((await store.getJob(a2))!.state).toBe('PENDING');

    procs[1]!.succeed(4); // beta's job ends: the free slot must not go to acme's second job
    await settled();
    await settled();
    expect(procs).toHaveLength(3);
    expect((await store.getJob(a2))!.state).toBe('PENDING');

    procs[0]!.succeed(4);
    await vi.waitFor(() => expect(procs).toHaveLength(4));
    expect((await store.getJob(a1))!.state).toBe('SUCCEEDED');
    expect(procs[3]!.options.model).toBe('/models/a2');
  });

  it('keeps claiming, job after job, through polls that found every slot taken', async () => {
    const { store, runner, procs, submit } = setup({ pollMs: 5 });
    const ids = [await submit('a'), await submit('b'), await submit('c')];
    await runner.begin();
    for (let i = 0; i < 3; i++) {
      await vi.waitFor(() => expect(procs).toHaveLength(i + 1));
      await new Promise((r) => setTimeout(r, 20)); // polls while the only slot is busy
      procs[i]!.succeed(1);
    }
    await vi.waitFor(async () => expect((await store.jobsInStates(['SUCCEEDED'])).map((j) => j.id)).toEqual(ids));
  });

  it('with no job slots claims nothing (an API-only replica)', async () => {
    const { runner, procs, submit } = setup({ maxConcurrentJobs: 0, pollMs: 5 });
    await submit();
    await runner.begin();
    await new Promise((r) => setTimeout(r, 30));
    expect(procs).toHaveLength(0);
  });

  it('polls for jobs that another process queued', async () => {
    const dir = tempDir();
    const api = SqliteJobStore.open(dir);
    stores.push(api);
    const { runner, procs } = setup({ store: SqliteJobStore.open(dir), pollMs: 10 });
    await runner.begin();
    expect(procs).toHaveLength(0);
    await api.createJob({ spec: spec('/models/elsewhere') });
    await vi.waitFor(() => expect(procs.map((p) => p.options.model)).toEqual(['/models/elsewhere']));
  });
});

describe('JobRunner events', () => {
  it('relays what the trainer emits into the store as typed events, with progress and checkpoints', async () => {
    const { store, runner, procs, submit } = setup();
    const id = await submit();
    await runner.pump();
    const p = procs[0]!;
    const emitted: TrainEvent[] = [
      STARTED,
      step(1),
      step(2),
      { type: 'validation', step: 2, loss: 2.2, tokenAccuracy: 0.3 },
      PROBE,
      { type: 'checkpoint', step: 2, path: '/ck/2' },
      { type: 'done', out: p.options.out, finalLoss: 2, frozenUnchanged: true },
    ];
    emitted.forEach(p.emit);
    await settled();

    expect((await store.readEvents(id, 0)).map((e) => e.event)).toEqual(emitted.slice(0, -1).map(toJobEvent));
    expect(await store.getJob(id)).toMatchObject({ state: 'RUNNING', step: 2, totalSteps: 4, trainable: STARTED.type === 'started' ? STARTED.trainableTensors : [] });
    expect((await store.getJob(id))!.checkpoints.map(({ step, path, final }) => ({ step, path, final }))).toEqual([{ step: 2, path: '/ck/2', final: false }]);

    p.succeed(4);
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    const job = (await store.getJob(id))!;
    expect(job).toMatchObject({ state: 'SUCCEEDED', outputPath: p.options.out, result: null, leaseOwner: null });
    expect(job.checkpoints.at(-1)).toMatchObject({ step: 4, path: p.options.out, final: true });
    expect((await store.readEvents(id, 0)).at(-1)!.event).toEqual({ type: 'finished', state: 'SUCCEEDED', outputPath: p.options.out });
  });

  it('records a drift-budget stop in the finished event and the job result', async () => {
    const { store, runner, procs, submit } = setup();
    const id = await submit();
    await runner.pump();
    const budgetStop = { limit: 'max_kl_to_base' as const, value: 0.4, threshold: 0.3, step: 4, keptStep: 2 };
    procs[0]!.emit({ type: 'budget_exceeded', ...budgetStop });
    procs[0]!.succeed(4, budgetStop);
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    expect((await store.getJob(id))!.result).toEqual({ budgetStop });
    expect((await store.readEvents(id, 0)).map((e) => e.event)).toEqual([
      { type: 'budget_exceeded', ...budgetStop },
      { type: 'finished', state: 'SUCCEEDED', outputPath: procs[0]!.options.out, budgetStop },
    ]);
  });

  it('hands steps and probes to telemetry as the trainer reported them', async () => {
    const steps: StepSample[] = [];
    const probes: ProbeSample[] = [];
    const telemetry: Telemetry = { ...DISABLED, recordStep: (_a, s) => steps.push(s), recordProbe: (_a, p) => probes.push(p) };
    const { runner, procs, submit } = setup({ telemetry });
    await submit('qwen-0.5b');
    await runner.pump();
    procs[0]!.emit(step(1));
    procs[0]!.emit(PROBE);
    await settled();
    expect(steps).toEqual([expect.objectContaining({ loss: 2.5, learningRate: 1e-3, gradNorm: 0.5, tokensPerSecond: 256, stepSeconds: 0.5 })]);
    expect(probes).toEqual([PROBE]);
  });

  it('survives a store error while recording: warns, and keeps recording later events', async () => {
    const { store, runner, procs, submit } = setup();
    const id = await submit();
    await runner.pump();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const append = vi.spyOn(store, 'appendEvent').mockImplementationOnce(async () => {
      throw new Error('disk I/O error');
    });
    expect(() => procs[0]!.emit(step(1))).not.toThrow();
    await settled();
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`job ${id}: could not record step event: disk I/O error`)));
    append.mockRestore();
    procs[0]!.emit(step(2));
    await settled();
    expect((await store.readEvents(id, 0)).map((e) => e.event)).toEqual([toJobEvent(step(2))]);
  });

  it('survives a store error while recording the end: releases the slot for the next job', async () => {
    const { store, runner, procs, submit } = setup();
    await submit('a');
    await submit('b');
    await runner.pump();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    vi.spyOn(store, 'finish').mockImplementationOnce(async () => {
      throw new Error('database is locked');
    });
    procs[0]!.succeed(1);
    await vi.waitFor(() => expect(procs).toHaveLength(2));
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/could not record its end: database is locked/));
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/b']);
  });
});

describe('JobRunner endings', () => {
  it('fails a job with the trainer’s error kind, message and violations', async () => {
    const { store, runner, procs, submit } = setup({ maxConcurrentJobs: 2 });
    const a = await submit();
    const b = await submit();
    await runner.pump();
    const violations = [{ field: 'data', description: 'train.jsonl:3: not JSON' }];
    procs[0]!.fail(new NarrowtuneError('invalid_argument', 'train.jsonl:3: not JSON', violations));
    procs[1]!.fail(new Error('segfault in a kernel'));
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    const error = { kind: 'invalid_argument', message: 'train.jsonl:3: not JSON', violations };
    expect(await store.getJob(a)).toMatchObject({ state: 'FAILED', error });
    expect((await store.readEvents(a, 0)).at(-1)!.event).toEqual({ type: 'finished', state: 'FAILED', error });
    expect((await store.getJob(b))!.error).toEqual({ kind: 'internal', message: 'segfault in a kernel', violations: [] });
  });

  it('cancels a running job: asks its trainer to stop, then keeps the last checkpoint as the output', async () => {
    const { store, runner, procs, submit } = setup();
    const id = await submit();
    await runner.pump();
    const p = procs[0]!;
    p.emit(STARTED);
    p.emit({ type: 'checkpoint', step: 3, path: '/ck/3' });
    await store.requestCancel(id);
    expect(p.stops).toEqual(['cancel']);
    p.fail(new TrainingStopped('cancel', 3));
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    expect(await store.getJob(id)).toMatchObject({ state: 'CANCELLED', outputPath: '/ck/3' });
    expect((await store.readEvents(id, 0)).at(-1)!.event).toEqual({ type: 'finished', state: 'CANCELLED', outputPath: '/ck/3' });
  });

  it('sees a cancel asked through another connection on its heartbeat', async () => {
    const dir = tempDir();
    const api = SqliteJobStore.open(dir);
    stores.push(api);
    // In-process notifications do not cross connections: only the heartbeat (every leaseSeconds/3) can see it.
    const { runner, procs } = setup({ store: SqliteJobStore.open(dir), leaseSeconds: 0.06 });
    const { job } = await api.createJob({ spec: spec() });
    await runner.pump();
    await api.requestCancel(job.id, 'k1');
    await vi.waitFor(() => expect(procs[0]!.stops).toEqual(['cancel']), { timeout: 1000 });
  });

  it('kills a trainer that does not stop within the grace period, and still cancels the job', async () => {
    const { store, runner, procs, submit } = setup({ stopGraceSeconds: 0.01 });
    const id = await submit();
    await runner.pump();
    await store.requestCancel(id);
    await vi.waitFor(() => expect(procs[0]!.killed).toBe(true));
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    expect(await store.getJob(id)).toMatchObject({ state: 'CANCELLED', outputPath: null });
  });

  it('shutdown checkpoints every trainer, releases its job for the next worker, and claims nothing new', async () => {
    const { store, runner, procs, submit } = setup();
    const a = await submit();
    const b = await submit();
    await runner.pump();
    procs[0]!.emit({ type: 'checkpoint', step: 2, path: '/ck/2' });
    const down = runner.shutdown();
    await settled();
    expect(procs[0]!.stops).toEqual(['shutdown']);
    procs[0]!.fail(new TrainingStopped('shutdown', 2));
    await down;
    expect(await store.getJob(a)).toMatchObject({ state: 'PENDING', leaseOwner: null, leaseEpoch: 1 });
    expect((await store.readEvents(a, 0)).map((e) => e.event.type)).toEqual(['checkpoint']);
    expect((await store.getJob(b))!.state).toBe('PENDING');
    await runner.pump();
    expect(procs).toHaveLength(1);

    // The next worker resumes from the checkpoint the store recorded, in a directory of its own.
    const next = setup({ store, workerId: 'w2' });
    await next.runner.pump();
    expect(next.procs[0]!.options).toMatchObject({ resumeFrom: '/ck/2', out: join(attemptDir(DATA_DIR, a, 2), 'model') });
  });

  it('puts a job back in the queue whenever its trainer stopped for a shutdown, asked by this runner or not', async () => {
    const { store, runner, procs, submit } = setup({ maxConcurrentJobs: 2 });
    const signalled = await submit();
    const crashed = await submit();
    await runner.pump();
    // The trainer got the signal before the runner asked (e.g. a service manager stopping the process group):
    // the job is released, and this runner, still running, takes it up again from its checkpoint.
    procs[0]!.emit({ type: 'checkpoint', step: 1, path: '/ck/1' });
    procs[0]!.fail(new TrainingStopped('shutdown', 1));
    await vi.waitFor(() => expect(procs).toHaveLength(3));
    expect(procs[2]!.options).toMatchObject({ resumeFrom: '/ck/1', checkpointDir: join(attemptDir(DATA_DIR, signalled, 2), 'checkpoints') });
    // Asked to shut down, a trainer died instead of stopping cleanly: still resumable from its checkpoint.
    const down = runner.shutdown();
    procs[1]!.fail(new Error('trainer process exited with code 1'));
    procs[2]!.fail(new TrainingStopped('shutdown', 1));
    await down;
    expect((await store.getJob(crashed))!.state).toBe('PENDING');
    expect(await store.getJob(signalled)).toMatchObject({ state: 'PENDING', leaseEpoch: 2 });
    expect(runner.activeCount).toBe(0);
  });
});

describe('JobRunner leases', () => {
  it('renews its leases by heartbeat while the trainer runs', async () => {
    const { store, runner, submit } = setup({ leaseSeconds: 0.3 });
    const id = await submit();
    await runner.pump();
    await new Promise((r) => setTimeout(r, 900)); // three leases long
    expect((await store.getJob(id))!.leaseExpires).toBeGreaterThan(Date.now());
    expect(await store.claimJob({ workerId: 'thief', leaseMs: 1000 })).toBeNull();
  });

  it('kills its trainer at once when the lease is lost, and writes nothing after', async () => {
    const { store, runner, procs, submit } = setup({ leaseSeconds: 0.06 });
    const id = await submit();
    await runner.pump();
    procs[0]!.emit(step(1));
    await settled();
    // Another worker takes the job over (as after a partition that outlasted the lease).
    await store.expireLease(id, 1);
    const thief = await store.claimJob({ workerId: 'thief', leaseMs: 60_000 });
    expect(thief).toMatchObject({ jobId: id, epoch: 2 });
    await vi.waitFor(() => expect(procs[0]!.killed).toBe(true), { timeout: 1000 });
    procs[0]!.emit(step(2)); // a last event still in flight from the killed trainer
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    expect(await store.getJob(id)).toMatchObject({ state: 'RUNNING', leaseOwner: 'thief', leaseEpoch: 2 });
    expect((await store.readEvents(id, 0)).map((e) => e.event)).toEqual([toJobEvent(step(1))]);
  });

  it('a lease lost at the finish leaves the job to its new holder', async () => {
    const { store, runner, procs, submit } = setup();
    const id = await submit();
    await runner.pump();
    await store.expireLease(id, 1);
    await store.claimJob({ workerId: 'thief', leaseMs: 60_000 });
    procs[0]!.succeed(4); // before any heartbeat noticed
    await vi.waitFor(() => expect(runner.activeCount).toBe(0));
    expect(await store.getJob(id)).toMatchObject({ state: 'RUNNING', leaseOwner: 'thief', outputPath: null });
    expect(await store.readEvents(id, 0)).toEqual([]);
  });
  it('two workers on one database: a partitioned one loses its job to the other, which resumes it, and is fenced', async () => {
    const db = tempDir();
    const a = setup({ store: SqliteJobStore.open(db), workerId: 'a', leaseSeconds: 0.09 });
    const b = setup({ store: SqliteJobStore.open(db), workerId: 'b', leaseSeconds: 0.09, pollMs: 10 });
    const id = await a.submit();
    await a.runner.pump();
    await b.runner.begin(); // nothing to claim: a holds the only job
    a.procs[0]!.emit({ type: 'checkpoint', step: 3, path: '/a/ck/3' });
    await settled();
    // a can no longer reach the store to renew, though it still trains (a network partition).
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    vi.spyOn(a.store, 'renewLease').mockRejectedValue(new NarrowtuneError('unavailable', 'connection lost'));
    await vi.waitFor(() => expect(b.procs).toHaveLength(1), { timeout: 2000 });
    expect(b.procs[0]!.options).toMatchObject({ resumeFrom: '/a/ck/3', out: join(attemptDir(DATA_DIR, id, 2), 'model') });
    // a's next write is refused: it learns it lost the job, and kills its trainer.
    a.procs[0]!.emit(step(4));
    await vi.waitFor(() => expect(a.procs[0]!.killed).toBe(true));
    await vi.waitFor(() => expect(a.runner.activeCount).toBe(0));
    b.procs[0]!.succeed(4);
    await vi.waitFor(async () => expect(await b.store.getJob(id)).toMatchObject({ state: 'SUCCEEDED', leaseEpoch: 2 }));
    expect((await b.store.readEvents(id, 0)).map((e) => e.event.type)).toEqual(['checkpoint', 'finished']);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/could not renew its lease: connection lost/));
  });
});

describe('JobRunner.begin', () => {
  // This process's own id, and ids of other processes in the same host and pid namespace.
  const self = newWorkerId();
  const here = self.split('/').slice(0, -2).join('/');
  const sibling = (pid: number, nonce = 'aaaaaaaa') => `${here}/${pid}/${nonce}`;

  it('tells a dead predecessor on this host from a live, remote or containerised worker', () => {
    expect(self).toMatch(new RegExp(`^${hostname()}/[^/]+/${process.pid}/[0-9a-f]{8}$`));
    expect(isDeadLocalWorker(sibling(process.pid, 'deadbeef'), self)).toBe(true); // our pid, an earlier life
    expect(isDeadLocalWorker(sibling(process.ppid), self)).toBe(false); // alive
    expect(isDeadLocalWorker(self, self)).toBe(false);
    expect(isDeadLocalWorker(`elsewhere.example/1/${process.pid}/aaaaaaaa`, self)).toBe(false);
    expect(isDeadLocalWorker(`${hostname()}/1/${process.pid}/aaaaaaaa`, self)).toBe(here.endsWith('/1')); // another pid namespace
    expect(isDeadLocalWorker('w1', self)).toBe(false);
  });

  it('takes over at once the jobs a dead predecessor on this host left, and finishes those cancelled meanwhile', async () => {
    const store = SqliteJobStore.openInMemory();
    const claimAs = async (workerId: string, model: string) => {
      await store.createJob({ spec: spec(`/models/${model}`) });
      return (await store.claimJob({ workerId, leaseMs: 60_000 }))!;
    };
    const predecessor = sibling(process.pid, 'deadbeef');
    const resumed = await claimAs(predecessor, 'a');
    await store.addCheckpoint(resumed, { step: 4, path: '/data/jobs/a/attempt-1/checkpoints/step-00000004', final: false });
    const cancelled = await claimAs(predecessor, 'b');
    await store.addCheckpoint(cancelled, { step: 5, path: '/ck/5', final: false });
    await store.requestCancel(cancelled.jobId);
    const remote = await claimAs('elsewhere.example/1/7/aaaaaaaa', 'c');
    const queued = (await store.createJob({ spec: spec('/models/d') })).job.id;

    const { runner, procs } = setup({ store, maxConcurrentJobs: 2, workerId: self });
    await runner.begin();
    // The cancelled job takes a slot only to be finished; the queued one gets it next.
    await vi.waitFor(() => expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/d']));
    expect(procs[0]!.options).toMatchObject({ resumeFrom: '/data/jobs/a/attempt-1/checkpoints/step-00000004' });
    expect(await store.getJob(resumed.jobId)).toMatchObject({ leaseEpoch: 2, leaseOwner: self });
    await vi.waitFor(async () => expect(await store.getJob(cancelled.jobId)).toMatchObject({ state: 'CANCELLED', outputPath: '/ck/5' }));
    expect((await store.readEvents(cancelled.jobId, 0)).map((e) => e.event)).toEqual([
      { type: 'finished', state: 'CANCELLED', outputPath: '/ck/5', note: 'cancelled while no worker was running it' },
    ]);
    // Another host's worker may be alive: its lease is waited out, not broken.
    expect(await store.getJob(remote.jobId)).toMatchObject({ leaseOwner: 'elsewhere.example/1/7/aaaaaaaa', leaseEpoch: 1 });
    expect((await store.getJob(queued))!.state).toBe('RUNNING');
  });
});
