// resumeFrom: a new attempt (its own directories) continues from the step checkpoint a job store recorded for an
// earlier attempt, and ends with the weights of an uninterrupted run; a checkpoint that is not there is refused.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainEvent } from '../../src/trainer/events.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { stepDir } from '../../src/trainer/step-checkpoint.js';
import { tune, TrainingStopped } from '../../src/trainer/trainer.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from './fixtures.js';

let dir: string;
let opts: TuneOptions;
beforeAll(async () => {
  dir = await tempDir('nt-resume-from-');
  const base = await tinyModel(dir, TINY_QWEN2);
  const data = await repeatData(dir);
  opts = { ...DEFAULTS, lr: 1e-2, steps: 6, batchSize: 2, gradAccum: 2, seqLen: 32, schedule: 'cosine', warmupSteps: 1, model: base, data, out: '' };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('resumeFrom', () => {
  it('continues in new directories from the named checkpoint of an earlier attempt, to the same weights', async () => {
    await tune({ ...opts, out: join(dir, 'straight') });

    const first = join(dir, 'attempt-1');
    const controller = new AbortController();
    // As the service runs it: the runner, not the trainer, removes checkpoints once the store has a newer one.
    const stopped = tune({ ...opts, out: join(first, 'model'), checkpointEvery: 1, checkpointDir: join(first, 'checkpoints'), pruneCheckpoints: false }, (e) => {
      if (e.type === 'step' && e.step === 4) controller.abort('shutdown');
    }, controller.signal);
    await expect(stopped).rejects.toBeInstanceOf(TrainingStopped);

    // The store recorded step 2 as the resume point; step 4 (newer, on disk too) must not be used.
    const second = join(dir, 'attempt-2');
    const events: TrainEvent[] = [];
    const resumeFrom = stepDir(join(first, 'checkpoints'), 2);
    await tune({ ...opts, out: join(second, 'model'), checkpointEvery: 1, checkpointDir: join(second, 'checkpoints'), resumeFrom }, (e) => events.push(e));
    expect(events.find((e) => e.type === 'started')).toMatchObject({ resumedFromStep: 2 });
    expect(events.flatMap((e) => (e.type === 'step' ? [e.step] : []))).toEqual([3, 4, 5, 6]);
    const [a, b] = await Promise.all([join(dir, 'straight'), join(second, 'model')].map((d) => readFile(join(d, 'model.safetensors'))));
    expect(b.equals(a)).toBe(true);
  });

  it('refuses a checkpoint that is missing or of another run, instead of starting over', async () => {
    const missing = tune({ ...opts, out: join(dir, 'never'), resumeFrom: join(dir, 'nowhere', 'step-00000002') });
    await expect(missing).rejects.toSatisfy((e) => e instanceof NarrowtuneError && e.kind === 'failed_precondition' && /not a complete step checkpoint/.test(e.message));
    const other = tune({ ...opts, seed: 7, out: join(dir, 'never'), resumeFrom: stepDir(join(dir, 'attempt-1', 'checkpoints'), 2) });
    await expect(other).rejects.toSatisfy((e) => e instanceof NarrowtuneError && e.violations[0]?.field === 'resume_from');
  });
});
