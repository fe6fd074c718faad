// The benchmark's output: one table row per configuration and policy, the legend, and the JSON report.
import { cpus } from 'node:os';
import { DEFAULTS } from '../trainer/options.js';
import { BENCH_LR, type BenchSettings } from './configs.js';
import { IDLE_OTHERS_CPUS } from './proc-stats.js';
import type { RowResult } from './row-result.js';

export interface BenchRow {
  config: string;
  policy: string;
  narrowtune: RowResult;
  torch: RowResult | null;
  /** narrowtune tokens/s over torch tokens/s. */
  speedup: number | null;
  lossCheck: { ok: boolean; maxRelErr: number; detail: string } | null;
  status: 'ok' | 'FAILED';
}

export const fmt = (x: number, d = x < 100 ? 1 : 0) => (Number.isFinite(x) ? x.toFixed(d) : '–');

export function table(rows: BenchRow[]): string {
  const head = ['config', 'policy', 'device', 'step ms', 'quiet ms (n)', 'tok/s', 'peak MB', 'compile+session ms', 'torch step ms', 'torch quiet ms (n)', 'torch tok/s', 'torch peak MB', 'speedup', 'loss check', 'drift', 'others'];
  const q = (x: RowResult) => `${fmt(x.quietMedianStepMs)} (${x.quietSteps})`;
  const tps = (x: RowResult) => `${fmt(x.bestTokensPerSec)}${x.basis === 'quiet' ? ' q' : ''}`;
  const lines = rows.map((r) => {
    const n = r.narrowtune;
    const t = r.torch;
    const both = n.basis === 'quiet' && t?.basis === 'quiet';
    return [
      r.config,
      r.policy,
      t ? `${n.device} / ${t.device}` : n.device,
      n.ok ? fmt(n.medianStepMs) : 'FAILED',
      q(n),
      tps(n),
      fmt(n.trainPeakMB),
      n.ok ? `${fmt(n.compileMs)}+${fmt(n.sessionMs)}` : '–',
      t ? (t.ok ? fmt(t.medianStepMs) : 'FAILED') : '',
      t ? q(t) : '',
      t ? tps(t) : '',
      t ? fmt(t.trainPeakMB) : '',
      r.speedup === null ? '' : `${fmt(r.speedup, 2)}×${both ? ' q' : ''}`,
      r.lossCheck ? `${r.lossCheck.ok ? 'ok' : 'FAILED'} (${r.lossCheck.maxRelErr.toExponential(1)})` : '',
      fmt(n.drift, 2),
      t ? `${fmt(n.others, 2)}/${fmt(t.others, 2)}` : fmt(n.others, 2),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [row(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

export function legend(a: BenchSettings): string {
  return (
    `steps: ${a.steps} measured after ${a.warmup} warm-up; peak MB = VmHWM when the last step ends; ` +
    `drift = late/early median step time; others = CPUs used by other processes during the steps (narrowtune/torch); ` +
    `quiet = steps during which others < ${IDLE_OTHERS_CPUS}; q = tok/s from the quiet median` +
    `${a.vsTorch ? `; torch threads ${a.threads}` : ''}`
  );
}

/** What --json writes. */
export function jsonReport(a: BenchSettings, rows: BenchRow[]) {
  return {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, platform: `${process.platform}-${process.arch}` },
    settings: {
      steps: a.steps, warmup: a.warmup, threads: a.threads, lr: BENCH_LR, schedule: 'constant', optimizer: 'adamw', clipNorm: DEFAULTS.clipNorm,
      device: a.device, kernels: a.kernels, torchDevice: a.vsTorch ? a.torchDevice : null,
    },
    rows,
  };
}
