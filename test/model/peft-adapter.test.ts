// PEFT's LoRA adapter format: what a directory with adapter_config.json may hold, how it loads as base + adapter,
// and the merge W + scaling·B·A.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectCheckpoint, loadCheckpoint } from '../../src/model/checkpoint.js';
import { adapterConfigJson, mergeLora, readAdapterConfig, targetModules } from '../../src/model/peft-adapter.js';
import { writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { fromFloat32, toFloat32, type StoredTensor } from '../../src/model/safetensors.js';
import { tempDir, tinyModel } from '../trainer/fixtures.js';

let dir: string;
let base: string;
beforeAll(async () => {
  dir = await tempDir('nt-peft-');
  base = await tinyModel(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const f32 = (name: string, shape: number[], values: number[]): StoredTensor => ({ name, dtype: 'F32', shape, data: fromFloat32(Float32Array.from(values), 'F32') });
const ramp = (n: number, k: number) => Array.from({ length: n }, (_, i) => ((i * k) % 7) / 7 - 0.4);

/** An adapter directory: config (overridable) and tensors. */
async function adapter(name: string, config: Record<string, unknown>, tensors: StoredTensor[]): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  const c = { ...adapterConfigJson({ rank: 2, alpha: 6, dropout: 0, targetModules: ['q_proj'], base: '../base' }), ...config };
  await writeFile(join(d, 'adapter_config.json'), JSON.stringify(c));
  await writeSafetensorsFile(join(d, 'adapter_model.safetensors'), tensors);
  return d;
}

const Q = 'model.layers.0.self_attn.q_proj';
const pair = (module = Q, out = 32, inp = 32) => [
  f32(`base_model.model.${module}.lora_A.weight`, [2, inp], ramp(2 * inp, 3)),
  f32(`base_model.model.${module}.lora_B.weight`, [out, 2], ramp(2 * out, 5)),
];

describe('PEFT adapters', () => {
  it('merge W + scaling·B·A elementwise, in the weight’s dtype', () => {
    const w = f32('w', [3, 2], [1, 2, 3, 4, 5, 6]);
    const a = f32('a', [1, 2], [0.5, -1]);
    const b = f32('b', [3, 1], [2, 0, -1]);
    expect(Array.from(toFloat32(mergeLora(w, { a, b }, 0.5)))).toEqual([1.5, 1, 3, 4, 4.75, 6.5]);
    const bf16 = { ...w, dtype: 'BF16' as const, data: fromFloat32(toFloat32(w), 'BF16') };
    expect(mergeLora(bf16, { a, b }, 0.5).dtype).toBe('BF16');
  });

  it('target_modules: short names when every layer is adapted, else a regex PEFT full-matches', () => {
    const all = [0, 1].flatMap((l) => ['q_proj', 'v_proj', 'gate_proj'].map((m) => `model.layers.${l}.${m.startsWith('gate') ? 'mlp' : 'self_attn'}.${m}.weight`));
    expect(targetModules(all.filter((n) => n.includes('q_proj') || n.includes('gate')), all)).toEqual(['q_proj', 'gate_proj']);
    expect(targetModules(['model.layers.1.self_attn.q_proj.weight'], all)).toBe('^(model\\.layers\\.1\\.self_attn\\.q_proj)$');
  });

  it('load as the base model with the adapter merged; the base is found relative to the adapter', async () => {
    const d = await adapter('plain', {}, pair());
    const merged = await loadCheckpoint(d);
    const plain = await loadCheckpoint(base);
    const w = plain.tensors.get(`${Q}.weight`)!;
    const [a, b] = pair().map((t) => ({ ...t, name: t.name }));
    expect(Buffer.from(merged.tensors.get(`${Q}.weight`)!.data).equals(Buffer.from(mergeLora(w, { a, b }, 3).data))).toBe(true);
    expect(Buffer.from(merged.tensors.get('model.norm.weight')!.data).equals(Buffer.from(plain.tensors.get('model.norm.weight')!.data))).toBe(true);
    expect((await inspectCheckpoint(d)).files.at(-1)).toBe(join(d, 'adapter_model.safetensors'));
    // use_rslora scales by alpha/√r.
    expect((await readAdapterConfig(await adapter('rs', { use_rslora: true }, pair())))!.scale).toBeCloseTo(6 / Math.SQRT2, 12);
  });

  it('refuses what it cannot load faithfully, naming the file and the problem', async () => {
    const cases: [string, Record<string, unknown>, StoredTensor[], RegExp][] = [
      ['ia3', { peft_type: 'IA3' }, pair(), /adapter_config\.json: peft_type must be "LORA", got "IA3"/],
      ['dora', { use_dora: true }, pair(), /DoRA adapters \(use_dora\) are not supported/],
      ['conv1d', { fan_in_fan_out: true }, pair(), /fan_in_fan_out adapters/],
      ['pattern', { rank_pattern: { q_proj: 4 } }, pair(), /rank_pattern is not supported/],
      ['nobase', { base_model_name_or_path: 'missing' }, pair(), /missing: model directory does not exist/],
      ['unknown', {}, pair('model.layers.0.self_attn.x_proj'), /adapts model\.layers\.0\.self_attn\.x_proj\.weight, which the base model does not have/],
      ['shape', {}, pair(Q, 16), /model\.layers\.0\.self_attn\.q_proj\.weight has shape \[32,32\], which lora_A \[2,32\] and lora_B \[16,2\] do not fit/],
      ['half', {}, pair().slice(0, 1), /model\.layers\.0\.self_attn\.q_proj has lora_B missing/],
      ['rank', { r: 3 }, pair(), /do not have rank 3/],
    ];
    for (const [name, config, tensors, message] of cases) {
      const d = await adapter(name, config, tensors);
      await expect(loadCheckpoint(d), name).rejects.toThrow(message);
      await expect(inspectCheckpoint(d), name).rejects.toThrow(message);
    }
    const onAdapter = await adapter('stacked', { base_model_name_or_path: '../plain' }, pair());
    await expect(loadCheckpoint(onAdapter)).rejects.toThrow(/is itself an adapter; merge it first/);
  });
});
