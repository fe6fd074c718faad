// A benchmark row runs in a fresh Node process (the trainer's own fork protocol, run-in-process.ts), so its peak
// memory and onnxruntime state are its own. The timing row is tune() itself; the profiling row is tune()'s setup
// and optimizer steps with onnxruntime's profiler on. Both measure from inside the process, at the trainer's
// events, what /proc says.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TrainEvent } from '../trainer/events.js';
import type { TuneOptions } from '../trainer/options.js';
import { processEntry, runInProcess, serveParent } from '../trainer/run-in-process.js';
import { setup } from '../trainer/setup.js';
import { optimizerStep } from '../trainer/step.js';
import { tune } from '../trainer/trainer.js';
import { nodeSourceRecorder, type NodeSources } from './node-sources.js';
import { resetPeak, sample, statusKB, vmHwmKB, type Sample } from './proc-stats.js';

/** Set in a row process's environment: a bundled bench (one file for parent and child) must know which it is. */
export const CHILD_ENV = 'NARROWTUNE_BENCH_CHILD';

export type RowRequest =
  | { type: 'tune'; options: TuneOptions }
  | { type: 'profile'; options: TuneOptions; prefix: string; runs: number; threads: number | null };

export interface TuneMeasurement {
  stepMs: number[];
  /** Peak RSS up to the started event (load, compile, session), RSS then, and the peak of the steps alone (-1: unknown). */
  buildPeakKB: number;
  startRssKB: number;
  stepsPeakKB: number;
  /** One at the started event, then one per step event. */
  samples: Sample[];
  trainPeakKB: number;
  peakKB: number;
}

export interface ProfileMeasurement {
  /** onnxruntime's chrome-trace JSON. */
  file: string;
  sources: NodeSources;
  /** session.run per step, profiler on. */
  stepMs: number[];
}

/**
 * Runs `request` in a row process, relaying the trainer's events. A row that outlives `timeoutS` (0: no limit)
 * is killed: a hung GPU driver must not eat a whole benchmark's time budget.
 */
export async function inRowProcess<T extends TuneMeasurement | ProfileMeasurement>(
  request: RowRequest,
  timeoutS: number,
  onEvent: (e: TrainEvent) => void = () => {},
): Promise<T> {
  const child = runInProcess<RowRequest, TrainEvent, T>(processEntry(import.meta.url), request, onEvent, {
    env: { ...process.env, [CHILD_ENV]: '1' },
    name: 'bench row process',
  });
  if (timeoutS <= 0) return child.done;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill();
  }, timeoutS * 1000);
  try {
    return await child.done;
  } catch (e) {
    throw timedOut ? new Error(`row timed out after ${timeoutS} s (--row-timeout)`) : e;
  } finally {
    clearTimeout(timer);
  }
}

async function measureTune(options: TuneOptions, emit: (e: TrainEvent) => void): Promise<TuneMeasurement> {
  const stepMs: number[] = [];
  const samples: Sample[] = [];
  let trainPeakKB = 0;
  let buildPeakKB = 0;
  let startRssKB = 0;
  let reset = false;
  let stepsPeakKB = -1;
  await tune(options, (e) => {
    if (e.type === 'started') {
      buildPeakKB = vmHwmKB();
      startRssKB = statusKB('VmRSS');
      reset = resetPeak();
    }
    if (e.type === 'started' || e.type === 'step') samples.push(sample());
    if (e.type === 'step' && e.step === e.totalSteps && reset) stepsPeakKB = vmHwmKB();
    if (e.type === 'step') {
      // tune measures each step from batch assembly to the update's outputs; tokens / tokensPerSecond is that time.
      stepMs.push((1000 * e.tokens) / e.tokensPerSecond);
      if (e.step === e.totalSteps) trainPeakKB = Math.max(buildPeakKB, vmHwmKB());
    }
    emit(e);
  });
  return { stepMs, samples, buildPeakKB, startRssKB, stepsPeakKB, trainPeakKB, peakKB: Math.max(trainPeakKB, vmHwmKB()) };
}

/** `runs` optimizer steps exactly as tune() takes them, profiled; the summary takes the last one. */
async function profileSteps(o: TuneOptions, prefix: string, runs: number, threads: number | null): Promise<ProfileMeasurement> {
  const recorder = nodeSourceRecorder();
  const run = await setup(o, { session: threads === null ? { profile: prefix } : { profile: prefix, intraOpThreads: threads }, onCompile: recorder.onCompile });
  const stepMs: number[] = [];
  for (let i = 0; i < runs; i++) stepMs.push((await optimizerStep(run)).sessionRunMs);
  const { step, accumulate } = run.sessions;
  const ended: unknown = step.session.endProfiling();
  await step.session.release();
  if (accumulate && accumulate !== step) await accumulate.session.release();
  await run.monitors.release();
  // The trace is PREFIX_<date>.json; onnxruntime-node does not return its name, so find the newest one.
  if (typeof ended === 'string' && ended.endsWith('.json') && existsSync(ended)) return { file: resolve(ended), sources: recorder.sources(), stepMs };
  const dir = resolve(prefix, '..');
  const base = prefix.slice(dir.length + 1);
  const found = (await readdir(dir)).filter((f) => f.startsWith(base) && f.endsWith('.json') && !f.includes('summary')).sort();
  if (found.length === 0) throw new Error(`onnxruntime wrote no profile for prefix ${prefix}`);
  return { file: join(dir, found[found.length - 1]), sources: recorder.sources(), stepMs };
}

if (process.env[CHILD_ENV] === '1' && process.send && process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  serveParent<RowRequest, TrainEvent, TuneMeasurement | ProfileMeasurement>(async (r, emit) => {
    try {
      return r.type === 'tune' ? await measureTune(r.options, emit) : await profileSteps(r.options, r.prefix, r.runs, r.threads);
    } catch (e) {
      // The parent's row reports the message; the stack is for whoever reads the run's output.
      process.stderr.write(`bench row process: ${(e as Error).stack ?? String(e)}\n`);
      throw e;
    }
  });
}
