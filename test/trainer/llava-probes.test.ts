// Validation and drift probes with images on a LLaVA-OneVision model: the validation and probe files may be
// image-text, their images' features (one cache with the training images) fill the image positions of the tuned and
// the base model's passes. Each figure is checked against the training step's own loss over the same examples, which
// takes the features through another graph: a validation or probe pass that dropped or misplaced them would differ.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { setup } from '../../src/trainer/setup.js';
import { optimizerStep } from '../../src/trainer/step.js';
import { tune } from '../../src/trainer/trainer.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from './fixtures.js';

let dir: string;
let base: string;
/** Four examples, one image each (four distinct images). */
let count: string;
/** Two examples: an image of `count` and one of its own. */
let extra: string;
let text: string;
const COUNTS = ['One', 'Two', 'Three'];

/** `n` red 8-pixel squares on a white 40×32 PNG. */
async function squares(file: string, n: number, shift: number): Promise<void> {
  const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } }).png().toBuffer();
  const composite = Array.from({ length: n }, (_, k) => ({ input: red, left: 2 + ((k * 13 + shift * 3) % 30), top: 2 + ((k * 11 + shift * 5) % 22) }));
  await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(composite).png().toFile(file);
}

const line = (image: string, n: number) => JSON.stringify({ image, conversations: [{ from: 'human', value: '<image>\nHow many squares?' }, { from: 'gpt', value: `${COUNTS[n - 1]}.` }] });

beforeAll(async () => {
  dir = await tempDir('nt-llava-probes-');
  base = join(dir, 'base');
  await initLlavaModel({ arch: 'llava-onevision', out: base, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 7 });
  const shown = [1, 2, 3, 2];
  for (const [i, n] of shown.entries()) await squares(join(dir, `sq${i}.png`), n, i);
  await squares(join(dir, 'other.png'), 3, 5);
  count = join(dir, 'count.jsonl');
  await writeFile(count, `${shown.map((n, i) => line(`sq${i}.png`, n)).join('\n')}\n`);
  extra = join(dir, 'extra.jsonl');
  await writeFile(extra, `${line('sq1.png', 2)}\n${line('other.png', 3)}\n`);
  text = await repeatData(dir, 4, 'text.jsonl');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** One batch is the whole file: a step's loss is the mean over all of its label positions, as validation's is. */
const FAST: Partial<TuneOptions> = { lr: 5e-2, batchSize: 4, seqLen: 96, schedule: 'constant', warmupSteps: 0, policy: { preset: 'mlp_gate_up' } };
const options = (o: Partial<TuneOptions>): TuneOptions => ({ ...DEFAULTS, ...FAST, model: base, data: count, out: join(dir, 'out'), ...o });
const near = (a: number, b: number) => expect(Math.abs(a - b), `${a} vs ${b}`).toBeLessThan(1e-5 * Math.abs(b));

describe('validation and drift probes with images on a LLaVA model', () => {
  it("validation with images: after each step, the loss the next step's forward pass takes over the same examples", async () => {
    const losses: number[] = [];
    const validation: number[] = [];
    const { receipt } = await tune(options({ steps: 3, validationData: count, evalEvery: 1, probeData: extra, probeEvery: 3, out: join(dir, 'validated') }), (e) => {
      if (e.type === 'step') losses.push(e.loss);
      if (e.type === 'validation') validation.push(e.loss);
    });
    expect(validation).toHaveLength(3);
    near(validation[0], losses[1]);
    near(validation[1], losses[2]);
    // The weights moved between the compared points: equal losses are no accident of an unchanged model.
    expect(Math.abs(validation[0] - losses[0])).toBeGreaterThan(1e-3);
    // One cache for every file: the validation images are the training images, the probes add one more.
    expect(receipt.data_stats).toMatchObject({ images: 4, vision_runs: 5 });
  });

  it('image probes: no drift on the base weights, drift after training; both passes see the features', async () => {
    const run = await setup(options({ steps: 3, probeData: count }));
    try {
      const before = await run.monitors.probe!.run(run.state.params);
      expect(before.positions).toBeGreaterThan(0);
      expect(Math.abs(before.klToBase)).toBeLessThan(1e-7);
      expect(before.numberMassDelta).toBe(0);
      expect(before.heldoutLossDelta).toBe(0);
      expect(before.top1Agreement).toBe(1);
      const first = await optimizerStep(run);
      near(before.heldoutLoss, first.loss);
      near(before.heldoutLossBase, first.loss);

      await optimizerStep(run);
      const after = await run.monitors.probe!.run(run.state.params);
      const third = await optimizerStep(run);
      near(after.heldoutLoss, third.loss);
      expect(after.heldoutLossBase).toBe(before.heldoutLossBase);
      expect(after.klToBase).toBeGreaterThan(1e-4);
      expect(after.numberMassDelta).not.toBe(0);
      expect(after.heldoutLossDelta).toBeLessThan(0);
    } finally {
      await run.monitors.release();
    }
  });

  it('the drift budget stops on image probes and keeps the base weights', async () => {
    const probes: number[] = [];
    const { budgetStop, receipt } = await tune(options({ steps: 3, probeData: count, probeEvery: 1, driftBudget: { maxKlToBase: 1e-6, maxNumberMassDelta: null, maxHeldoutLossDelta: null }, out: join(dir, 'budget') }), (e) => {
      if (e.type === 'probe') probes.push(e.klToBase);
    });
    expect(probes).toHaveLength(1);
    expect(budgetStop).toMatchObject({ limit: 'max_kl_to_base', step: 1, keptStep: 0, threshold: 1e-6 });
    expect(budgetStop!.value).toBe(probes[0]);
    expect(receipt.trainable_changed).toEqual([]);
  });

  it('text training with image validation and text probes: each file through its own path', async () => {
    const run = await setup(options({ data: text, validationData: count, probeData: text }));
    const reference = await setup(options({ steps: 1 }));
    try {
      expect(run.images).toBeNull();
      const validation = await run.monitors.validation!.run(run.state.params);
      const probe = await run.monitors.probe!.run(run.state.params);
      expect(probe.positions).toBeGreaterThan(0);
      expect(probe.klToBase).toBe(0);
      near(validation.loss, (await optimizerStep(reference)).loss);
    } finally {
      await run.monitors.release();
      await reference.monitors.release();
    }
  });

  it('a missing or undecodable image in the validation or probe file fails naming the file, the line and the image; a text model refuses image validation', async () => {
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, `${line('sq0.png', 1)}\n${line('nope.png', 2)}\n`);
    await expect(tune(options({ steps: 1, probeData: bad }))).rejects.toMatchObject({
      violations: [{ field: 'probe_data', description: expect.stringMatching(/bad\.jsonl:2: image "nope\.png" \(.*nope\.png\): no such file$/) }],
    });
    // The header reads (positions are counted from it), the pixels do not: found when the features are computed.
    const png = await readFile(join(dir, 'sq2.png'));
    await writeFile(join(dir, 'cut.png'), png.subarray(0, png.length - 30));
    const cut = join(dir, 'cut.jsonl');
    await writeFile(cut, `${line('sq0.png', 1)}\n${line('cut.png', 2)}\n`);
    await expect(tune(options({ steps: 1, validationData: cut }))).rejects.toMatchObject({
      violations: [{ field: 'validation_data', description: expect.stringMatching(/cut\.jsonl:2: image "cut\.png".*: cannot decode/) }],
    });
    // A text-only model has no tower to read a validation file's images with.
    const textModel = await tinyModel(dir, TINY_QWEN2, 'text-model');
    await expect(tune(options({ model: textModel, data: text, steps: 1, validationData: count }))).rejects.toMatchObject({
      violations: [{ field: 'validation_data', description: expect.stringMatching(/count\.jsonl is image-text data, but .* is a text-only model/) }],
    });
  });
});
