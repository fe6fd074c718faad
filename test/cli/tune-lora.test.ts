// `narrowtune tune --adapter lora` as a user runs it: the flags, their help, and a PEFT adapter in --out.
import { spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repeatData, tempDir, tinyModel } from '../trainer/fixtures.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-cli-lora-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('narrowtune tune --adapter lora', () => {
  it('documents the flags', () => {
    const help = run(['tune', '--help']).stdout;
    for (const flag of ['--adapter lora', '--lora-rank R', '--lora-alpha A', '--lora-dropout P', '--lora-target RE', '--merge-adapter']) expect(help).toContain(flag);
  });

  it('trains a PEFT adapter on the default policy’s gate and up projections', async () => {
    const base = await tinyModel(dir);
    const data = await repeatData(dir);
    const out = join(dir, 'adapter');
    const r = run(['tune', '--model', base, '--data', data, '--out', out, '--steps', '3', '--batch-size', '4', '--seq-len', '32', '--lr', '1e-2', '--adapter', 'lora', '--lora-rank', '2', '--lora-alpha', '4']);
    expect(r.stderr).toMatch(/training 8 tensors \(768 parameters\), \d+ frozen; 3 steps/); // 2 layers × (gate, up) × (A [2,32] + B [64,2])
    expect(r.code).toBe(0);
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['gate_proj', 'up_proj'], base_model_name_or_path: '../base' });
  });

  it('refuses LoRA flags without --adapter lora, and bad values by flag', () => {
    const args = ['tune', '--model', 'x', '--data', 'y', '--out', 'z'];
    expect(run([...args, '--lora-rank', '4']).stderr).toContain('--lora-rank: needs --adapter lora');
    expect(run([...args, '--lora-target', 'q_proj']).stderr).toContain('--lora-target: needs --adapter lora');
    expect(run([...args, '--merge-adapter']).stderr).toContain('--merge-adapter: needs an adapter (--adapter lora)');
    expect(run([...args, '--adapter', 'dora']).stderr).toMatch(/--adapter: .*lora/);
    const bad = run([...args, '--adapter', 'lora', '--lora-rank', '0', '--lora-dropout', '1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--lora-rank: must be an integer in [1, 4096], got 0');
    expect(bad.stderr).toContain('--lora-dropout: must be in [0, 1), got 1');
  });
});
