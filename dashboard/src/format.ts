// Labels for jobs and numbers, shared by the views.
import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { Timestamp } from '@bufbuild/protobuf/wkt';
import { TuneJob_State, type TuneJob } from './api.js';

export const RESTING = new Set([TuneJob_State.SUCCEEDED, TuneJob_State.FAILED, TuneJob_State.CANCELLED]);
export const FILTER_STATES = [TuneJob_State.PENDING, TuneJob_State.RUNNING, TuneJob_State.SUCCEEDED, TuneJob_State.FAILED, TuneJob_State.CANCELLED];

export const stateName = (s: TuneJob_State): string => TuneJob_State[s] ?? String(s);

/** "jobs/abc…" → "abc…" */
export const jobId = (name: string): string => name.replace(/^jobs\//, '');

/** The policy as requested: a preset, or "custom" for include patterns; the server's default is mlp_gate_up. */
export function policyLabel(job: TuneJob): string {
  const p = job.request?.policy;
  if (p?.include.length) return 'custom';
  return p?.preset || 'mlp_gate_up';
}

export function baseModelLabel(job: TuneJob): string {
  const src = job.request?.baseModel?.source;
  if (src?.case === 'path') return src.value.split('/').filter(Boolean).at(-1) ?? src.value;
  if (src?.case === 'job') return src.value;
  return '';
}

export function timeLabel(t: Timestamp | undefined): string {
  if (!t) return '';
  const d = timestampDate(t);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fixed(v: number | undefined, digits = 3): string {
  return v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

/** A fraction as signed points (×100), as the paper reports learning and forgetting. */
export function points(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}`;
}
