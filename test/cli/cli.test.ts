// The narrowtune command as a user runs it: a separate process, exit codes, help, and real files.
import { spawn, spawnSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartTuneRequest, type TuneJob, TuneJob_State, TuningServiceClient } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { FULL_CHECK_BYTES } from '../../src/service/data-check.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { repeatData, tempDir } from '../trainer/fixtures.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** For commands that talk to the in-process server: spawnSync would block the server's event loop. */
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

/** A port nothing listens on: bound by the OS for a moment, then released. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-cli-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('narrowtune CLI', () => {
  it('prints help for itself and every command', () => {
    const top = run(['--help']);
    expect(top.code).toBe(0);
    for (const cmd of ['tune', 'evaluate', 'init-model', 'serve', 'worker', 'jobs', 'keys', 'health', 'demo']) {
      expect(top.stdout).toContain(cmd);
      const help = run([cmd, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`Usage: narrowtune ${cmd}`));
    }
    const tune = run(['tune', '--help']).stdout;
    expect(tune).toContain('--policy NAME          full | mlp | mlp_gate_up | sa_proj | sa_proj_gate_up');
    expect(tune).toContain('--overwrite ');
    expect(run(['tuen']).stderr).toContain('unknown command "tuen"; did you mean "tune"?');
  });

  it('init-model then tune with the frozen-down policy; receipt and progress lines', async () => {
    const base = join(dir, 'base');
    const init = run(['init-model', '--arch', 'qwen2', '--hidden', '32', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--out', base]);
    expect(init.code).toBe(0);
    expect(init.stderr).toMatch(/wrote .*base: qwen2, [\d,]+ parameters/);
    const data = await repeatData(dir);
    const out = join(dir, 'tuned');
    // The default lr (the paper's 5e-6) over 6 steps: the run says it is too small to change the model.
    const args = ['tune', '--model', base, '--data', data, '--out', out, '--steps', '6', '--batch-size', '4', '--seq-len', '32'];
    const tune = run(args);
    expect(tune.code).toBe(0);
    expect(tune.stderr).toMatch(/training 4 tensors \([\d,]+ parameters\), \d+ frozen; 6 steps.*\nnote: 6 steps at lr 5e-6 .* raise --steps or --epochs/);
    expect(tune.stderr.match(/^step \d\/6 {2}loss/gm)).toHaveLength(6);
    expect(tune.stderr).toMatch(/frozen tensors bitwise unchanged/);
    const receipt = JSON.parse(await readFile(join(out, 'narrowtune.json'), 'utf8'));
    expect(receipt.policy.name).toBe('mlp_gate_up');
    expect(receipt.frozen_unchanged).toBe(true);

    const again = run(args);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already holds a fine-tuned model; pass --overwrite to replace it');
  });

  it('bad usage exits 2 with a message naming the flag', () => {
    const r = run(['tune', '--model', 'x', '--data', 'y', '--out', 'z', '--lr', 'fast']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--lr: expected a number, got "fast"');
    const misspelt = run(['tune', '--learning-rate', '1e-4']);
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr).toContain('--learning-rate: unknown option; did you mean --lr?');
    const negative = run(['tune', '--model', 'x', '--data', 'y', '--out', 'z', '--lr', '-1']);
    expect(negative.code).toBe(2);
    expect(negative.stderr).toContain('--lr: must be in (0, 1], got -1');
    expect(run(['frobnicate']).code).toBe(2);
    const missing = run(['tune', '--model', join(dir, 'missing'), '--data', 'y', '--out', 'z']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/missing: model directory does not exist/);
    const device = run(['tune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--out', join(dir, 'o'), '--device', 'cuda']);
    expect(device.code).toBe(1);
    expect(device.stderr).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('says how to get a server when none answers', async () => {
    const target = `127.0.0.1:${await closedPort()}`;
    for (const args of [['jobs', 'list'], ['health']]) {
      const r = await runAsync([...args, '--target', target]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`could not reach a narrowtune server at ${target} (connect ECONNREFUSED`);
      expect(r.stderr).toContain('start one with `narrowtune serve` or pass --target');
    }
  });

  describe('jobs against a running server', () => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await startServer({ port: 0, dataDir: join(dir, 'srv'), modelRoots: [dir], dataRoots: [dir] });
    });
    afterAll(() => server.shutdown());

    it('start --watch, get, list, cancel', async () => {
      const target = ['--target', `127.0.0.1:${server.port}`];
      const start = await runAsync(['jobs', 'start', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--steps', '5', '--lr', '1e-2', '--seq-len', '32', '--watch', ...target]);
      expect(start.code).toBe(0);
      const name = start.stdout.trim();
      expect(name).toMatch(/^jobs\/[a-z2-7]+$/);
      expect(start.stderr.match(/^step \d\/5/gm)).toHaveLength(5);
      expect(start.stderr).toContain(`${name} SUCCEEDED`);

      const get = await runAsync(['jobs', 'get', name, ...target]);
      expect(JSON.parse(get.stdout)).toMatchObject({ name, state: 'SUCCEEDED', progress: { step: 5, totalSteps: 5 } });
      expect((await runAsync(['jobs', 'list', '--state', 'succeeded', ...target])).stdout).toContain(name);
      const cancel = await runAsync(['jobs', 'cancel', name, ...target]);
      expect(cancel.code).toBe(1);
      expect(cancel.stderr).toMatch(/FAILED_PRECONDITION: job .* is already SUCCEEDED/);
      const health = await runAsync(['health', ...target]);
      expect(health).toMatchObject({ code: 0, stdout: 'SERVING\n' });
      const bad = await runAsync(['jobs', 'start', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--include', 'nope', ...target]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/INVALID_ARGUMENT[\s\S]*policy\.include\[0\]: "nope" matches no tensor/);
    });

    it('a failed job fails start --watch and watch; cancel prints the state the job comes to rest in', async () => {
      const target = ['--target', `127.0.0.1:${server.port}`];
      const outOfVocab = join(dir, 'out-of-vocab.jsonl');
      // Past StartTune's full-check size, so the job itself meets the bad line (first) and fails.
      const filler = `${JSON.stringify({ input_ids: [1, 2, 3] })}\n`.repeat(Math.ceil(FULL_CHECK_BYTES / 20));
      await writeFile(outOfVocab, `${JSON.stringify({ input_ids: [1, 2, 999_999], labels: [1, 2, 999_999] })}\n${filler}`);
      const start = await runAsync(['jobs', 'start', '--model', join(dir, 'base'), '--data', outOfVocab, '--watch', ...target]);
      expect(start.code).toBe(1);
      const failed = start.stdout.trim();
      expect(start.stderr).toContain(`${failed} FAILED`);
      expect((await runAsync(['jobs', 'watch', failed, ...target])).code).toBe(1);

      // A job far from done, cancelled while it runs: the reply says RUNNING, the job then stops within a step.
      const client = new TuningServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      const rpc = <T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void) => new Promise<T>((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
      const long = await rpc<{ job?: TuneJob }>((cb) =>
        client.startTune(
          StartTuneRequest.fromPartial({
            baseModel: { source: { $case: 'path', value: join(dir, 'base') } },
            trainingData: join(dir, 'train.jsonl'),
            hyperparameters: { steps: 100_000, seqLen: 32 },
          }),
          cb,
        ),
      );
      const name = long.job!.name;
      while ((await rpc<{ job?: TuneJob }>((cb) => client.getTuneJob({ name }, cb))).job!.state !== TuneJob_State.RUNNING) await new Promise((r) => setTimeout(r, 100));
      client.close();
      const cancel = await runAsync(['jobs', 'cancel', name, ...target]);
      expect(cancel.code).toBe(0);
      expect(cancel.stdout).toMatch(new RegExp(`^${name} {2}CANCELLED {2}step \\d+/100000`));
    });
  });
});
