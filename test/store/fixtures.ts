// Typed jobs and events for store tests, and the stores and directories they open.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import type { JobCheckpoint, JobSpec, JobStep } from '../../src/store/job-events.js';
import { JobStore } from '../../src/store/job-store.js';
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

/** Registers an afterEach that undoes, newest first, whatever the returned helpers opened in a test. Call it
 * at the top of a test file (not on import, so files that only want the fixtures get no hook). */
export function storeHarness() {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    while (cleanups.length) cleanups.pop()!();
  });
  return {
    /** Runs `fn` after the current test. */
    onCleanup: (fn: () => void) => void cleanups.push(fn),
    memStore(now?: () => number): JobStore {
      const s = JobStore.openInMemory({ now });
      cleanups.push(() => s.close());
      return s;
    },
    tempDir(prefix = 'narrowtune-store-'): string {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
  };
}

/** The NarrowtuneError `fn` throws, or a failure when it throws none or something else. */
export function caught(fn: () => unknown): NarrowtuneError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NarrowtuneError);
    return e as NarrowtuneError;
  }
  throw new Error('expected a NarrowtuneError');
}
