// End-to-end fine-tunes of tiny models: the loss falls, the policy decides exactly which tensors move,
// the receipt proves it, and a stopped run resumes to the same weights.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsFile } from '../../src/model/safetensors-file.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { tuneInWorker } from '../../src/trainer/run-in-worker.js';
import type { TrainEvent } from '../../src/trainer/events.js';
import { tune, TrainingStopped } from '../../src/trainer/trainer.js';
import { repeatData, tempDir, TINY_LLAMA, TINY_QWEN2, tinyModel } from './fixtures.js';

let dir: string;
let data: string;
beforeAll(async () => {
  dir = await tempDir('nt-trainer-');
  data = await repeatData(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const FAST: Partial<TuneOptions> = { lr: 1e-2, steps: 30, batchSize: 4, seqLen: 32, schedule: 'constant', warmupSteps: 0 };

async function changedTensors(base: string, out: string): Promise<string[]> {
  const before = new Map((await readSafetensorsFile(join(base, 'model.safetensors'))).map((t) => [t.name, Buffer.from(t.data)]));
  const after = await readSafetensorsFile(join(out, 'model.safetensors'));
  expect(after.map((t) => t.name).sort()).toEqual([...before.keys()].sort());
  return after.filter((t) => !before.get(t.name)!.equals(Buffer.from(t.data))).map((t) => t.name);
}

describe.each([
  ['qwen2', TINY_QWEN2],
  ['llama', TINY_LLAMA],
])('%s', (arch, model) => {
  it('mlp_gate_up: loss falls; only gate/up projections move; down, attention, norms and embeddings are bitwise unchanged', async () => {
    const base = await tinyModel(dir, model, `${arch}-base`);
    const out = join(dir, `${arch}-gate-up`);
    const losses: number[] = [];
    const { receipt } = await tune({ ...DEFAULTS, ...FAST, model: base, data, out, policy: { preset: 'mlp_gate_up' } }, (e) => {
      if (e.type === 'step') losses.push(e.loss);
    });
    expect(losses).toHaveLength(30);
    // A random tiny model with frozen embeddings, final norm and lm_head can only sharpen its logits so
    // far (|logit| ≲ 0.6 here), so the fall is bounded; all-tensor training below shows the full fall.
    expect(losses.at(-1)!).toBeLessThan(losses[0] - 0.3);

    const changed = await changedTensors(base, out);
    expect(changed.sort()).toEqual(receipt.trainable.slice().sort());
    expect(changed.every((n) => /\.mlp\.(gate|up)_proj\.weight$/.test(n))).toBe(true);
    expect(changed).toHaveLength(2 * 2);

    const onDisk = JSON.parse(await readFile(join(out, 'narrowtune.json'), 'utf8')) as Receipt;
    expect(onDisk.frozen_unchanged).toBe(true);
    expect(onDisk.policy.name).toBe('mlp_gate_up');
    expect([onDisk.base_model, onDisk.data]).toEqual([`../${arch}-base`, '../train.jsonl']); // relative to the output
    expect(onDisk.steps.map((s) => s.loss)).toEqual(losses);
    for (const name of Object.keys(onDisk.frozen)) expect(onDisk.frozen[name].sha256_before).toBe(onDisk.frozen[name].sha256_after);
    const frozenNames = Object.keys(onDisk.frozen);
    expect(frozenNames).toContain('model.layers.1.mlp.down_proj.weight');
    expect(frozenNames).toContain('model.embed_tokens.weight');
    expect(frozenNames).toContain('model.layers.0.self_attn.q_proj.weight');
    expect(frozenNames).toContain('model.norm.weight');
  });

  it('training every tensor learns the skill: the loss falls by more than half', async () => {
    const base = await tinyModel(dir, model, `${arch}-base-all`);
    const losses: number[] = [];
    await tune({ ...DEFAULTS, ...FAST, model: base, data, out: join(dir, `${arch}-all`), policy: { include: ['.'] } }, (e) => {
      if (e.type === 'step') losses.push(e.loss);
    });
    expect(losses.at(-1)!).toBeLessThan(losses[0] / 2);
  });

  it('sa_proj: only attention projections move', async () => {
    const base = await tinyModel(dir, model, `${arch}-base-sa`);
    const out = join(dir, `${arch}-sa`);
    await tune({ ...DEFAULTS, ...FAST, steps: 5, model: base, data, out, policy: { preset: 'sa_proj' } });
    const changed = await changedTensors(base, out);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((n) => /\.self_attn\.(q|k|v|o)_proj\.(weight|bias)$/.test(n))).toBe(true);
  });
});

describe('stop and resume', () => {
  it('a run stopped after a checkpoint and resumed ends with the same weights as an uninterrupted run', async () => {
    const base = await tinyModel(dir, TINY_QWEN2, 'resume-base');
    const opts: TuneOptions = { ...DEFAULTS, ...FAST, steps: 8, gradAccum: 2, batchSize: 2, schedule: 'cosine', warmupSteps: 2, model: base, data, out: '' };
    await tune({ ...opts, out: join(dir, 'straight') });

    const ckpts = join(dir, 'resume-ckpts');
    const controller = new AbortController();
    const events: TrainEvent[] = [];
    const first = tune({ ...opts, out: join(dir, 'resumed'), checkpointEvery: 100, checkpointDir: ckpts }, (e) => {
      events.push(e);
      if (e.type === 'step' && e.step === 3) controller.abort('shutdown');
    }, controller.signal);
    await expect(first).rejects.toBeInstanceOf(TrainingStopped);
    expect(events.filter((e) => e.type === 'checkpoint').map((e) => (e as { step: number }).step)).toEqual([3]);

    const resumedEvents: TrainEvent[] = [];
    await tune({ ...opts, out: join(dir, 'resumed'), checkpointEvery: 100, checkpointDir: ckpts, resume: true }, (e) => resumedEvents.push(e));
    const start = resumedEvents.find((e) => e.type === 'started') as { resumedFromStep: number };
    expect(start.resumedFromStep).toBe(3);
    expect(resumedEvents.filter((e) => e.type === 'step').map((e) => (e as { step: number }).step)).toEqual([4, 5, 6, 7, 8]);

    const a = await readFile(join(dir, 'straight', 'model.safetensors'));
    const b = await readFile(join(dir, 'resumed', 'model.safetensors'));
    expect(b.equals(a)).toBe(true);
    const receipt = JSON.parse(await readFile(join(dir, 'resumed', 'narrowtune.json'), 'utf8')) as Receipt;
    expect(receipt.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('worker thread', () => {
  it('trains without blocking the caller\'s event loop', async () => {
    const base = await tinyModel(dir, { ...TINY_QWEN2, hidden: 64, intermediate: 256, layers: 4 }, 'worker-base');
    let ticks = 0;
    let worstGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
      ticks++;
    }, 5);
    const steps: number[] = [];
    try {
      await tuneInWorker({ ...DEFAULTS, ...FAST, steps: 20, batchSize: 8, model: base, data, out: join(dir, 'worker-out') }, (e) => {
        if (e.type === 'step') steps.push(e.step);
      });
    } finally {
      clearInterval(timer);
    }
    expect(steps).toHaveLength(20);
    expect(ticks).toBeGreaterThan(5);
    // Loose bound for a loaded 2-core machine; a blocked loop would stall for the whole run.
    expect(worstGap).toBeLessThan(250);
  });

  it('reports a bad policy as an error naming the valid tensors', async () => {
    const base = await tinyModel(dir, TINY_QWEN2, 'worker-bad');
    await expect(tuneInWorker({ ...DEFAULTS, model: base, data, out: join(dir, 'x'), policy: { include: ['mlp\\.nothing'] } })).rejects.toThrow(
      /policy\.include\[0\]: "mlp\\\.nothing" matches no tensor; valid tensor names: .*model\.layers\.\{0\.\.1\}\.mlp\.down_proj\.weight/,
    );
  });
});
