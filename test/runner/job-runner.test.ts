// JobRunner against a real (in-memory) store, with fake trainer processes the tests drive by hand.
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { JobRunner, jobDir, type JobRunnerOptions } from '../../src/runner/job-runner.js';
import { toJobEvent } from '../../src/store/job-events.js';
import { JobStore } from '../../src/store/job-store.js';
import { DISABLED, type ProbeSample, type StepSample, type Telemetry } from '../../src/telemetry/otel.js';
import type { TrainEvent } from '../../src/trainer/events.js';
import type { TuneOptions } from '../../src/trainer/options.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import type { TuneProcess } from '../../src/trainer/run-in-process.js';
import { TrainingStopped, type TuneResult } from '../../src/trainer/trainer.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec } from '../store/fixtures.js';

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
afterEach(() => {
  while (stores.length) stores.pop()!.close();
  vi.restoreAllMocks();
});

function setup(o: Partial<JobRunnerOptions> = {}) {
  const store = o.store ?? JobStore.openInMemory();
  stores.push(store);
  const procs: FakeProcess[] = [];
  const runner = new JobRunner({
    dataDir: DATA_DIR,
    maxConcurrentJobs: 1,
    ...o,
    store,
    startProcess: (options, onEvent) => {
      const p = new FakeProcess(options, onEvent);
      procs.push(p);
      return p;
    },
  });
  const submit = (model = 'base') => store.createJob({ spec: spec(`/models/${model}`) }).job.id;
  return { store, runner, procs, submit };
}

/** Lets settled `done` promises run the runner's handlers. */
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
  it('starts jobs in FIFO order, never more than maxConcurrentJobs at once', async () => {
    const { store, runner, procs, submit } = setup({ maxConcurrentJobs: 2 });
    const ids = ['a', 'b', 'c', 'd'].map(submit);
    runner.pump();
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/b']);
    expect(runner.activeCount).toBe(2);
    expect(store.jobsInStates(['PENDING']).map((j) => j.id)).toEqual(ids.slice(2));
    runner.pump(); // no capacity: nothing new
    expect(procs).toHaveLength(2);

    procs[1]!.succeed(4);
    await settled();
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/b', '/models/c']);
    procs[0]!.fail(new Error('boom'));
    await settled();
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/b', '/models/c', '/models/d']);
    expect(runner.activeCount).toBe(2);
  });

  it('runs each job with the stored options and paths derived from its id, resumable', () => {
    const { store, runner, procs, submit } = setup();
    const id = submit('qwen');
    runner.pump();
    const dir = jobDir(DATA_DIR, id);
    expect(procs[0]!.options).toEqual({ ...store.getJob(id)!.spec.options, out: join(dir, 'model'), checkpointDir: join(dir, 'checkpoints'), resume: true });
    expect(store.getJob(id)!.state).toBe('RUNNING');
  });

  it('runs at most tenantMaxRunning jobs of one tenant; the others wait while other tenants start', async () => {
    const { store, runner, procs } = setup({ maxConcurrentJobs: 3, tenantMaxRunning: 1 });
    const submit = (tenant: string | null, model: string) => store.createJob({ tenant, spec: spec(`/models/${model}`) }).job.id;
    const [a1, a2] = [submit('acme', 'a1'), submit('acme', 'a2')];
    submit('beta', 'b1');
    submit(null, 'n1'); // made without authentication: no tenant, no tenant limit
    runner.pump();
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a1', '/models/b1', '/models/n1']);
    expect(store.getJob(a2)!.state).toBe('PENDING');

    procs[1]!.succeed(4); // beta's job ends: the free slot must not go to acme's second job
    await settled();
    expect(procs).toHaveLength(3);
    expect(store.getJob(a2)!.state).toBe('PENDING');

    procs[0]!.succeed(4);
    await settled();
    expect(store.getJob(a1)!.state).toBe('SUCCEEDED');
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a1', '/models/b1', '/models/n1', '/models/a2']);
  });
});

describe('JobRunner events', () => {
  it('relays what the trainer emits into the store as typed events, with progress and checkpoints', async () => {
    const { store, runner, procs, submit } = setup();
    const id = submit();
    runner.pump();
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

    expect(store.readEvents(id, 0).map((e) => e.event)).toEqual(emitted.slice(0, -1).map(toJobEvent));
    expect(store.getJob(id)).toMatchObject({ state: 'RUNNING', step: 2, totalSteps: 4, trainable: STARTED.type === 'started' ? STARTED.trainableTensors : [] });
    expect(store.getJob(id)!.checkpoints.map(({ step, path, final }) => ({ step, path, final }))).toEqual([{ step: 2, path: '/ck/2', final: false }]);

    p.succeed(4);
    await settled();
    const job = store.getJob(id)!;
    expect(job).toMatchObject({ state: 'SUCCEEDED', outputPath: p.options.out, result: null });
    expect(job.checkpoints.at(-1)).toMatchObject({ step: 4, path: p.options.out, final: true });
    expect(store.readEvents(id, 0).at(-1)!.event).toEqual({ type: 'finished', state: 'SUCCEEDED', outputPath: p.options.out });
    expect(runner.activeCount).toBe(0);
  });

  it('records a drift-budget stop in the finished event and the job result', async () => {
    const { store, runner, procs, submit } = setup();
    const id = submit();
    runner.pump();
    const budgetStop = { limit: 'max_kl_to_base' as const, value: 0.4, threshold: 0.3, step: 4, keptStep: 2 };
    procs[0]!.emit({ type: 'budget_exceeded', ...budgetStop });
    procs[0]!.succeed(4, budgetStop);
    await settled();
    expect(store.getJob(id)!.result).toEqual({ budgetStop });
    expect(store.readEvents(id, 0).map((e) => e.event)).toEqual([
      { type: 'budget_exceeded', ...budgetStop },
      { type: 'finished', state: 'SUCCEEDED', outputPath: procs[0]!.options.out, budgetStop },
    ]);
  });

  it('hands steps and probes to telemetry as the trainer reported them', () => {
    const steps: StepSample[] = [];
    const probes: ProbeSample[] = [];
    const telemetry: Telemetry = { ...DISABLED, recordStep: (_a, s) => steps.push(s), recordProbe: (_a, p) => probes.push(p) };
    const { runner, procs, submit } = setup({ telemetry });
    submit('qwen-0.5b');
    runner.pump();
    procs[0]!.emit(step(1));
    procs[0]!.emit(PROBE);
    expect(steps).toEqual([expect.objectContaining({ loss: 2.5, learningRate: 1e-3, gradNorm: 0.5, tokensPerSecond: 256, stepSeconds: 0.5 })]);
    expect(probes).toEqual([PROBE]);
  });

  it('survives a store error while recording: warns, and keeps recording later events', () => {
    const { store, runner, procs, submit } = setup();
    const id = submit();
    runner.pump();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const append = vi.spyOn(store, 'appendEvent').mockImplementationOnce(() => {
      throw new Error('disk I/O error');
    });
    expect(() => procs[0]!.emit(step(1))).not.toThrow();
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`job ${id}: could not record step event: disk I/O error`)));
    append.mockRestore();
    procs[0]!.emit(step(2));
    expect(store.readEvents(id, 0).map((e) => e.event)).toEqual([toJobEvent(step(2))]);
  });

  it('survives a store error while recording the end: releases the slot for the next job', async () => {
    const { store, runner, procs, submit } = setup();
    submit('a');
    submit('b');
    runner.pump();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    vi.spyOn(store, 'finish').mockImplementationOnce(() => {
      throw new Error('database is locked');
    });
    procs[0]!.succeed(1);
    await settled();
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/could not record its end: database is locked/));
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a', '/models/b']);
  });
});

describe('JobRunner endings', () => {
  it('fails a job with the trainer’s error kind, message and violations', async () => {
    const { store, runner, procs, submit } = setup({ maxConcurrentJobs: 2 });
    const a = submit();
    const b = submit();
    runner.pump();
    const violations = [{ field: 'data', description: 'train.jsonl:3: not JSON' }];
    procs[0]!.fail(new NarrowtuneError('invalid_argument', 'train.jsonl:3: not JSON', violations));
    procs[1]!.fail(new Error('segfault in a kernel'));
    await settled();
    const error = { kind: 'invalid_argument', message: 'train.jsonl:3: not JSON', violations };
    expect(store.getJob(a)).toMatchObject({ state: 'FAILED', error });
    expect(store.readEvents(a, 0).at(-1)!.event).toEqual({ type: 'finished', state: 'FAILED', error });
    expect(store.getJob(b)!.error).toEqual({ kind: 'internal', message: 'segfault in a kernel', violations: [] });
  });

  it('cancels a running job: asks its trainer to stop, then keeps the last checkpoint as the output', async () => {
    const { store, runner, procs, submit } = setup();
    const id = submit();
    runner.pump();
    const p = procs[0]!;
    p.emit(STARTED);
    p.emit({ type: 'checkpoint', step: 3, path: '/ck/3' });
    store.requestCancel(id);
    expect(p.stops).toEqual(['cancel']);
    p.fail(new TrainingStopped('cancel', 3));
    await settled();
    expect(store.getJob(id)).toMatchObject({ state: 'CANCELLED', outputPath: '/ck/3' });
    expect(store.readEvents(id, 0).at(-1)!.event).toEqual({ type: 'finished', state: 'CANCELLED', outputPath: '/ck/3' });
    expect(runner.activeCount).toBe(0);
  });

  it('kills a trainer that does not stop within the grace period, and still cancels the job', async () => {
    const { store, runner, procs, submit } = setup({ stopGraceSeconds: 0.01 });
    const id = submit();
    runner.pump();
    store.requestCancel(id);
    await vi.waitFor(() => expect(procs[0]!.killed).toBe(true));
    await settled();
    expect(store.getJob(id)).toMatchObject({ state: 'CANCELLED', outputPath: null });
  });

  it('shutdown stops every trainer, leaves its job RUNNING to resume, and starts nothing new', async () => {
    const { store, runner, procs, submit } = setup();
    const a = submit();
    const b = submit();
    runner.pump();
    const down = runner.shutdown();
    expect(procs[0]!.stops).toEqual(['shutdown']);
    procs[0]!.fail(new TrainingStopped('shutdown', 2));
    await down;
    await settled();
    expect(store.getJob(a)!.state).toBe('RUNNING');
    expect(store.readEvents(a, 0)).toEqual([]);
    expect(store.getJob(b)!.state).toBe('PENDING');
    expect(procs).toHaveLength(1);
    runner.pump();
    expect(procs).toHaveLength(1);
  });

  it('leaves a job RUNNING whenever its trainer stopped for a shutdown, asked by this runner or not', async () => {
    const { store, runner, procs, submit } = setup({ maxConcurrentJobs: 2 });
    const signalled = submit();
    const crashed = submit();
    runner.pump();
    // The process group got the signal before the runner asked (e.g. a service manager stopping the server).
    procs[0]!.fail(new TrainingStopped('shutdown', 1));
    await settled();
    expect(store.getJob(signalled)!.state).toBe('RUNNING');
    // Asked to shut down, the trainer died instead of stopping cleanly: still resumable from its checkpoint.
    const down = runner.shutdown();
    procs[1]!.fail(new Error('trainer process exited with code 1'));
    await down;
    await settled();
    expect(store.getJob(crashed)!.state).toBe('RUNNING');
    expect(runner.activeCount).toBe(0);
  });
});

describe('JobRunner.recover', () => {
  it('requeues jobs a dead server left RUNNING and finishes those cancelled meanwhile', async () => {
    const store = JobStore.openInMemory();
    const resumed = store.createJob({ spec: spec('/models/a') }).job.id;
    const cancelled = store.createJob({ spec: spec('/models/b') }).job.id;
    const queued = store.createJob({ spec: spec('/models/c') }).job.id;
    store.markRunning(resumed);
    store.markRunning(cancelled);
    store.addCheckpoint(cancelled, { step: 5, path: '/ck/5', final: false });
    store.requestCancel(cancelled);

    const { runner, procs } = setup({ store, maxConcurrentJobs: 1 });
    runner.recover();
    expect(store.getJob(cancelled)).toMatchObject({ state: 'CANCELLED', outputPath: '/ck/5' });
    expect(store.readEvents(cancelled, 0).map((e) => e.event)).toEqual([
      { type: 'finished', state: 'CANCELLED', outputPath: '/ck/5', note: 'cancelled while the server was down' },
    ]);
    // The requeued job keeps its place ahead of the one queued after it.
    expect(procs.map((p) => p.options.model)).toEqual(['/models/a']);
    expect(procs[0]!.options.resume).toBe(true);
    expect(store.getJob(resumed)!.state).toBe('RUNNING');
    expect(store.getJob(queued)!.state).toBe('PENDING');
  });
});
