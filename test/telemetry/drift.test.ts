// Drift telemetry: every probe figure the trainer and the stream report is recomputed here
// independently (float64 PyTorch) from the base and the tuned checkpoints; a drift budget stops full
// tuning while the same budget lets the frozen-down policy finish.
import { execFileSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/dataset.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { startServer } from '../../src/service/server.js';
import { isNumberToken } from '../../src/eval/token-classes.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import type { TrainEvent } from '../../src/trainer/events.js';
import { tune } from '../../src/trainer/trainer.js';
import { expectTorchFigures, type TorchFigures } from '../reference/torch-figures.js';
import { connect } from '../service/client.js';
import { needs, PYTHON } from '../support/system-tools.js';
import { tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { countingData, heldoutData } from './fixtures.js';

const FIGURES = new URL('../reference/torch_figures.py', import.meta.url).pathname;
const VOWEL = { name: 'vowel', pattern: '^[aeiou]$' };

let dir: string;
let base: string;
let counting: string;
let probe: string;

/** A base model that knows its held-out skills: a random tiny model pretrained on them (all tensors). */
beforeAll(async () => {
  dir = await tempDir('nt-drift-');
  counting = await countingData(dir);
  probe = await heldoutData(dir);
  const raw = await tinyModel(dir, { ...TINY_QWEN2, hidden: 64, intermediate: 128 }, 'raw');
  base = join(dir, 'base');
  await tune({ ...DEFAULTS, model: raw, data: probe, out: base, policy: { include: ['.'] }, lr: 1e-2, steps: 150, batchSize: 8, seqLen: 48, warmupSteps: 5 });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const TUNE: Partial<TuneOptions> = { lr: 1e-3, steps: 20, batchSize: 8, seqLen: 48, schedule: 'constant', warmupSteps: 0, probeEvery: 5 };

/** Figures of `current` against the base on the probe data, computed by test/reference/torch_figures.py. */
async function reference(current: string): Promise<TorchFigures> {
  const tokenizer = await loadTokenizer(base);
  const { examples } = await loadDataset(probe, tokenizer, { seqLen: 48 });
  const vocab = Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.tokenText(id));
  const spec = {
    base_dir: base,
    current_dir: current,
    examples: examples.map((e) => ({ input_ids: e.inputIds, targets: e.labels.slice(1).concat(-100) })),
    classes: {
      number: vocab.flatMap((t, id) => (isNumberToken(t) ? [id] : [])),
      vowel: vocab.flatMap((t, id) => (new RegExp(VOWEL.pattern, 'u').test(t) ? [id] : [])),
    },
  };
  expect(spec.classes.number).toHaveLength(10); // the byte tokens 0-9
  const specFile = join(dir, `figures-${Math.random()}.json`);
  await writeFile(specFile, JSON.stringify(spec));
  execFileSync(PYTHON, [FIGURES, specFile, `${specFile}.out`]);
  return JSON.parse(await readFile(`${specFile}.out`, 'utf8')) as TorchFigures;
}

type Probe = Extract<TrainEvent, { type: 'probe' }>;

describe('probe figures', () => {
  it('match an independent float64 computation, in the trainer and in the gRPC stream', needs('torch'), async () => {
    const out = join(dir, 'full');
    const probes: Probe[] = [];
    const opts: TuneOptions = { ...DEFAULTS, ...TUNE, model: base, data: counting, out, policy: { preset: 'full' }, probeData: probe, tokenClasses: [VOWEL] };
    const { receipt } = await tune(opts, (e) => e.type === 'probe' && probes.push(e));
    expect(probes.map((p) => p.step)).toEqual([5, 10, 15, 20]);
    const ref = await reference(out);
    expect(ref.kl_to_base).toBeGreaterThan(0.5); // the test means something only if the model drifted
    expectTorchFigures(probes.at(-1)!, ref);
    expect(receipt.probes).toHaveLength(4);

    const server = await startServer({ port: 0, dataDir: join(dir, 'srv'), modelRoots: [dir], dataRoots: [dir] });
    const client = connect(server.port);
    try {
      const job = await client.startTune({
        baseModel: { source: { $case: 'path', value: base } },
        trainingData: counting,
        probeData: probe,
        tokenClasses: [VOWEL],
        policy: { preset: 'full' },
        hyperparameters: { learningRate: 1e-3, steps: 20, batchSize: 8, seqLen: 48, schedule: 'constant', warmupSteps: 0, probeEvery: 5 },
      });
      const events = await client.stream(job.name);
      const streamed = events.flatMap((e) => (e.event?.$case === 'probe' ? [e.event.value] : []));
      expect(streamed.map((p) => p.step)).toEqual([5, 10, 15, 20]);
      const last = streamed.at(-1)!;
      expectTorchFigures({ ...last, positions: ref.positions, tokenAccuracy: 0 }, ref);
    } finally {
      client.close();
      await server.shutdown();
    }
  });
});

describe('drift budget', () => {
  const budget = { maxKlToBase: 0.1, maxNumberMassDelta: null, maxHeldoutLossDelta: null };

  it('stops full tuning at the first probe over budget and keeps the last weights within it', needs('torch'), async () => {
    const out = join(dir, 'full-budget');
    const events: TrainEvent[] = [];
    const { budgetStop, receipt } = await tune(
      { ...DEFAULTS, ...TUNE, model: base, data: counting, out, policy: { preset: 'full' }, probeData: probe, driftBudget: budget },
      (e) => events.push(e),
    );
    expect(budgetStop).toMatchObject({ limit: 'max_kl_to_base', threshold: 0.1 });
    expect(budgetStop!.value).toBeGreaterThan(0.1);
    expect(budgetStop!.keptStep).toBe(budgetStop!.step - 5);
    expect(events.filter((e) => e.type === 'step').length).toBe(budgetStop!.step);
    expect(receipt.drift_budget_stop).toMatchObject({ limit: 'max_kl_to_base', kept_step: budgetStop!.keptStep });
    // What was written is the kept step's model, and it is within budget.
    const ref = await reference(out);
    expect(ref.kl_to_base).toBeLessThanOrEqual(0.1);
    const kept = receipt.probes.find((p) => p.step === budgetStop!.keptStep) as { klToBase: number } | undefined;
    if (kept) expect(Math.abs(kept.klToBase - ref.kl_to_base)).toBeLessThan(1e-4);
  });

  it('lets mlp_gate_up (down projection frozen) finish under the same budget and learning rate', async () => {
    const out = join(dir, 'gate-up-budget');
    const probes: Probe[] = [];
    const { budgetStop } = await tune(
      { ...DEFAULTS, ...TUNE, model: base, data: counting, out, policy: { preset: 'mlp_gate_up' }, probeData: probe, driftBudget: budget },
      (e) => e.type === 'probe' && probes.push(e),
    );
    expect(budgetStop).toBeNull();
    expect(probes.map((p) => p.step)).toEqual([5, 10, 15, 20]);
    expect(Math.max(...probes.map((p) => p.klToBase))).toBeLessThan(0.1);
  });

  it('over gRPC: the job SUCCEEDS with the budget stop recorded and streamed', async () => {
    const server = await startServer({ port: 0, dataDir: join(dir, 'srv-budget'), modelRoots: [dir], dataRoots: [dir] });
    const client = connect(server.port);
    try {
      const job = await client.startTune({
        baseModel: { source: { $case: 'path', value: base } },
        trainingData: counting,
        probeData: probe,
        policy: { preset: 'full' },
        driftBudget: { maxKlToBase: 0.1 },
        hyperparameters: { learningRate: 1e-3, steps: 20, batchSize: 8, seqLen: 48, schedule: 'constant', warmupSteps: 0, probeEvery: 5 },
      });
      const events = await client.stream(job.name);
      expect(events.some((e) => e.event?.$case === 'budgetExceeded')).toBe(true);
      const done = await client.getJob(job.name);
      expect(done.state).toBe(TuneJob_State.SUCCEEDED);
      expect(done.budgetStop).toMatchObject({ limit: 'max_kl_to_base', threshold: 0.1 });
      const bad = client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: counting, driftBudget: { maxKlToBase: 0.1 } });
      await expect(bad).rejects.toMatchObject({ details: expect.stringMatching(/drift_budget\.max_kl_to_base: a drift budget needs probe data/) });
    } finally {
      client.close();
      await server.shutdown();
    }
  });
});
