import { afterEach, describe, expect, it } from 'vitest';
import { decodeJobEvent, toJobEvent, type JobEvent } from '../../src/store/job-events.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import type { TrainEvent } from '../../src/trainer/events.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { spec, startJob } from './fixtures.js';

const stores: SqliteJobStore[] = [];
afterEach(async () => {
  while (stores.length) await stores.pop()!.close();
});

const FIGURES = {
  numberMass: 0.2,
  numberMassBase: 0.1,
  numberMassDelta: 0.1,
  klToBase: 0.05,
  top1Agreement: 0.9,
  heldoutLoss: 2.5,
  heldoutLossBase: 2.4,
  heldoutLossDelta: 0.1,
  classes: [{ name: 'digit', mass: 0.1, massBase: 0.05, delta: 0.05 }],
};

// Payloads exactly as earlier releases wrote them (job-runner record()), one row per event type.
const EARLIER_ROWS: [string, object][] = [
  ['started', { totalSteps: 6, trainableTensors: ['model.layers.0.mlp.up_proj.weight'], trainableParameters: 2048, provider: 'cpu', resumedFromStep: 0 }],
  ['step', { step: 1, totalSteps: 6, loss: 3.5, learningRate: 1e-4, gradNorm: 0.7, tokensPerSecond: 900, elapsedSeconds: 0.4 }],
  ['validation', { step: 2, loss: 3.1, tokenAccuracy: 0.25 }],
  ['probe', { step: 2, ...FIGURES }],
  ['budget_exceeded', { limit: 'max_kl_to_base', value: 0.3, threshold: 0.2, step: 4, keptStep: 2 }],
  ['checkpoint', { step: 4, path: '/data/jobs/x/checkpoints/step-4' }],
  ['finished', { state: 'CANCELLED', outputPath: '', note: 'cancelled while the server was down' }],
];

describe('stored job events', () => {
  it('reads every event type of an earlier database with its stored names, typed', async () => {
    const s = SqliteJobStore.openInMemory();
    stores.push(s);
    const { job } = await s.createJob({ spec: spec() });
    const db = (s as unknown as { db: { prepare(sql: string): { run(...a: unknown[]): void } } }).db;
    const insert = db.prepare('INSERT INTO events (job_id, sequence, time, type, payload) VALUES (?, ?, ?, ?, ?)');
    EARLIER_ROWS.forEach(([type, payload], i) => insert.run(job.id, i + 1, 1000 + i, type, JSON.stringify(payload)));

    const events = (await s.readEvents(job.id, 0)).map((e) => e.event);
    expect(events).toEqual(EARLIER_ROWS.map(([type, payload]) => ({ type, ...payload })));
    const step = events.find((e): e is Extract<JobEvent, { type: 'step' }> => e.type === 'step')!;
    expect(step.learningRate).toBe(1e-4);
  });

  it('keeps the event type in its own column and the payload under the event’s own names', async () => {
    const s = SqliteJobStore.openInMemory();
    stores.push(s);
    const lease = await startJob(s);
    const job = { id: lease.jobId };
    await s.appendEvent(lease, { type: 'validation', step: 3, loss: 2, tokenAccuracy: 0.5 });
    const db = (s as unknown as { db: { prepare(sql: string): { get(...a: unknown[]): unknown } } }).db;
    expect(db.prepare('SELECT type, payload FROM events WHERE job_id = ?').get(job.id)).toEqual({
      type: 'validation',
      payload: JSON.stringify({ step: 3, loss: 2, tokenAccuracy: 0.5 }),
    });
  });

  it('refuses a row of a type this version does not know, saying which', () => {
    expect(() => decodeJobEvent('eval', { accuracy: 1 })).toThrow(/"eval" is not one this version knows/);
    expect(() => decodeJobEvent('step', null)).toThrow(NarrowtuneError);
    expect(decodeJobEvent('checkpoint', { step: 1, path: 'p' })).toEqual({ type: 'checkpoint', step: 1, path: 'p' });
  });
});

describe('toJobEvent', () => {
  it('keeps what the trainer reported and drops the local-only done', () => {
    const step: TrainEvent = { type: 'step', step: 1, totalSteps: 2, loss: 1, learningRate: 0.1, gradNorm: 1, tokens: 64, tokensPerSecond: 640, elapsedSeconds: 0.1 };
    expect(toJobEvent(step)).toEqual(step);
    const probe: TrainEvent = { type: 'probe', step: 1, positions: 40, tokenAccuracy: 0.5, ...FIGURES };
    expect(toJobEvent(probe)).toEqual(probe);
    expect(toJobEvent({ type: 'done', out: '/o', finalLoss: 1, frozenUnchanged: true })).toBeNull();
  });
});
