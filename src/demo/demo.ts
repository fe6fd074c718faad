// The one-command demo: through the gRPC API, tune the five target skills one after another under each
// policy, probe the held-out skills while training, evaluate after every stage, and report
// learning against forgetting per policy (a console table and a self-contained HTML report).
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type DatasetResult,
  EvalDataset_Kind,
  EvalDataset_Role,
  type EvaluateResponse,
  EvaluateRequest,
  StartTuneRequest,
  type StreamMetricsResponse,
  type TuneJob,
  TuneJob_State,
  TuningServiceClient,
} from '../gen/narrowtune/v1/tuning_service.js';
import { startServer } from '../service/server.js';
import { DEMO_BASE_MODEL_DIR, DEMO_PLANS, DEMO_POLICIES } from './demo-plans.js';
import { renderReport } from './report.js';
import type { DemoResult, PolicyResult, StageResult } from './result.js';
import { heldoutSkills, type SkillExample, skillData, targetSkills } from './skills.js';

export { DEMO_PLANS, DEMO_POLICIES };

const DATA_SEED = 2026;
const MAX_ANSWER_TOKENS = 12;
const SEQ_LEN = 96;

export interface DemoOptions {
  quick: boolean;
  /** Job store and datasets (default: a fresh temporary directory). */
  dataDir?: string;
  /** HTML report path (default: demo-report.html in the data directory). */
  report?: string;
  policies?: readonly string[];
  baseModel?: string;
  /** Override the plan's learning rate and steps per stage (to study their effect). */
  lr?: number;
  steps?: number;
  /** Live progress lines. */
  log?: (line: string) => void;
}

function call<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
}

async function writeJsonl(file: string, rows: readonly SkillExample[]): Promise<string> {
  await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  return file;
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const started = performance.now();
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const plan = { ...(o.quick ? DEMO_PLANS.quick : DEMO_PLANS.full), ...(o.lr ? { lr: o.lr } : {}), ...(o.steps ? { steps: o.steps } : {}) };
  const policies = o.policies ?? DEMO_POLICIES;
  const baseModel = resolve(o.baseModel ?? DEMO_BASE_MODEL_DIR);
  const dataDir = resolve(o.dataDir ?? (await mkdtemp(join(tmpdir(), 'narrowtune-demo-'))));
  const datasets = join(dataDir, 'datasets');
  await mkdir(datasets, { recursive: true });

  // 1. datasets: target train/eval splits, held-out eval sets, and a small held-out probe set
  const trainFiles = new Map<string, string>();
  const evalFiles = new Map<string, string>();
  for (const skill of targetSkills) {
    trainFiles.set(skill.name, await writeJsonl(join(datasets, `${skill.name}.train.jsonl`), skillData(skill, 'train', plan.trainExamples, DATA_SEED)));
  }
  for (const skill of [...targetSkills, ...heldoutSkills]) {
    evalFiles.set(skill.name, await writeJsonl(join(datasets, `${skill.name}.eval.jsonl`), skillData(skill, 'eval', plan.evalExamples, DATA_SEED)));
  }
  const probe = await writeJsonl(
    join(datasets, 'probe.jsonl'),
    heldoutSkills.flatMap((s) => skillData(s, 'eval', plan.probeExamples, DATA_SEED + 1)),
  );
  const targets = targetSkills.map((s) => s.name);
  const heldout = heldoutSkills.map((s) => s.name);
  const evalSet = [...targets, ...heldout].map((name) => ({
    name,
    path: evalFiles.get(name)!,
    kind: EvalDataset_Kind.GENERATE,
    role: targets.includes(name) ? EvalDataset_Role.TARGET : EvalDataset_Role.HELD_OUT,
    maxNewTokens: MAX_ANSWER_TOKENS,
    answerRegex: '',
  }));

  // 2. the service, exactly as a user runs it, on a port of its own
  const server = await startServer({ port: 0, dataDir, modelRoots: [dataDir, dirname(baseModel)], dataRoots: [dataDir], maxConcurrentJobs: 1 });
  const client = new TuningServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  log(`narrowtune demo (${o.quick ? 'quick' : 'full'}): server on 127.0.0.1:${server.port}, data in ${dataDir}`);
  log(`base model ${baseModel}; targets ${targets.join(', ')}; held-out ${heldout.join(', ')}`);

  const evaluate = (model: { path: string } | { job: string }, base: boolean): Promise<EvaluateResponse> =>
    call((cb) =>
      client.evaluate(
        EvaluateRequest.fromPartial({
          model: { source: 'path' in model ? { $case: 'path', value: model.path } : { $case: 'job', value: model.job } },
          baseModel: base ? { source: { $case: 'path', value: baseModel } } : undefined,
          datasets: evalSet,
          batchSize: 32,
          seqLen: SEQ_LEN,
        }),
        cb,
      ),
    );
  const accuracies = (r: EvaluateResponse) => Object.fromEntries(r.results.map((d: DatasetResult) => [d.name, d.accuracy]));

  try {
    // 3. what the base model knows before any tuning
    const baseAccuracy = accuracies(await evaluate({ path: baseModel }, false));
    log(`base accuracy: ${Object.entries(baseAccuracy).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join('  ')}`);

    // 4. every policy learns the five targets in sequence, each stage starting from the previous one
    const results: PolicyResult[] = [];
    for (const policy of policies) {
      const stages: StageResult[] = [];
      let model: { path: string } | { job: string } = { path: baseModel };
      for (const stage of targets) {
        const request = StartTuneRequest.fromPartial({
          requestId: `demo-${policy}-${stage}-${Date.now().toString(36)}`,
          baseModel: { source: 'path' in model ? { $case: 'path', value: model.path } : { $case: 'job', value: model.job } },
          trainingData: trainFiles.get(stage)!,
          probeData: probe,
          policy: { preset: policy },
          hyperparameters: { steps: plan.steps, learningRate: plan.lr, batchSize: plan.batchSize, seqLen: SEQ_LEN, schedule: 'cosine', probeEvery: plan.probeEvery, checkpointEvery: plan.steps },
        });
        const job = (await call<{ job?: TuneJob }>((cb) => client.startTune(request, cb))).job!;
        const events = await follow(client, job.name, (line) => log(`  ${policy.padEnd(11)} ${stage.padEnd(8)} ${line}`));
        const done = (await call<{ job?: TuneJob }>((cb) => client.getTuneJob({ name: job.name }, cb))).job!;
        if (done.state !== TuneJob_State.SUCCEEDED) throw new Error(`${job.name} (${policy}, ${stage}) ended ${TuneJob_State[done.state]}: ${done.error?.message ?? ''}`);
        const lastStep = events.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value] : [])).at(-1);
        const lastProbe = events.flatMap((e) => (e.event?.$case === 'probe' ? [e.event.value] : [])).at(-1);
        const evaluation = await evaluate({ job: job.name }, true);
        const heldoutDrift = evaluation.results.filter((r) => heldout.includes(r.name)).map((r) => r.base?.drift?.numberMassDelta ?? 0);
        const result: StageResult = {
          stage,
          job: job.name,
          steps: lastStep?.step ?? 0,
          events: events.length,
          finalLoss: lastStep?.loss ?? NaN,
          probe: lastProbe ? { numberMassDelta: lastProbe.numberMassDelta, klToBase: lastProbe.klToBase } : null,
          accuracy: accuracies(evaluation),
          deltaForgetting: evaluation.deltaForgetting ?? 0,
          numberMassDelta: mean(heldoutDrift),
        };
        stages.push(result);
        log(
          `  ${policy.padEnd(11)} ${stage.padEnd(8)} done: ${stage} ${(100 * result.accuracy[stage]).toFixed(0)}% ` +
            `(base ${(100 * baseAccuracy[stage]).toFixed(0)}%), held-out Δ ${(100 * result.deltaForgetting).toFixed(1)} pts, number_mass Δ ${result.numberMassDelta.toFixed(4)}`,
        );
        model = { job: job.name };
      }
      results.push({
        policy,
        stages,
        deltaLearning: mean(stages.map((s) => s.accuracy[s.stage] - baseAccuracy[s.stage])),
        deltaForgetting: mean(stages.map((s) => s.deltaForgetting)),
        numberMassDrift: mean(stages.map((s) => s.numberMassDelta)),
      });
    }

    // 5. the paper-style table and the report
    const seconds = (performance.now() - started) / 1000;
    const reportPath = resolve(o.report ?? join(dataDir, 'demo-report.html'));
    const jsonPath = reportPath.replace(/\.html?$/, '') + '.json';
    const result: DemoResult = { mode: o.quick ? 'quick' : 'full', lr: plan.lr, steps: plan.steps, baseModel, baseAccuracy, targets, heldout, policies: results, seconds, reportPath, jsonPath };
    await mkdir(dirname(reportPath), { recursive: true });
    await writeFile(reportPath, renderReport(result));
    await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
    log('');
    for (const line of summaryTable(result)) log(line);
    log('');
    log(`report: ${reportPath}  (data: ${jsonPath}; ${seconds.toFixed(0)} s)`);
    return result;
  } finally {
    client.close();
    await server.shutdown();
  }
}

/** The paper-style table: Δ learning and Δ held-out forgetting in accuracy points, and number_mass drift. */
export function summaryTable(r: Pick<DemoResult, 'policies'>): string[] {
  const rows = r.policies.map(
    (p) => `${p.policy.padEnd(12)} ${fmt(100 * p.deltaLearning).padStart(10)} ${fmt(100 * p.deltaForgetting).padStart(12)} ${p.numberMassDrift.toFixed(4).padStart(16)}`,
  );
  return [`${'policy'.padEnd(12)} ${'Δ learning'.padStart(10)} ${'Δ forgetting'.padStart(12)} ${'number_mass drift'.padStart(16)}`, ...rows];
}

function fmt(points: number): string {
  return `${points >= 0 ? '+' : ''}${points.toFixed(1)}`;
}

/** Streams a job to its end, printing a line at every probe (and at the last step). */
async function follow(client: TuningServiceClient, name: string, log: (line: string) => void): Promise<StreamMetricsResponse[]> {
  const events: StreamMetricsResponse[] = [];
  let last = { step: 0, total: 0, loss: NaN };
  await new Promise<void>((ok, fail) => {
    const stream = client.streamMetrics({ name, fromSequence: 0 });
    stream.on('data', (e: StreamMetricsResponse) => {
      events.push(e);
      if (e.event?.$case === 'step') last = { step: e.event.value.step, total: e.event.value.totalSteps, loss: e.event.value.loss };
      if (e.event?.$case === 'probe') {
        const p = e.event.value;
        log(`step ${String(p.step).padStart(4)}/${last.total}  loss ${last.loss.toFixed(4)}  number_mass ${p.numberMass.toFixed(4)} (${p.numberMassDelta >= 0 ? '+' : ''}${p.numberMassDelta.toFixed(4)})  kl_to_base ${p.klToBase.toFixed(4)}`);
      }
    });
    stream.on('end', ok);
    stream.on('error', fail);
  });
  return events;
}
