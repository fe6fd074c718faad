// One trainer's measurements of one row, and how they are summarised: medians, drift, and the steps during
// which the machine was quiet.
import { IDLE_OTHERS_CPUS, othersBetween, type Sample } from './proc-stats.js';

export interface RowResult {
  config: string;
  policy: string;
  trainer: 'narrowtune' | 'torch';
  ok: boolean;
  error?: string;
  batch: number;
  seq: number;
  threads: number | null;
  /** Where the row trained: narrowtune's execution provider (from the start event) or torch's device. */
  device: string;
  /** torch on cuda: torch.cuda.max_memory_allocated (narrowtune's GPU memory is not measured). */
  gpuPeakMB?: number;
  trainableParameters?: number;
  /** Measured steps only (warm-up excluded), milliseconds. */
  stepMs: number[];
  warmupStepMs: number[];
  medianStepMs: number;
  tokensPerSec: number;
  /** Peak resident set (VmHWM) when the last step finished, and at process end (incl. writing the checkpoint). */
  trainPeakMB: number;
  peakMB: number;
  /** narrowtune: peak up to the first step (load + compile + session), RSS then, and the peak of the steps alone. */
  buildPeakMB?: number;
  startRssMB?: number;
  stepsPeakMB?: number;
  compileMs: number;
  sessionMs: number;
  losses: number[];
  gradNorms: number[];
  /** Median of the second half of the measured steps over the first half: > 1 means steps get slower. */
  drift: number;
  /** CPUs that other processes used during each measured step, and their mean: contention on a shared machine. */
  othersPerStep: number[];
  others: number;
  /** Median over the measured steps during which other processes used < IDLE_OTHERS_CPUS CPUs (NaN if < 3 such). */
  quietMedianStepMs: number;
  quietSteps: number;
  /** batch·seq / the quiet median when there are >= 3 quiet steps, else / the median of all measured steps. */
  bestTokensPerSec: number;
  basis: 'quiet' | 'all';
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarise(
  base: Pick<RowResult, 'config' | 'policy' | 'trainer' | 'batch' | 'seq' | 'threads' | 'device'>,
  all: number[],
  warmup: number,
  rest: Partial<RowResult>,
  samples: Sample[] = [],
): RowResult {
  const stepMs = all.slice(warmup);
  const med = median(stepMs);
  const half = stepMs.length >> 1;
  const othersPerStep = samples.length === all.length + 1 ? othersBetween(samples).slice(warmup) : [];
  const quiet = stepMs.filter((_, i) => othersPerStep[i] < IDLE_OTHERS_CPUS);
  return {
    ok: true,
    trainPeakMB: NaN,
    peakMB: NaN,
    compileMs: NaN,
    sessionMs: NaN,
    losses: [],
    gradNorms: [],
    ...base,
    ...rest,
    stepMs,
    warmupStepMs: all.slice(0, warmup),
    medianStepMs: med,
    tokensPerSec: (base.batch * base.seq) / (med / 1000),
    drift: half > 0 ? median(stepMs.slice(stepMs.length - half)) / median(stepMs.slice(0, half)) : 1,
    othersPerStep,
    others: othersPerStep.length ? othersPerStep.reduce((x, y) => x + y, 0) / othersPerStep.length : NaN,
    quietMedianStepMs: quiet.length >= 3 ? median(quiet) : NaN,
    quietSteps: quiet.length,
    bestTokensPerSec: (base.batch * base.seq) / ((quiet.length >= 3 ? median(quiet) : med) / 1000),
    basis: quiet.length >= 3 ? 'quiet' : 'all',
  };
}
