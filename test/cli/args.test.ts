// Flag parsing and the tune command's checks, in-process: the messages a user sees for common mistakes.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFlags } from '../../src/cli/args.js';
import { closest, editDistance } from '../../src/cli/suggest.js';
import { checkOut, parseTuneArgs, smallRunNote } from '../../src/cli/tune-command.js';
import { tempDir } from '../trainer/fixtures.js';

const REQUIRED = ['--model', 'm', '--data', 'd', '--out', 'o'];

/** The message of what `fn` throws. */
function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('flags', () => {
  it('takes a negative number as a value and then checks its range by the flag name', () => {
    expect(parseFlags(['--lr', '-1'], { lr: { type: 'string' } })).toEqual({ lr: '-1' });
    expect(parseFlags(['--x', '-.5', '--y', 'a'], { x: { type: 'string' }, y: { type: 'string' } })).toEqual({ x: '-.5', y: 'a' });
    expect(thrown(() => parseTuneArgs([...REQUIRED, '--lr', '-1']))).toBe('--lr: must be in (0, 1], got -1');
    expect(thrown(() => parseTuneArgs([...REQUIRED, '--batch-size', '0', '--max-kl-to-base', '1']))).toBe(
      '--batch-size: must be an integer in [1, 1024], got 0\n--max-kl-to-base: a drift budget needs probe data to measure drift on',
    );
  });

  it('takes --threads for onnxruntime, within its range', () => {
    expect(parseTuneArgs(REQUIRED).threads).toBeNull();
    expect(parseTuneArgs([...REQUIRED, '--threads', '2']).threads).toBe(2);
    expect(thrown(() => parseTuneArgs([...REQUIRED, '--threads', '0']))).toBe('--threads: must be an integer in [1, 1024], got 0');
  });

  it('names a missing value, and says how to pass one that starts with a dash', () => {
    expect(thrown(() => parseFlags(['--steps'], { steps: { type: 'string' } }))).toBe('--steps: takes a value');
    expect(thrown(() => parseFlags(['--include', '-mlp'], { include: { type: 'string' } }))).toBe(
      '--include: takes a value; to pass one that starts with "-", write --include=-mlp',
    );
    expect(parseFlags(['--include=-mlp'], { include: { type: 'string' } })).toEqual({ include: '-mlp' });
  });

  it('suggests the flag an unknown one probably meant', () => {
    expect(thrown(() => parseTuneArgs([...REQUIRED, '--learning-rate', '1e-4']))).toBe('--learning-rate: unknown option; did you mean --lr? (--help lists the options)');
    expect(thrown(() => parseTuneArgs(['--toString']))).toBe('--toString: unknown option (--help lists the options)');
  });

  it('finds close words by alias, edit distance (with transpositions) and unique prefix, and only those', () => {
    expect(editDistance('modle', 'model')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    const flags = ['model', 'data', 'out', 'overwrite', 'lr', 'steps', 'epochs', 'batch-size', 'warmup-steps', 'max-kl-to-base', 'max-number-mass-delta'];
    expect(closest('learning_rate', flags)).toBe('lr');
    expect(closest('output-dir', flags)).toBe('out');
    expect(closest('batch_size', flags)).toBe('batch-size');
    expect(closest('modle', flags)).toBe('model');
    expect(closest('step', flags)).toBe('steps');
    expect(closest('max-kl', flags)).toBe('max-kl-to-base');
    expect(closest('max', flags)).toBeUndefined(); // two flags start with it
    expect(closest('frobnicate', flags)).toBeUndefined();
    expect(closest('lr', ['model'])).toBeUndefined(); // an alias only for a flag the command has
  });
});

describe('tune --out', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('nt-out-');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('takes a new or empty directory, replaces an earlier result only with --overwrite, and never anything else', async () => {
    await expect(checkOut(join(dir, 'new'), false)).resolves.toBeUndefined();
    await mkdir(join(dir, 'empty'));
    await expect(checkOut(join(dir, 'empty'), false)).resolves.toBeUndefined();

    const earlier = join(dir, 'earlier');
    await mkdir(earlier);
    await writeFile(join(earlier, 'narrowtune.json'), '{}');
    await expect(checkOut(earlier, false)).rejects.toThrow(`--out: ${earlier} already holds a fine-tuned model; pass --overwrite to replace it`);
    await expect(checkOut(earlier, true)).resolves.toBeUndefined();

    const foreign = join(dir, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'notes.txt'), 'mine');
    await expect(checkOut(foreign, true)).rejects.toThrow(/is not empty and holds no narrowtune output/);
    await expect(checkOut(join(foreign, 'notes.txt'), true)).rejects.toThrow(/exists and is not a directory/);
    expect(parseTuneArgs([...REQUIRED, '--overwrite']).overwrite).toBe(true);
  });
});

describe('a run too small to change the model', () => {
  it('is named, with the flags to raise and by how much', () => {
    // The defaults on a 20-example file: lr 5e-6, one epoch of batches of 4 = 5 steps.
    expect(smallRunNote(5e-6, 5)).toBe(
      'note: 5 steps at lr 5e-6 can move a weight by about 3e-5 at most, likely too little to change the model; ' +
        'raise --steps or --epochs (100 steps at this lr) or --lr (1e-4 for 5 steps)',
    );
    expect(smallRunNote(5e-6, 100)).toBeNull(); // 100 × 5e-6 = MIN_LR_STEPS
    expect(smallRunNote(1e-2, 6)).toBeNull();
  });
});
