// The demo end to end through gRPC, in two reduced runs: the quick plan's sweep for full and mlp_gate_up (the
// paper's headline, asserted on its numbers), and two chained stages of the remedies (LoRA merged after each
// stage, LwF, WiSE-FT merged with the stage's starting model). The report's layout is checked in report.test.ts.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDemo } from '../../src/demo/demo.js';
import { DEMO_PLANS } from '../../src/demo/demo-plans.js';
import type { DemoResult } from '../../src/demo/result.js';
import { matchedTable, runTable } from '../../src/demo/tables.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { tempDir } from '../trainer/fixtures.js';

let dir: string;
let sweep: DemoResult;
let chain: DemoResult;
const lines: string[] = [];

beforeAll(async () => {
  dir = await tempDir('nt-demo-');
  const log = (l: string) => lines.push(l);
  sweep = await runDemo({ quick: true, methods: ['full', 'mlp_gate_up'], dataDir: join(dir, 'sweep'), report: join(dir, 'sweep.html'), log });
  chain = await runDemo({ quick: true, methods: ['lora_mlp', 'lwf_mlp', 'wise_ft'], stages: 2, lrs: [1e-3], steps: 8, dataDir: join(dir, 'chain'), report: join(dir, 'chain.html'), log });
}, 600_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

async function withStore<T>(r: DemoResult, fn: (store: SqliteJobStore) => Promise<T>): Promise<T> {
  const store = SqliteJobStore.open(join(dir, r === sweep ? 'sweep' : 'chain'));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

describe('narrowtune demo --quick', () => {
  it('ran every method at every learning rate of the quick plan as a job with a metric stream and an evaluation', async () => {
    expect(sweep.lrs).toEqual([...DEMO_PLANS.quick.lrs]);
    expect(sweep.methods.map((m) => [m.method, m.runs.map((r) => r.lr)])).toEqual(['full', 'mlp_gate_up'].map((m) => [m, sweep.lrs]));
    await withStore(sweep, async (store) => {
      for (const run of sweep.methods.flatMap((m) => m.runs)) {
        expect(run.stages.map((s) => s.stage)).toEqual(sweep.targets);
        for (const s of run.stages) {
          const job = (await store.getJob(s.job.slice('jobs/'.length)))!;
          expect(job.state).toBe('SUCCEEDED');
          expect(job.spec.options.lr).toBe(run.lr);
          const events = await store.readEvents(job.id, 0);
          expect(events.length).toBe(s.events);
          expect(events.map((e) => e.event.type)).toEqual(expect.arrayContaining(['started', 'step', 'probe', 'finished']));
          expect(Object.keys(s.accuracy).sort()).toEqual([...sweep.targets, ...sweep.heldout].sort());
        }
      }
    });
    expect(lines.some((l) => /number_mass .* kl_to_base/.test(l))).toBe(true);
    for (const row of [...runTable(sweep), ...matchedTable(sweep)]) expect(lines).toContain(row);
  });

  it('the base model knows its held-out skills and not the targets', () => {
    for (const h of sweep.heldout) expect(sweep.baseAccuracy[h]).toBeGreaterThan(0.5);
    for (const t of sweep.targets) expect(sweep.baseAccuracy[t]).toBeLessThan(0.3);
  });

  it('the paper\'s headline: at matched learning, mlp_gate_up forgets less than full tuning', () => {
    const [full, gateUp] = sweep.methods;
    expect(sweep.matchedLevel).toBeGreaterThan(0.1);
    expect(full.matched).not.toBeNull();
    expect(gateUp.matched).not.toBeNull();
    expect(sweep.findings.find((f) => f.id === 'mlp_gate_up-forgets-less')?.verdict).toBe('reproduced');
    // Not asserted at the common reach: with these two methods it lies at mlp_gate_up's largest learning rate, where
    // both forget almost everything (docs/demo.md gives the figures).
    // a larger learning rate learns more and forgets more: the curves are curves, not noise
    for (const m of sweep.methods) {
      expect(m.runs.at(-1)!.deltaLearning).toBeGreaterThan(m.runs[0].deltaLearning);
      expect(m.runs.at(-1)!.deltaForgetting).toBeLessThan(m.runs[0].deltaForgetting);
    }
  });

  it('chains stages: each starts from the previous stage\'s model, LoRA merged into it and WiSE-FT merged with it', async () => {
    expect(chain.targets).toHaveLength(2);
    await withStore(chain, async (store) => {
      for (const m of chain.methods) {
        const [first, second] = m.runs[0].stages;
        const spec = async (job: string) => (await store.getJob(job.slice('jobs/'.length)))!.spec;
        const [a, b] = [await spec(first.job), await spec(second.job)];
        expect((a.request as { baseModel: { path: string } }).baseModel.path).toBe(chain.baseModel);
        if (m.method === 'wise_ft') {
          expect((b.request as { baseModel: unknown }).baseModel).toEqual({ path: first.merged });
          const receipt = JSON.parse(await readFile(join(first.merged!, 'narrowtune.json'), 'utf8'));
          expect(receipt.alpha).toBe(0.5);
          expect(a.options.lora).toBeNull();
        } else {
          expect((b.request as { baseModel: unknown }).baseModel).toEqual({ job: first.job });
          expect(first.merged).toBeUndefined();
        }
        if (m.method === 'lora_mlp') expect([a.options.lora?.rank, a.options.mergeAdapter]).toEqual([16, true]);
        if (m.method === 'lwf_mlp') expect([a.options.lwf?.weight, a.options.lwf?.temperature]).toEqual([1, 2]);
        expect(Object.keys(second.accuracy).sort()).toEqual([...chain.targets, ...chain.heldout].sort());
      }
    });
  });

  it('writes the report and its data', async () => {
    for (const r of [sweep, chain]) {
      expect(existsSync(r.reportPath)).toBe(true);
      const json = JSON.parse(await readFile(r.jsonPath, 'utf8')) as DemoResult;
      expect(json.methods.map((m) => m.matched)).toEqual(r.methods.map((m) => m.matched));
      const html = await readFile(r.reportPath, 'utf8');
      expect(html.match(/<circle class="run"/g)).toHaveLength(r.methods.reduce((n, m) => n + m.runs.length, 0));
      for (const f of r.findings) expect(html).toContain(`data-id="${f.id}" data-verdict="${f.verdict}"`);
    }
  });
});
