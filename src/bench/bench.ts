// `narrowtune bench`: times the real trainer (tune(), the code path of `narrowtune tune` and the service) on
// random-initialised models and random token data, one fresh process per row so peak memory is per row.
// With --vs-torch each row also runs through the PyTorch baseline (torch.ts) on the same weights and batches,
// and the losses must agree.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TrainEvent, TrainStarted, TrainStep } from '../trainer/events.js';
import { NarrowtuneError } from '../util/errors.js';
import { benchMethod, benchTuneOptions, type BenchConfig, type BenchSettings } from './configs.js';
import { IDLE_OTHERS_CPUS, waitForIdle } from './proc-stats.js';
import { profileRows } from './profile.js';
import { fmt, jsonReport, legend, table, type BenchRow } from './report.js';
import { inRowProcess, type TuneMeasurement } from './row-process.js';
import { summarise, type RowResult } from './row-result.js';
import { lossCheck, runTorch } from './torch.js';
import { prepare } from './workload.js';

async function runNarrowtune(c: BenchConfig, policy: string, model: string, data: string, a: BenchSettings, work: string): Promise<RowResult> {
  const base = { config: c.name, policy, trainer: 'narrowtune' as const, batch: c.batch, seq: c.seq, threads: a.ortThreads, device: a.device as string };
  const out = await mkdtemp(join(work, 'out-'));
  try {
    const events: TrainEvent[] = [];
    const r = await inRowProcess<TuneMeasurement>({ type: 'tune', options: benchTuneOptions(model, data, out, c, policy, a.warmup + a.steps, a) }, a.rowTimeout, (e) => events.push(e));
    const start = events.find((e): e is TrainStarted => e.type === 'started')!;
    const steps = events.filter((e): e is TrainStep => e.type === 'step');
    return summarise({ ...base, device: start.provider }, r.stepMs, a.warmup, {
      trainableParameters: start.trainableParameters,
      compileMs: start.compileMs,
      sessionMs: start.sessionMs,
      trainPeakMB: r.trainPeakKB / 1024,
      peakMB: r.peakKB / 1024,
      buildPeakMB: r.buildPeakKB / 1024,
      startRssMB: r.startRssKB / 1024,
      stepsPeakMB: r.stepsPeakKB >= 0 ? r.stepsPeakKB / 1024 : undefined,
      losses: steps.map((s) => s.loss),
      gradNorms: steps.map((s) => s.gradNorm),
    }, r.samples);
  } catch (e) {
    return { ...summarise(base, [], 0, {}), ok: false, error: (e as Error).message };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

async function quiet(maxSeconds: number): Promise<void> {
  const others = await waitForIdle(maxSeconds);
  if (others >= IDLE_OTHERS_CPUS) process.stderr.write(`bench: other processes still use ${others.toFixed(2)} CPUs after waiting ${maxSeconds} s; measuring anyway\n`);
}

async function benchRow(c: BenchConfig, policy: string, model: string, data: string, a: BenchSettings, work: string): Promise<BenchRow> {
  if (a.waitIdle > 0) await quiet(a.waitIdle);
  process.stderr.write(`bench: ${c.name} ${policy}: narrowtune…\n`);
  const nt = await runNarrowtune(c, policy, model, data, a, work);
  let th: RowResult | null = null;
  // The PyTorch baseline trains weights, not adapters: LoRA rows are narrowtune's alone.
  if (a.vsTorch && !benchMethod(policy)?.lora) {
    if (a.waitIdle > 0) await quiet(a.waitIdle);
    process.stderr.write(`bench: ${c.name} ${policy}: torch…\n`);
    th = await runTorch(c, policy, model, data, a, work);
  }
  const check = th && nt.ok && th.ok ? lossCheck(nt, th) : null;
  const ok = nt.ok && (!th || (th.ok && check!.ok));
  for (const r of [nt, th]) if (r && !r.ok) process.stderr.write(`bench: ${c.name} ${policy} ${r.trainer} FAILED: ${r.error}\n`);
  if (check && !check.ok) process.stderr.write(`bench: ${c.name} ${policy} FAILED loss check: ${check.detail}\n`);
  process.stderr.write(
    `bench: ${c.name} ${policy}: narrowtune ${fmt(nt.medianStepMs)} ms/step ${fmt(nt.tokensPerSec)} tok/s` +
      (th ? `, torch ${fmt(th.medianStepMs)} ms/step ${fmt(th.tokensPerSec)} tok/s` : '') +
      '\n',
  );
  return {
    config: c.name,
    policy,
    narrowtune: nt,
    torch: th,
    // Like for like: quiet medians when both trainers had >= 3 quiet steps, else medians of all steps.
    speedup: th && th.ok && nt.ok ? (nt.basis === 'quiet' && th.basis === 'quiet' ? nt.bestTokensPerSec / th.bestTokensPerSec : nt.tokensPerSec / th.tokensPerSec) : null,
    lossCheck: check,
    status: ok ? 'ok' : 'FAILED',
  };
}

export async function runBench(a: BenchSettings): Promise<void> {
  await mkdir(a.cacheDir, { recursive: true });
  const work = await mkdtemp(join(a.cacheDir, 'run-'));
  try {
    if (a.profile) return await profileRows(a, work);
    const rows: BenchRow[] = [];
    for (const c of a.configs) {
      const { model, data } = await prepare(c, a.cacheDir, c.batch * 4);
      for (const policy of a.policies) rows.push(await benchRow(c, policy, model, data, a, work));
    }
    process.stdout.write(`${table(rows)}\n`);
    process.stdout.write(`${legend(a)}\n`);
    if (a.json) await writeFile(a.json, `${JSON.stringify(jsonReport(a, rows), null, 2)}\n`);
    const failed = rows.filter((r) => r.status !== 'ok').length;
    if (failed > 0) throw new NarrowtuneError('internal', `${failed} row(s) FAILED`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
