// The one-command demo: through the gRPC API, every method learns the target skills one after another at each
// learning rate of a sweep, probing the held-out skills while it trains and evaluating after every stage. Each
// method's runs form a learning–forgetting curve; the curves are compared at one matched level of learning, and
// the results go to a console table and a self-contained HTML report.
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type DeepPartial, type EvalDataset, EvalDataset_Kind, EvalDataset_Role, TuningServiceClient } from '../gen/narrowtune/v1/tuning_service.js';
import { startServer } from '../service/server.js';
import { evaluate, merge, type ModelName, modelRef, tune } from './demo-client.js';
import { DEMO_BASE_MODEL_DIR, DEMO_PLANS, type DemoPlan } from './demo-plans.js';
import { findings } from './findings.js';
import { commonReach, matchedLevel, reach, readAt } from './matched-learning.js';
import { DEMO_METHODS, type DemoMethod, demoMethod } from './methods.js';
import { renderReport } from './report.js';
import type { DemoResult, MethodResult, RunResult, StageResult } from './result.js';
import { heldoutSkills, type SkillExample, skillData, targetSkills } from './skills.js';
import { lrText, matchedTable, runTable } from './tables.js';

const DATA_SEED = 2026;
const MAX_ANSWER_TOKENS = 12;
const SEQ_LEN = 96;
/**
 * Sweep runs in flight at once. One run keeps about one core busy (much of a job is single-threaded graph building
 * and small kernels), so two runs use two cores; the runs are independent and seeded, so the numbers do not change.
 */
const PARALLEL_RUNS = Math.min(2, availableParallelism());

export interface DemoOptions {
  quick: boolean;
  /** Job store and datasets (default: a fresh temporary directory). */
  dataDir?: string;
  /** HTML report path (default: demo-report.html in the data directory). */
  report?: string;
  /** Method names (default: every method of DEMO_METHODS). */
  methods?: readonly string[];
  baseModel?: string;
  /** Override the plan's learning rates, steps per stage and number of stages. */
  lrs?: readonly number[];
  steps?: number;
  stages?: number;
  /** Sweep runs in flight at once (default PARALLEL_RUNS). */
  parallel?: number;
  /** Live progress lines. */
  log?: (line: string) => void;
}

/** Runs `task` over `items` with at most `width` in flight, keeping the results in the items' order. */
async function pool<T, R>(items: readonly T[], width: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(width, items.length)) }, worker));
  return results;
}

async function writeJsonl(file: string, rows: readonly SkillExample[]): Promise<string> {
  await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  return file;
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

function planOf(o: DemoOptions): DemoPlan {
  const plan = { ...(o.quick ? DEMO_PLANS.quick : DEMO_PLANS.full) };
  if (o.lrs && o.lrs.length > 0) plan.lrs = [...o.lrs].sort((a, b) => a - b);
  if (o.steps) plan.steps = o.steps;
  // --stages counts from the first target of the world's order, whatever the plan names.
  if (o.stages) Object.assign(plan, { targets: null, stages: o.stages });
  return plan;
}

function targetSkill(name: string): (typeof targetSkills)[number] {
  const skill = targetSkills.find((s) => s.name === name);
  if (!skill) throw new Error(`the demo plan names target "${name}"; targets: ${targetSkills.map((s) => s.name).join(', ')}`);
  return skill;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const started = performance.now();
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const plan = planOf(o);
  const methods = o.methods ? o.methods.map(demoMethod) : DEMO_METHODS;
  const baseModel = resolve(o.baseModel ?? DEMO_BASE_MODEL_DIR);
  const dataDir = resolve(o.dataDir ?? (await mkdtemp(join(tmpdir(), 'narrowtune-demo-'))));
  const datasets = join(dataDir, 'datasets');
  await mkdir(datasets, { recursive: true });
  const planned = plan.targets ? plan.targets.map(targetSkill) : targetSkills;
  const stageSkills = planned.slice(0, plan.stages ?? planned.length);
  const targets = stageSkills.map((s) => s.name);
  const heldout = heldoutSkills.map((s) => s.name);

  // 1. datasets: target train/eval splits, held-out eval sets, and a small held-out probe set
  const trainFiles = new Map<string, string>();
  const evalSets = new Map<string, DeepPartial<EvalDataset>>();
  for (const skill of stageSkills) {
    trainFiles.set(skill.name, await writeJsonl(join(datasets, `${skill.name}.train.jsonl`), skillData(skill, 'train', plan.trainExamples, DATA_SEED)));
  }
  for (const skill of [...stageSkills, ...heldoutSkills]) {
    const path = await writeJsonl(join(datasets, `${skill.name}.eval.jsonl`), skillData(skill, 'eval', plan.evalExamples, DATA_SEED));
    const role = skill.kind === 'target' ? EvalDataset_Role.TARGET : EvalDataset_Role.HELD_OUT;
    evalSets.set(skill.name, { name: skill.name, path, kind: EvalDataset_Kind.GENERATE, role, maxNewTokens: MAX_ANSWER_TOKENS, answerRegex: '' });
  }
  const probe = await writeJsonl(join(datasets, 'probe.jsonl'), heldoutSkills.flatMap((s) => skillData(s, 'eval', plan.probeExamples, DATA_SEED + 1)));
  const sets = (names: readonly string[]) => names.map((n) => evalSets.get(n)!);

  // 2. the service, exactly as a user runs it, on a port of its own
  const parallel = o.parallel ?? PARALLEL_RUNS;
  const server = await startServer({ port: 0, dataDir, modelRoots: [dataDir, dirname(baseModel)], dataRoots: [dataDir], maxConcurrentJobs: parallel });
  const client = new TuningServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  log(`narrowtune demo (${o.quick ? 'quick' : 'full'}): server on 127.0.0.1:${server.port}, data in ${dataDir}`);
  log(`base model ${baseModel}; targets ${targets.join(' → ')}; held-out ${heldout.join(', ')}`);
  log(`methods ${methods.map((m) => m.name).join(', ')}; learning rates ${plan.lrs.map(lrText).join(', ')}; ${plan.steps} steps per stage; ${parallel} runs at a time`);
  const base: ModelName = { path: baseModel };

  /** One method at one learning rate through every stage, each stage starting from the previous one's model. */
  async function sweepRun(method: DemoMethod, lr: number, baseAccuracy: Record<string, number>): Promise<RunResult> {
    const stages: StageResult[] = [];
    let model: ModelName = base;
    for (const [i, stage] of targets.entries()) {
      const tag = `  ${method.name.padEnd(15)} ${lrText(lr).padEnd(4)} ${stage.padEnd(8)}`;
      const { job, events } = await tune(
        client,
        {
          requestId: `demo-${method.name}-${lrText(lr)}-${stage}-${Date.now().toString(36)}`,
          baseModel: modelRef(model),
          trainingData: trainFiles.get(stage)!,
          probeData: probe,
          policy: { preset: method.policy },
          hyperparameters: { steps: plan.steps, learningRate: lr, batchSize: plan.batchSize, seqLen: SEQ_LEN, schedule: 'cosine', probeEvery: plan.probeEvery, checkpointEvery: plan.steps },
          adapter: method.lora ? { rank: method.lora.rank, alpha: method.lora.alpha, mergeAdapter: true } : undefined,
          lwf: method.lwf ? { weight: method.lwf.weight, temperature: method.lwf.temperature } : undefined,
        },
        (line) => log(`${tag} ${line}`),
      );
      let next: ModelName = { job: job.name };
      let merged: string | undefined;
      if (method.wiseAlpha !== undefined) {
        merged = join(dataDir, 'merged', `${method.name}-${lrText(lr)}-${i + 1}-${stage}`);
        await merge(client, model, next, method.wiseAlpha, merged);
        next = { path: merged };
      }
      const evaluation = await evaluate(client, next, sets([...targets.slice(0, i + 1), ...heldout]), base, SEQ_LEN);
      const drift = evaluation.response.results.filter((r) => heldout.includes(r.name)).map((r) => r.base?.drift?.numberMassDelta ?? 0);
      const lastStep = events.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value] : [])).at(-1);
      const lastProbe = events.flatMap((e) => (e.event?.$case === 'probe' ? [e.event.value] : [])).at(-1);
      const result: StageResult = {
        stage,
        job: job.name,
        ...(merged ? { merged } : {}),
        steps: lastStep?.step ?? 0,
        events: events.length,
        finalLoss: lastStep?.loss ?? Number.NaN,
        probe: lastProbe ? { numberMassDelta: lastProbe.numberMassDelta, klToBase: lastProbe.klToBase } : null,
        accuracy: evaluation.accuracy,
        deltaForgetting: evaluation.response.deltaForgetting ?? 0,
        numberMassDelta: mean(drift),
      };
      stages.push(result);
      log(
        `${tag} done: ${stage} ${(100 * result.accuracy[stage]).toFixed(0)}% (base ${(100 * baseAccuracy[stage]).toFixed(0)}%)` +
          `${merged ? ` after WiSE-FT α ${method.wiseAlpha}` : ''}, held-out Δ ${(100 * result.deltaForgetting).toFixed(1)} pts, number_mass Δ ${result.numberMassDelta.toFixed(4)}`,
      );
      model = next;
    }
    return {
      method: method.name,
      lr,
      stages,
      deltaLearning: mean(stages.map((s) => s.accuracy[s.stage] - baseAccuracy[s.stage])),
      deltaForgetting: mean(stages.map((s) => s.deltaForgetting)),
      numberMassDrift: mean(stages.map((s) => s.numberMassDelta)),
    };
  }

  try {
    // 3. what the base model knows before any tuning
    const baseAccuracy = (await evaluate(client, base, sets([...targets, ...heldout]), null, SEQ_LEN)).accuracy;
    log(`base accuracy: ${Object.entries(baseAccuracy).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join('  ')}`);

    // 4. the sweep: every method at every learning rate, a few runs at a time
    const grid = methods.flatMap((method) => plan.lrs.map((lr) => ({ method, lr })));
    const runs = await pool(grid, parallel, ({ method, lr }) => sweepRun(method, lr, baseAccuracy));
    const swept = methods.map((method) => ({ method, runs: runs.filter((r) => r.method === method.name) }));

    // 5. the curves at matched learning, the paper's claims, and the report
    const curve = (runs: RunResult[]) => runs.map((r) => ({ lr: r.lr, learning: r.deltaLearning, forgetting: r.deltaForgetting, drift: r.numberMassDrift }));
    const level = matchedLevel(swept.map((s) => curve(s.runs)));
    const top = commonReach(swept.map((s) => curve(s.runs)));
    const results: MethodResult[] = swept.map(({ method, runs }) => ({
      method: method.name,
      about: method.about,
      runs,
      reach: reach(curve(runs)),
      matched: level === null ? null : readAt(curve(runs), level),
      atReach: top === null ? null : readAt(curve(runs), top),
    }));
    const seconds = (performance.now() - started) / 1000;
    const reportPath = resolve(o.report ?? join(dataDir, 'demo-report.html'));
    const jsonPath = `${reportPath.replace(/\.html?$/, '')}.json`;
    const result: DemoResult = {
      mode: o.quick ? 'quick' : 'full',
      steps: plan.steps,
      lrs: [...plan.lrs],
      baseModel,
      baseAccuracy,
      targets,
      heldout,
      methods: results,
      matchedLevel: level,
      commonReach: top,
      findings: findings(results, level, targets),
      seconds,
      reportPath,
      jsonPath,
    };
    await mkdir(dirname(reportPath), { recursive: true });
    await writeFile(reportPath, renderReport(result));
    await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
    for (const line of ['', ...runTable(result), '', ...matchedTable(result), '']) log(line);
    for (const f of result.findings) log(`${f.verdict.padEnd(14)} ${f.claim} ${f.detail}`);
    log('');
    log(`report: ${reportPath}  (data: ${jsonPath}; ${seconds.toFixed(0)} s)`);
    return result;
  } finally {
    client.close();
    await server.shutdown();
  }
}
