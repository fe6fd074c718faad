// The PyTorch baseline (bench/torch_trainer.py, in a source checkout only; never part of the product runtime):
// the same weights, batches in the trainer's own order, and AdamW; then the loss check that keeps a fast
// wrong trainer from winning.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { microBatchIndices } from '../data/batches.js';
import { expectedTensors, parseConfig } from '../model/config.js';
import { resolvePolicy } from '../policy/policy.js';
import { NarrowtuneError } from '../util/errors.js';
import { benchTuneOptions, CHECK_MIN_STEPS, LOSS_RTOL, type BenchConfig, type BenchSettings } from './configs.js';
import type { Sample } from './proc-stats.js';
import { summarise, type RowResult } from './row-result.js';

/** The baseline lives in a source checkout; a bundled bench (bench/gpu-pack.sh) is told where by bench/gpu.sh. */
export function torchTrainerPath(): string {
  return process.env.NARROWTUNE_BENCH_TORCH_TRAINER ?? fileURLToPath(new URL('../../bench/torch_trainer.py', import.meta.url));
}

export async function runTorch(c: BenchConfig, policy: string, model: string, data: string, a: BenchSettings, work: string): Promise<RowResult> {
  const base = { config: c.name, policy, trainer: 'torch' as const, batch: c.batch, seq: c.seq, threads: a.threads, device: a.torchDevice as string };
  try {
    const script = torchTrainerPath();
    if (!existsSync(script)) throw new NarrowtuneError('failed_precondition', `--vs-torch needs a source checkout (${script} is missing)`);
    const config = parseConfig(JSON.parse(await readFile(join(model, 'config.json'), 'utf8')), join(model, 'config.json'));
    const trainable = resolvePolicy({ preset: policy }, [...expectedTensors(config).keys()]).trainable;
    const examples = (await readFile(data, 'utf8')).split('\n').filter((l) => l.trim()).length;
    const o = benchTuneOptions(model, data, '', c, policy, a.warmup + a.steps, a);
    // The trainer's own data order: micro-step k takes these example indices (gradAccum is 1).
    const steps = Array.from({ length: o.steps! }, (_, k) => microBatchIndices(examples, o.batchSize, o.seed, k));
    const spec = {
      model_dir: model,
      data,
      trainable,
      seq: c.seq,
      batch_size: c.batch,
      threads: a.threads,
      lr: o.lr,
      betas: [o.beta1, o.beta2],
      eps: o.eps,
      weight_decay: o.weightDecay,
      clip_norm: o.clipNorm,
      steps,
      device: a.torchDevice,
    };
    const specFile = join(work, `torch-${c.name}-${policy}.spec.json`);
    const outFile = join(work, `torch-${c.name}-${policy}.out.json`);
    await writeFile(specFile, JSON.stringify(spec));
    const t = String(a.threads);
    await new Promise<void>((ok, fail) => {
      const p = spawn(a.python, [script, specFile, outFile], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t },
      });
      const timer = a.rowTimeout > 0 ? setTimeout(() => p.kill('SIGKILL'), a.rowTimeout * 1000) : null;
      p.on('error', (e) => {
        if (timer) clearTimeout(timer);
        fail(new Error(`cannot run ${a.python} (--python): ${e.message}`));
      });
      p.on('exit', (code, signal) => {
        if (timer) clearTimeout(timer);
        if (code === 0) ok();
        else fail(new Error(`${a.python} ${script} exited (${signal ?? `code ${code}`})${signal === 'SIGKILL' && timer ? ` (--row-timeout ${a.rowTimeout} s)` : ''}`));
      });
    });
    const r = JSON.parse(await readFile(outFile, 'utf8')) as {
      losses: number[]; grad_norms: number[]; step_ms: number[]; setup_ms: number; train_peak_kb: number; max_rss_kb: number; threads: number;
      samples: Sample[]; device?: string; gpu_peak_mb?: number;
    };
    return summarise({ ...base, threads: r.threads, device: r.device ?? a.torchDevice }, r.step_ms, a.warmup, {
      trainableParameters: undefined,
      compileMs: 0,
      sessionMs: r.setup_ms,
      trainPeakMB: r.train_peak_kb / 1024,
      peakMB: r.max_rss_kb / 1024,
      losses: r.losses,
      gradNorms: r.grad_norms,
      gpuPeakMB: r.gpu_peak_mb,
    }, r.samples);
  } catch (e) {
    return { ...summarise(base, [], 0, {}), ok: false, error: (e as Error).message };
  }
}

/**
 * The loss of every step (warm-up included) of both trainers: a fast wrong trainer cannot win. The data cycles
 * every 4 steps, so from step 5 on a batch comes back after 4 updates and its loss shows them.
 */
export function lossCheck(nt: RowResult, th: RowResult): { ok: boolean; maxRelErr: number; detail: string } {
  const k = Math.min(nt.losses.length, th.losses.length);
  if (k === 0) return { ok: false, maxRelErr: NaN, detail: 'no losses to compare' };
  let worst = 0;
  for (let i = 0; i < k; i++) worst = Math.max(worst, Math.abs(nt.losses[i] - th.losses[i]) / Math.abs(th.losses[i]));
  const ok = worst <= LOSS_RTOL;
  if (ok && k < CHECK_MIN_STEPS) process.stderr.write(`bench: only ${k} step(s): the loss check has seen ${k - 1} update(s)\n`);
  const detail = `losses of steps 1..${k}: narrowtune [${nt.losses.slice(0, k).map((x) => x.toFixed(5))}] torch [${th.losses.slice(0, k).map((x) => x.toFixed(5))}]`;
  return { ok, maxRelErr: worst, detail };
}
