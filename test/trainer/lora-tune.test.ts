// LoRA fine-tunes end to end on a tiny model: the PEFT adapter directory and its receipt, the merged output,
// loading base + adapter for Evaluate, seeded dropout, and the options' checks.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/eval/evaluate.js';
import { inspectCheckpoint, loadCheckpoint } from '../../src/model/checkpoint.js';
import { readSafetensorsFile } from '../../src/model/safetensors-file.js';
import { DEFAULTS, type TuneOptions, validateOptions } from '../../src/trainer/options.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { tune, TrainingStopped } from '../../src/trainer/trainer.js';
import { repeatData, tempDir, tinyModel } from './fixtures.js';

let dir: string;
let data: string;
let base: string;
beforeAll(async () => {
  dir = await tempDir('nt-lora-');
  data = await repeatData(dir);
  base = await tinyModel(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const LORA = { rank: 4, alpha: 8, dropout: 0, targets: [] };
const FAST: Partial<TuneOptions> = { lr: 1e-2, steps: 12, batchSize: 4, seqLen: 32, schedule: 'constant', warmupSteps: 0, policy: { preset: 'mlp_gate_up' } };
const options = (out: string, o: Partial<TuneOptions>): TuneOptions => ({ ...DEFAULTS, ...FAST, model: base, data, out, lora: LORA, ...o });

const json = async <T>(path: string) => JSON.parse(await readFile(path, 'utf8')) as T;

describe('LoRA', () => {
  it('writes a PEFT adapter on the policy’s projections; the loss falls and the receipt proves the base unchanged', async () => {
    const out = join(dir, 'adapter');
    const losses: number[] = [];
    const { receipt } = await tune(options(out, {}), (e) => e.type === 'step' && losses.push(e.loss));
    expect(losses.at(-1)!).toBeLessThan(losses[0] - 0.1);

    const config = await json<Record<string, unknown>>(join(out, 'adapter_config.json'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, bias: 'none', fan_in_fan_out: false });
    expect(config.target_modules).toEqual(['gate_proj', 'up_proj']);
    expect(config.base_model_name_or_path).toBe('../base');
    const tensors = await readSafetensorsFile(join(out, 'adapter_model.safetensors'));
    expect(tensors.map((t) => t.name).sort()).toEqual(
      [0, 1].flatMap((l) => ['gate', 'up'].flatMap((p) => ['A', 'B'].map((ab) => `base_model.model.model.layers.${l}.mlp.${p}_proj.lora_${ab}.weight`))).sort(),
    );
    const a = tensors.find((t) => t.name.endsWith('layers.0.mlp.gate_proj.lora_A.weight'))!;
    const b = tensors.find((t) => t.name.endsWith('layers.0.mlp.gate_proj.lora_B.weight'))!;
    expect([a.dtype, a.shape, b.shape]).toEqual(['F32', [4, 32], [64, 4]]);
    await expect(readFile(join(out, 'tokenizer.json'))).resolves.toBeDefined();

    const onDisk = await json<Receipt>(join(out, 'narrowtune.json'));
    expect(onDisk).toEqual(JSON.parse(JSON.stringify(receipt)));
    expect(onDisk.frozen_unchanged).toBe(true);
    expect(onDisk.adapter).toEqual({ type: 'lora', rank: 4, alpha: 8, dropout: 0, targets: expect.any(Array), merged: false });
    expect(onDisk.trainable).toHaveLength(8);
    expect(onDisk.trainable_changed.sort()).toEqual(onDisk.trainable.slice().sort()); // B starts at 0, A moves once B does
    // Every tensor of the base model is frozen, the policy's gate and up weights too.
    expect(Object.keys(onDisk.frozen)).toContain('model.layers.0.mlp.gate_proj.weight');
    expect(Object.keys(onDisk.frozen)).toHaveLength((await inspectCheckpoint(base)).tensors.size);
  });

  it('--merge-adapter writes W + (alpha/r)·B·A, the same weights that loading the adapter directory gives', async () => {
    const merged = join(dir, 'merged');
    const { receipt } = await tune(options(merged, { mergeAdapter: true }));
    expect(receipt.frozen_unchanged).toBe(true);
    expect(receipt.trainable_changed).toEqual(['model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.1.mlp.gate_proj.weight', 'model.layers.1.mlp.up_proj.weight']);
    expect(Object.keys(receipt.frozen)).not.toContain('model.layers.0.mlp.gate_proj.weight');

    const fromAdapter = await loadCheckpoint(join(dir, 'adapter'));
    const written = await loadCheckpoint(merged);
    for (const [name, t] of written.tensors) expect(Buffer.from(fromAdapter.tensors.get(name)!.data).equals(Buffer.from(t.data)), name).toBe(true);
    const info = await inspectCheckpoint(join(dir, 'adapter'));
    expect(info.config.arch).toBe('qwen2');
  });

  it('Evaluate takes an adapter directory as the model and scores it as the merged weights', async () => {
    const sets = [{ name: 'train', path: data, kind: 'loss' as const, role: 'target' as const, maxNewTokens: 8, answerRegex: '' }];
    const common = { base, datasets: sets, batchSize: 4, seqLen: 32, device: 'cpu' as const };
    const viaAdapter = await evaluate({ ...common, model: join(dir, 'adapter') });
    const viaMerged = await evaluate({ ...common, model: join(dir, 'merged') });
    expect(viaAdapter.datasets[0].loss).toBe(viaMerged.datasets[0].loss);
    expect(viaAdapter.datasets[0].base!.drift.klToBase).toBeGreaterThan(0);
  });

  it('probes and the drift budget watch base + adapter', async () => {
    const out = join(dir, 'probed');
    const kl: number[] = [];
    const { receipt, budgetStop } = await tune(options(out, { probeData: data, probeEvery: 4, driftBudget: { maxKlToBase: 1e-9, maxNumberMassDelta: null, maxHeldoutLossDelta: null } }), (e) => {
      if (e.type === 'probe') kl.push(e.klToBase);
    });
    expect(kl[0]).toBeGreaterThan(1e-9);
    expect(budgetStop).toMatchObject({ limit: 'max_kl_to_base', keptStep: 0 });
    // The kept step is the start: B = 0, so the adapter written is the base model exactly.
    const b = (await readSafetensorsFile(join(out, 'adapter_model.safetensors'))).filter((t) => t.name.includes('lora_B'));
    expect(b.every((t) => new Float32Array(new Uint8Array(t.data).buffer).every((x) => x === 0))).toBe(true);
    expect(receipt.frozen_unchanged).toBe(true);
  });

  it('dropout masks are seeded: the same run twice gives the same adapter, and it differs from no dropout', async () => {
    const run = async (name: string, dropout: number) => {
      await tune(options(join(dir, name), { steps: 3, lora: { ...LORA, dropout } }));
      return readFile(join(dir, name, 'adapter_model.safetensors'));
    };
    const [first, second, none] = [await run('drop1', 0.3), await run('drop2', 0.3), await run('nodrop', 0)];
    expect(first.equals(second)).toBe(true);
    expect(first.equals(none)).toBe(false);
  });

  it('explicit targets are RE2 patterns over weight names; a pattern that adapts nothing is refused with the valid names', async () => {
    const out = join(dir, 'attn');
    const { receipt } = await tune(options(out, { steps: 2, lora: { ...LORA, targets: ['layers\\.1\\.self_attn\\.(q|v)_proj'] } }));
    expect(receipt.adapter!.targets).toEqual(['model.layers.1.self_attn.q_proj.weight', 'model.layers.1.self_attn.v_proj.weight']);
    // Only layer 1: PEFT's target_modules becomes a regex it full-matches, so the adapter cannot land on layer 0.
    expect((await json<Record<string, unknown>>(join(out, 'adapter_config.json'))).target_modules).toBe('^(model\\.layers\\.1\\.self_attn\\.q_proj|model\\.layers\\.1\\.self_attn\\.v_proj)$');
    await expect(tune(options(join(dir, 'none'), { lora: { ...LORA, targets: ['norm'] } }))).rejects.toThrow(/lora_target\[0\]: "norm" matches no projection weight \(adaptable weights: model\.layers\.\{0\.\.1\}\.self_attn\.q_proj\.weight/);
  });

  it('a stopped run with dropout resumes to the same adapter as an uninterrupted one', async () => {
    const o = options('', { steps: 6, gradAccum: 2, batchSize: 2, lora: { ...LORA, dropout: 0.2 } });
    await tune({ ...o, out: join(dir, 'straight') });
    const ckpts = join(dir, 'ckpts');
    const controller = new AbortController();
    const first = tune({ ...o, out: join(dir, 'resumed'), checkpointEvery: 100, checkpointDir: ckpts }, (e) => e.type === 'step' && e.step === 2 && controller.abort('shutdown'), controller.signal);
    await expect(first).rejects.toBeInstanceOf(TrainingStopped);
    const steps: number[] = [];
    await tune({ ...o, out: join(dir, 'resumed'), checkpointEvery: 100, checkpointDir: ckpts, resume: true }, (e) => e.type === 'step' && steps.push(e.step));
    expect(steps).toEqual([3, 4, 5, 6]);
    const [a, b] = await Promise.all(['straight', 'resumed'].map((d) => readFile(join(dir, d, 'adapter_model.safetensors'))));
    expect(b.equals(a)).toBe(true);
  });

  it('a new adapter needs a plain base; training full weights from base + adapter is fine', async () => {
    const onAdapter = options(join(dir, 'stacked'), { model: join(dir, 'adapter'), steps: 1 });
    await expect(tune(onAdapter)).rejects.toThrow(/adapter is a LoRA adapter; a new adapter needs a plain base model: pass --merge-adapter/);
    const { receipt } = await tune({ ...onAdapter, mergeAdapter: true });
    expect(receipt.frozen_unchanged).toBe(true);
    expect(receipt.base_model).toBe('../adapter');
  });

  it('checks the settings', () => {
    const bad = options('x', { lora: { rank: 0, alpha: -1, dropout: 1, targets: [] } });
    expect(() => validateOptions(bad)).toThrow(/lora_rank: must be an integer in \[1, 4096\], got 0\nlora_alpha: must be a finite number > 0, got -1\nlora_dropout: must be in \[0, 1\), got 1/);
    expect(() => validateOptions(options('x', { lora: null, mergeAdapter: true }))).toThrow(/merge_adapter: needs an adapter/);
    expect(() => validateOptions(options('x', { lora: { ...LORA, targets: ['q_proj', '(gate'] } }))).toThrow(/^lora_target\[1\]: "\(gate" is not a valid RE2 regular expression/);
  });
});
