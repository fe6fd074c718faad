// Typed jobs and events for store tests, the leases they write with, and the directories they open.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import type { JobCheckpoint, JobSpec, JobStep } from '../../src/store/job-events.js';
import type { JobStore, Lease, NewJob } from '../../src/store/job-store.js';
import { DEFAULTS } from '../../src/trainer/options.js';
import { NarrowtuneError } from '../../src/util/errors.js';

/** A job spec for base model `model`; the store keeps it as given. */
export function spec(model = 'm'): JobSpec {
  return { options: { ...DEFAULTS, model, data: 'train.jsonl' }, request: { trainingData: 'train.jsonl' } };
}

/** A step event whose loss tells it apart. */
export function step(n: number, loss = 1 / n): JobStep {
  return { type: 'step', step: n, totalSteps: 10, loss, learningRate: 1e-4, gradNorm: 0.5, tokensPerSecond: 100, elapsedSeconds: n };
}

export function checkpoint(n: number): JobCheckpoint {
  return { type: 'checkpoint', step: n, path: `/ck/${n}` };
}

/** Long enough that no test sees a lease expire unless it moves the clock. */
export const LEASE_MS = 60_000;

/** Claims the next job as `workerId`; fails the test when there is none. */
export async function claim(s: JobStore, workerId = 'w1', leaseMs = LEASE_MS): Promise<Lease> {
  const lease = await s.claimJob({ workerId, leaseMs });
  expect(lease).not.toBeNull();
  return lease!;
}

/** Creates a job and claims it, as a worker about to train it would; the queue must hold nothing older. */
export async function startJob(s: JobStore, input: Partial<NewJob> = {}, workerId = 'w1'): Promise<Lease> {
  const { job } = await s.createJob({ spec: spec(), ...input });
  const lease = await claim(s, workerId);
  expect(lease.jobId).toBe(job.id);
  return lease;
}

/** A temporary directory removed after the test; call at the top of a test file (it registers the hook). */
export function tempDirs(): (prefix?: string) => string {
  const dirs: string[] = [];
  afterEach(() => {
    while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
  });
  return (prefix = 'narrowtune-store-') => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}

/** The NarrowtuneError `fn` throws or rejects with, or a failure when it gives none or something else. */
export async function caught(fn: () => unknown): Promise<NarrowtuneError> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NarrowtuneError);
    return e as NarrowtuneError;
  }
  throw new Error('expected a NarrowtuneError');
}
