// WiSE-FT merge: rounding once from float64, element-wise agreement with a float64 reference
// (test/reference/merge_reference.py) for bf16, f16 and f32 models and for base + LoRA adapter, and the refusals.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initModel, type InitModelOptions } from '../../src/model/init-model.js';
import { fromFloat64, mergeModels, type MergeReceipt } from '../../src/model/merge.js';
import { adapterConfigJson, peftTensorName } from '../../src/model/peft-adapter.js';
import { fromFloat32, parseSafetensors, serializeSafetensors, type Dtype } from '../../src/model/safetensors.js';
import { Rng } from '../../src/util/rng.js';
import { needs, PYTHON } from '../support/system-tools.js';

const REFERENCE = new URL('../reference/merge_reference.py', import.meta.url).pathname;
const MODEL: Omit<InitModelOptions, 'out'> = { arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-merge-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const copy = (b: Uint8Array) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
const u16 = (b: Uint8Array) => Array.from(new Uint16Array(copy(b)));

describe('fromFloat64 rounds once to nearest even', () => {
  it('bf16: a value just above a midpoint rounds up, where rounding through float32 would tie down to even', () => {
    // 1 + 2^-8 is the midpoint between bf16 1 (0x3f80) and 1 + 2^-7 (0x3f81); float32 rounds 1 + 2^-8 + 2^-29 onto it.
    expect(u16(fromFloat64(Float64Array.of(1 + 2 ** -8 + 2 ** -29), 'BF16'))).toEqual([0x3f81]);
    expect(u16(fromFloat32(Float32Array.of(1 + 2 ** -8 + 2 ** -29), 'BF16'))).toEqual([0x3f80]);
    expect(u16(fromFloat64(Float64Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 - 2 ** -40)), 'BF16'))).toEqual([0x3f80, 0x3f82, 0xbf80]);
  });

  it('f16: the same above and at a midpoint, and subnormals', () => {
    // f16 spacing at 1 is 2^-10: 1 + 2^-11 is a midpoint.
    expect(u16(fromFloat64(Float64Array.of(1 + 2 ** -11 + 2 ** -30, 1 + 2 ** -11, 3 * 2 ** -25, 2 ** -26), 'F16'))).toEqual([0x3c01, 0x3c00, 0x0002, 0x0000]);
  });

  it('f32 rounds as a float32 cast does', () => {
    const x = Float64Array.of(0.1, -1 / 3, 1e-40);
    expect(new Float32Array(fromFloat64(x, 'F32').buffer)).toEqual(Float32Array.from(x));
  });
});

/** A PEFT LoRA adapter on gate_proj and up_proj of every layer, random A and B, written as PEFT names them. */
async function writeAdapter(out: string, base: string, dtype: Dtype, rank = 4, alpha = 8): Promise<void> {
  const rng = new Rng(9);
  const tensors = [];
  for (let layer = 0; layer < MODEL.layers; layer++) {
    for (const proj of ['gate_proj', 'up_proj']) {
      const module = `model.layers.${layer}.mlp.${proj}`;
      const a = Float32Array.from({ length: rank * MODEL.hidden }, () => rng.normal() * 0.2);
      const b = Float32Array.from({ length: MODEL.intermediate! * rank }, () => rng.normal() * 0.2);
      tensors.push({ name: peftTensorName(`${module}.lora_A.weight`), dtype, shape: [rank, MODEL.hidden], data: fromFloat32(a, dtype) });
      tensors.push({ name: peftTensorName(`${module}.lora_B.weight`), dtype, shape: [MODEL.intermediate!, rank], data: fromFloat32(b, dtype) });
    }
  }
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'adapter_model.safetensors'), serializeSafetensors(tensors));
  await writeFile(join(out, 'adapter_config.json'), JSON.stringify(adapterConfigJson({ rank, alpha, dropout: 0, targetModules: ['gate_proj', 'up_proj'], base })));
}

/** Merges and checks every stored element against the reference, bit for bit. */
async function checkAgainstReference(name: string, spec: { base: string; tuned?: string; adapter?: string; alpha: number }): Promise<MergeReceipt> {
  const out = join(dir, `${name}-out`);
  const { receipt } = await mergeModels({ base: spec.base, tuned: spec.tuned ?? spec.adapter!, alpha: spec.alpha, out });
  const specFile = join(dir, `${name}-spec.json`);
  const refFile = join(dir, `${name}-ref.json`);
  await writeFile(specFile, JSON.stringify({ base_dir: spec.base, tuned_dir: spec.tuned ?? null, adapter_dir: spec.adapter ?? null, alpha: spec.alpha }));
  execFileSync(PYTHON, [REFERENCE, specFile, refFile], { stdio: 'pipe' });
  const ref = JSON.parse(await readFile(refFile, 'utf8')) as Record<string, { dtype: string; bits: number[] }>;
  const written = parseSafetensors(await readFile(join(out, 'model.safetensors')), 'out');
  expect(written.map((t) => t.name).sort()).toEqual(Object.keys(ref).sort());
  for (const t of written) {
    expect(t.dtype, t.name).toBe(ref[t.name].dtype);
    const bits = t.dtype === 'F32' ? Array.from(new Uint32Array(copy(t.data))) : u16(t.data);
    const mismatches = bits.filter((b, i) => b !== ref[t.name].bits[i]).length;
    expect(mismatches, `${t.name}: elements that differ from the reference`).toBe(0);
  }
  return receipt;
}

describe('merge agrees with a float64 reference element by element', needs('torch'), () => {
  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    it(`two ${dtype} models at alpha 0.3`, async () => {
      const base = join(dir, `base-${dtype}`);
      const tuned = join(dir, `tuned-${dtype}`);
      await initModel({ ...MODEL, dtype, seed: 3, out: base });
      await initModel({ ...MODEL, dtype, seed: 4, out: tuned });
      const receipt = await checkAgainstReference(`full-${dtype}`, { base, tuned, alpha: 0.3 });
      // Norm weights (ones) and biases (zeros) start alike in both models: those are copied.
      const read = async (d: string) => new Map(parseSafetensors(await readFile(join(d, 'model.safetensors')), d).map((t) => [t.name, t.data]));
      const [x, y] = [await read(base), await read(tuned)];
      expect(receipt.interpolated).toBe([...x].filter(([n, bytes]) => Buffer.compare(bytes, y.get(n)!) !== 0).length);
      expect(receipt.interpolated).toBeGreaterThan(receipt.tensors / 2);
    });
  }

  it('base + a LoRA adapter (bf16) at alpha 0.6: only the adapted tensors change', async () => {
    const base = join(dir, 'base-BF16');
    const adapter = join(dir, 'adapter');
    await writeAdapter(adapter, base, 'BF16');
    const receipt = await checkAgainstReference('adapter', { base, adapter, alpha: 0.6 });
    expect(receipt.interpolated).toBe(2 * MODEL.layers);
    expect(receipt.tuned.adapter).toMatchObject({ rank: 4, alpha: 8 });
  });
});

describe('merge', () => {
  let base: string;
  let tuned: string;
  beforeAll(async () => {
    base = join(dir, 'plain-base');
    tuned = join(dir, 'plain-tuned');
    await initModel({ ...MODEL, dtype: 'BF16', seed: 3, out: base });
    await initModel({ ...MODEL, dtype: 'BF16', seed: 4, out: tuned });
  });

  it('alpha 0 gives the base and alpha 1 the tuned model, byte for byte; the receipt names inputs by hash', async () => {
    const weights = async (d: string) => readFile(join(d, 'model.safetensors'));
    const { receipt: r0 } = await mergeModels({ base, tuned, alpha: 0, out: join(dir, 'a0') });
    const { receipt: r1 } = await mergeModels({ base, tuned, alpha: 1, out: join(dir, 'a1') });
    expect(Buffer.compare(await weights(join(dir, 'a0')), await weights(base))).toBe(0);
    expect(Buffer.compare(await weights(join(dir, 'a1')), await weights(tuned))).toBe(0);
    expect(r0.base.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(r0.base.sha256).toBe(r1.base.sha256);
    expect(r0.tuned.sha256).not.toBe(r0.base.sha256);
    const written = JSON.parse(await readFile(join(dir, 'a1', 'narrowtune.json'), 'utf8')) as MergeReceipt;
    expect(written).toMatchObject({ method: 'wise_ft', alpha: 1, base: { path: '../plain-base' }, tuned: { path: '../plain-tuned', adapter: null } });
    const files = await readdir(join(dir, 'a1'));
    expect(files).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'narrowtune.json', 'tokenizer.json']));
  });

  it('refuses a model of another architecture or other shapes, and alpha outside [0, 1]', async () => {
    const wide = join(dir, 'wide');
    await initModel({ ...MODEL, hidden: 48, dtype: 'BF16', out: wide });
    await expect(mergeModels({ base, tuned: wide, alpha: 0.5, out: join(dir, 'bad') })).rejects.toThrow(/has hidden(Size)? 48 where the model has 32; WiSE-FT merges models of one architecture and shapes/);
    const llama = join(dir, 'llama');
    await initModel({ ...MODEL, arch: 'llama', dtype: 'BF16', out: llama });
    await expect(mergeModels({ base, tuned: llama, alpha: 0.5, out: join(dir, 'bad') })).rejects.toThrow(/where the model has "qwen2"/);
    await expect(mergeModels({ base, tuned, alpha: 1.5, out: join(dir, 'bad') })).rejects.toThrow('alpha: must be in [0, 1], got 1.5');
  });
});
