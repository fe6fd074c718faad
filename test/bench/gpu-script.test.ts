// bench/gpu-pack.sh + bench/gpu.sh end to end, the way a GPU host without Node runs them: the pack's own Node
// (a `node` on PATH that fails proves it is never used), the bundled benchmark, WebGPU on whatever Vulkan
// device is here (lavapipe in CI), the PyTorch baseline and its loss check. GPU timings are not asserted;
// bench/README.md records them where a GPU ran the script.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tempDir } from '../trainer/fixtures.js';
import { needs, PYTHON } from '../support/system-tools.js';

const ROOT = new URL('../..', import.meta.url).pathname;
let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-gpu-script-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function sh(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('bash', [join(ROOT, script), ...args], { env, cwd: ROOT });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, out }));
  });
}

interface Report {
  settings: { device: string; kernels: string; torchDevice: string | null };
  rows: { policy: string; status: string; narrowtune: { device: string; ok: boolean }; torch: { device: string; ok: boolean }; lossCheck: { ok: boolean; maxRelErr: number } }[];
}

// xz packing plus four sections on a software GPU: about 45 s on 2 quiet cores, past 120 s on loaded ones.
it('packs, then runs the webgpu, webgpu-fused, cpu and cuda sections with the carried Node only', { ...needs('vulkan', 'torch'), timeout: 400_000 }, async () => {
  const pack = join(dir, 'pack');
  const packed = await sh('bench/gpu-pack.sh', [pack], { ...process.env, NT_GPU_PACK_XZ: '0' });
  expect(packed.code, packed.out).toBe(0);
  expect(await readFile(join(pack, 'MANIFEST'), 'utf8')).toMatch(/onnxruntime-node 1\.\d+/);

  const fake = join(dir, 'fakebin');
  await mkdir(fake);
  await writeFile(join(fake, 'node'), '#!/bin/sh\necho "the system node was used" >&2\nexit 97\n');
  await chmod(join(fake, 'node'), 0o755);
  const out = join(dir, 'out');
  const env: NodeJS.ProcessEnv = {
    PATH: `${fake}:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: process.env.HOME,
    TMPDIR: dir,
    NT_GPU_BUNDLE: pack,
    NT_GPU_CONFIG: 'tiny',
    NT_GPU_STEPS: '3',
    NT_GPU_WARMUP: '1',
    NT_GPU_PYTHON: PYTHON,
    OUT: join(dir, 'not-the-output'), // the output folder is the argument, whatever the environment says
  };
  const run = await sh('bench/gpu.sh', [out], env);
  expect(run.code, run.out).toBe(0);
  expect(existsSync(env.OUT!)).toBe(false);
  expect(run.out).not.toMatch(/the system node was used/);

  const summary = await readFile(join(out, 'summary.txt'), 'utf8');
  expect(summary).toMatch(/webgpu: exit 0/);
  expect(summary).toMatch(/webgpu-fused: exit 0/);
  expect(summary).toMatch(/cpu: exit 0/);
  expect(summary).toMatch(/cuda: not run: the pack has no libonnxruntime_providers_cuda\.so/);
  const facts = await readFile(join(out, 'facts.txt'), 'utf8');
  expect(facts).toMatch(/vulkan loader: (host|carried)/);
  expect(facts).toMatch(/vulkaninfo: .*deviceName = /); // the carried vulkaninfo found the device WebGPU used
  expect(await readFile(join(out, 'gpu.log'), 'utf8')).toContain('| tiny   | mlp_gate_up | webgpu / cpu |');

  const fused = JSON.parse(await readFile(join(out, 'webgpu-fused.json'), 'utf8')) as Report;
  expect(fused.settings).toMatchObject({ device: 'webgpu', kernels: 'fused', torchDevice: null });
  expect(fused.rows.map((r) => [r.status, r.narrowtune.device])).toEqual(Array(3).fill(['ok', 'webgpu']));

  for (const [section, device] of [['webgpu', 'webgpu'], ['cpu', 'cpu']]) {
    const report = JSON.parse(await readFile(join(out, `${section}.json`), 'utf8')) as Report;
    expect(report.settings).toMatchObject({ device, kernels: 'auto', torchDevice: 'cpu' });
    expect(report.rows.map((r) => r.policy)).toEqual(['full', 'mlp_gate_up', 'sa_proj']);
    for (const r of report.rows) {
      expect(r.status).toBe('ok');
      expect(r.narrowtune.device).toBe(device); // the provider that actually ran, from the trainer's start event
      expect(r.torch.device).toBe('cpu');
      expect(r.lossCheck.ok).toBe(true);
      expect(r.lossCheck.maxRelErr).toBeLessThan(1e-3);
    }
  }
});
