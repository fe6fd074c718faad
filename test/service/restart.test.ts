// Durability: the server process is killed (-9) or stopped (SIGTERM) mid-training; on restart the job
// resumes from its last checkpoint and ends with the same weights as an uninterrupted run.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { startServer } from '../../src/service/server.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { connect, waitFor } from './client.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

let dir: string;
let base: string;
let data: string;
beforeAll(async () => {
  dir = await tempDir('nt-restart-');
  base = await tinyModel(dir, { ...TINY_QWEN2, hidden: 64, intermediate: 128 });
  data = await repeatData(dir, 32);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** `narrowtune serve` in its own process; resolves once it prints its port. */
function serve(dataDir: string, ...extra: string[]): Promise<{ proc: ChildProcess; port: number; exited: Promise<number | null> }> {
  const args = ['--import', 'tsx', MAIN, 'serve', '--port', '0', '--data-dir', dataDir, '--model-root', dir, '--data-root', dir, '--checkpoint-every', '4', ...extra];
  const proc = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /serving on .*:(\d+)/.exec(err);
      if (m) resolve({ proc, port: Number(m[1]), exited });
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
}

const request = (steps: number) => ({
  baseModel: { source: { $case: 'path' as const, value: base } },
  trainingData: data,
  hyperparameters: { steps, learningRate: 1e-2, batchSize: 8, gradAccum: 2, seqLen: 32 },
});

async function uninterrupted(steps: number): Promise<Buffer> {
  const server = await startServer({ port: 0, dataDir: join(dir, `straight-${steps}`), modelRoots: [dir], dataRoots: [dir] });
  const client = connect(server.port);
  const job = await client.startTune(request(steps));
  await client.stream(job.name);
  const done = await client.getJob(job.name);
  client.close();
  await server.shutdown();
  expect(done.state).toBe(TuneJob_State.SUCCEEDED);
  return readFile(join(done.outputPath, 'model.safetensors'));
}

describe('server restarts', () => {
  it('kill -9 mid-training: the restarted server resumes the job to the same weights', async () => {
    const steps = 60;
    const dataDir = join(dir, 'killed');
    // A lease far longer than the test: the restarted server must see that the job's worker (its own previous
    // process) is gone and take the job at once, not wait the lease out.
    const first = await serve(dataDir, '--lease-seconds', '3600');
    let client = connect(first.port);
    const job = await client.startTune(request(steps));
    // Wait past a checkpoint, then kill without warning.
    await client.stream(job.name, 0, (e) => !(e.event?.$case === 'step' && e.event.value.step >= 10));
    first.proc.kill('SIGKILL');
    await first.exited;
    client.close();

    const second = await serve(dataDir, '--lease-seconds', '3600');
    client = connect(second.port);
    const events = await client.stream(job.name);
    const started = events.filter((e) => e.event?.$case === 'started');
    expect(started).toHaveLength(2);
    const resumedFrom = started[1].event?.$case === 'started' ? started[1].event.value.resumedFromStep : -1;
    expect(resumedFrom).toBeGreaterThanOrEqual(8);
    // The restart marker: steps resume at resumed_from_step + 1, and dropping the points before the marker with a
    // larger step (what the proto tells clients to do) leaves every step exactly once.
    const restart = events.indexOf(started[1]);
    const stepsOf = (es: typeof events) => es.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value.step] : []));
    const after = stepsOf(events.slice(restart));
    expect(after[0]).toBe(resumedFrom + 1);
    const kept = [...stepsOf(events.slice(0, restart)).filter((s) => s <= resumedFrom), ...after];
    expect(kept).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    const done = await client.getJob(job.name);
    expect(done.state).toBe(TuneJob_State.SUCCEEDED);
    client.close();
    second.proc.kill('SIGTERM');
    await second.exited;

    const resumed = await readFile(join(done.outputPath, 'model.safetensors'));
    expect(resumed.equals(await uninterrupted(steps))).toBe(true);
  });

  it('SIGTERM: health goes away, the job checkpoints, streams end, and it resumes on the next start', async () => {
    const steps = 400;
    const dataDir = join(dir, 'termed');
    const first = await serve(dataDir);
    let client = connect(first.port);
    const job = await client.startTune(request(steps));
    const streamed = client.stream(job.name);
    await waitFor(async () => (await client.getJob(job.name)).progress!.step >= 3);
    first.proc.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    const seen = await streamed; // ends cleanly, without an error
    const lastStep = Math.max(...seen.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value.step] : [])));
    client.close();

    const second = await serve(dataDir);
    client = connect(second.port);
    const job2 = await waitFor(async () => {
      const j = await client.getJob(job.name);
      return j.progress!.step > lastStep ? j : null;
    });
    expect(job2.state).toBe(TuneJob_State.RUNNING);
    const events = await client.stream(job.name, 0, (e) => !(e.event?.$case === 'started' && e.sequence > 1));
    const resumed = events.at(-1)!;
    expect(resumed.event?.$case === 'started' && resumed.event.value.resumedFromStep).toBe(lastStep);
    await client.cancel(job.name);
    client.close();
    second.proc.kill('SIGTERM');
    await second.exited;
  });
});
