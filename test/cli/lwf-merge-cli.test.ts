// The CLI side of LwF and WiSE-FT: `tune`'s --lwf-* / --teacher flags, the step line with its two loss terms (as
// `tune` and `jobs watch` show it), and `narrowtune merge` as a user runs it.
import { spawn, spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressReporter } from '../../src/cli/progress.js';
import { parseTuneArgs } from '../../src/cli/tune-command.js';
import { jobEventFromProto, jobEventToProto } from '../../src/service/event-to-proto.js';
import { startServer } from '../../src/service/server.js';
import type { TrainStep } from '../../src/trainer/events.js';
import { repeatData, tempDir, TINY_LLAMA, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
const BASE_ARGS = ['--model', 'm', '--data', 'd.jsonl', '--out', 'o'];

/** For commands that talk to a server in this process: spawnSync would block its event loop. */
function runAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('tune --lwf-weight', () => {
  it('defaults the temperature to 2 and the teacher to the base model', () => {
    expect(parseTuneArgs(BASE_ARGS).lwf).toBeNull();
    expect(parseTuneArgs([...BASE_ARGS, '--lwf-weight', '1']).lwf).toEqual({ weight: 1, temperature: 2, teacher: null });
    expect(parseTuneArgs([...BASE_ARGS, '--lwf-weight', '0.5', '--lwf-temperature', '4', '--teacher', 'prev']).lwf).toEqual({ weight: 0.5, temperature: 4, teacher: 'prev' });
  });

  it('names the flag of each problem', () => {
    expect(() => parseTuneArgs([...BASE_ARGS, '--teacher', 'prev'])).toThrow('--teacher: needs --lwf-weight');
    expect(() => parseTuneArgs([...BASE_ARGS, '--lwf-temperature', '3'])).toThrow('--lwf-temperature: needs --lwf-weight');
    expect(() => parseTuneArgs([...BASE_ARGS, '--lwf-weight', '-1', '--lwf-temperature', '0'])).toThrow(/--lwf-weight: must be in \(0, 1000\], got -1\n--lwf-temperature: must be in \(0, 100\], got 0/);
  });
});

describe('the step line of an LwF run', () => {
  it('shows the cross-entropy and the KL beside the loss, locally and through the wire', () => {
    const step: TrainStep = { type: 'step', step: 1, totalSteps: 1, loss: 3.5, crossEntropy: 3.25, lwfKl: 0.0625, learningRate: 1e-3, gradNorm: 0.5, tokens: 8, tokensPerSecond: 16, elapsedSeconds: 0.5 };
    // The wire drops `tokens`, which the line does not show.
    for (const e of [step, jobEventFromProto(jobEventToProto(step)) as TrainStep]) {
      const out: string[] = [];
      progressReporter({ isTTY: false, write: (s: string) => out.push(s) > 0 } as unknown as NodeJS.WriteStream)(e);
      expect(out.join('')).toBe('step 1/1  loss 3.5000 (ce 3.2500 kl 0.0625)  lr 1.00e-3  grad 0.500  16 tok/s  elapsed 00:01\n');
    }
  });
});

describe('narrowtune merge', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('nt-merge-cli-');
    await tinyModel(dir);
    await tinyModel(dir, { ...TINY_QWEN2, seed: 8 }, 'tuned');
    await tinyModel(dir, TINY_LLAMA, 'llama');
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('writes the merge and its receipt; a second run needs --overwrite', async () => {
    const args = ['merge', '--base', join(dir, 'base'), '--tuned', join(dir, 'tuned'), '--alpha', '0.5', '--out', join(dir, 'merged')];
    const r = run(args);
    expect(r.stderr).toMatch(/^wrote .*merged: \d+ of \d+ tensors interpolated at alpha 0.5\n$/);
    expect(r.status).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'merged', 'narrowtune.json'), 'utf8'))).toMatchObject({ method: 'wise_ft', alpha: 0.5 });
    expect(run(args)).toMatchObject({ status: 2, stderr: expect.stringContaining('pass --overwrite to replace it') });
    expect(run([...args, '--overwrite']).status).toBe(0);
  });

  it('refuses a bad alpha and a model of another architecture with exit code 2', () => {
    const r = run(['merge', '--base', join(dir, 'base'), '--tuned', join(dir, 'tuned'), '--alpha', '2', '--out', join(dir, 'x')]);
    expect(r).toMatchObject({ status: 2, stderr: 'narrowtune merge: --alpha: must be in [0, 1], got 2\n' });
    const arch = run(['merge', '--base', join(dir, 'base'), '--tuned', join(dir, 'llama'), '--alpha', '0.5', '--out', join(dir, 'x')]);
    expect(arch.status).toBe(2);
    expect(arch.stderr).toMatch(/has arch "llama" where the model has "qwen2"; WiSE-FT merges models of one architecture and shapes/);
  });

  it('has help that names the formula', () => {
    expect(run(['merge', '--help']).stdout).toContain('(1 − A)·base + A·tuned');
  });
});

describe('jobs start --lwf-weight --teacher', () => {
  it('sends the LwF term with the teacher as a path; the job shows its method and both loss terms', async () => {
    const dir = await tempDir('nt-lwf-jobs-');
    const server = await startServer({ port: 0, dataDir: join(dir, 'srv'), modelRoots: [dir], dataRoots: [dir] });
    try {
      await tinyModel(dir);
      await tinyModel(dir, { ...TINY_QWEN2, seed: 8 }, 'teacher');
      const data = await repeatData(dir);
      const target = ['--target', `127.0.0.1:${server.port}`];
      const args = ['--model', join(dir, 'base'), '--data', data, '--steps', '3', '--lr', '1e-2', '--seq-len', '32', '--batch-size', '2'];
      const start = await runAsync(['jobs', 'start', ...args, '--lwf-weight', '2', '--lwf-temperature', '3', '--teacher', join(dir, 'teacher'), '--watch', ...target]);
      expect(start.code, start.stderr).toBe(0);
      expect(start.stderr.match(/^step \d\/3  loss \d+\.\d+ \(ce \d+\.\d+ kl \d+\.\d+\)/gm)).toHaveLength(3);
      const job = JSON.parse((await runAsync(['jobs', 'get', start.stdout.trim(), ...target])).stdout);
      expect(job.method).toMatchObject({ kind: 'policy', lwf: { weight: 2, temperature: 3, teacher: { path: join(dir, 'teacher') } } });
    } finally {
      await server.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
