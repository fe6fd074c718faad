// The narrowtune command as a user runs it: a separate process, exit codes, help, and real files.
import { spawn, spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-cli-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('narrowtune CLI', () => {
  it('prints help for itself and every command', () => {
    const top = run(['--help']);
    expect(top.code).toBe(0);
    for (const cmd of ['tune', 'init-model', 'serve', 'jobs', 'health']) {
      expect(top.stdout).toContain(cmd);
      const help = run([cmd, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`Usage: narrowtune ${cmd}`));
    }
    expect(run(['tune', '--help']).stdout).toContain('--policy NAME          full | mlp | mlp_gate_up | sa_proj | sa_proj_gate_up');
  });

  it('init-model then tune with the frozen-down policy; receipt and progress lines', async () => {
    const base = join(dir, 'base');
    const init = run(['init-model', '--arch', 'qwen2', '--hidden', '32', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--out', base]);
    expect(init.code).toBe(0);
    expect(init.stderr).toMatch(/wrote .*base: qwen2, [\d,]+ parameters/);
    const data = await repeatData(dir);
    const out = join(dir, 'tuned');
    const tune = run(['tune', '--model', base, '--data', data, '--out', out, '--steps', '6', '--lr', '1e-2', '--batch-size', '4', '--seq-len', '32']);
    expect(tune.code).toBe(0);
    expect(tune.stderr).toMatch(/training 4 tensors \([\d,]+ parameters\), \d+ frozen; 6 steps/);
    expect(tune.stderr.match(/^step \d\/6 {2}loss/gm)).toHaveLength(6);
    expect(tune.stderr).toMatch(/frozen tensors bitwise unchanged/);
    const receipt = JSON.parse(await readFile(join(out, 'narrowtune.json'), 'utf8'));
    expect(receipt.policy.name).toBe('mlp_gate_up');
    expect(receipt.frozen_unchanged).toBe(true);
  });

  it('bad usage exits 2 with a message naming the flag', () => {
    const r = run(['tune', '--model', 'x', '--data', 'y', '--out', 'z', '--lr', 'fast']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--lr: expected a number, got "fast"');
    expect(run(['tune', '--nope']).code).toBe(2);
    expect(run(['frobnicate']).code).toBe(2);
    const missing = run(['tune', '--model', join(dir, 'missing'), '--data', 'y', '--out', 'z']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/missing: model directory does not exist/);
    const device = run(['tune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--out', join(dir, 'o'), '--device', 'cuda']);
    expect(device.code).toBe(1);
    expect(device.stderr).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
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
  });
});
