// Resumable step checkpoints: trainable tensors and optimizer moments (bit-exact float32), the step and the
// loss history. Data order and learning rate are pure functions of the step, so this is all a resumed run
// needs to finish with the same weights as an uninterrupted one.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../model/checkpoint.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../model/safetensors-file.js';
import type { StoredTensor } from '../model/safetensors.js';
import type { FloatArray } from '../runtime/session.js';
import type { StepRecord } from './receipt.js';

const STATE_FILE = 'state.safetensors';
const META_FILE = 'trainer_state.json';
const STEP_DIR = /^step-(\d+)$/;
/** Older step checkpoints beyond this many are removed; the newest is what resuming needs. */
const KEEP = 2;

export interface TrainState {
  step: number; // optimizer steps completed
  params: Map<string, FloatArray>;
  m: Map<string, FloatArray>;
  v: Map<string, FloatArray>;
  history: StepRecord[];
  /** Weights at the last probe within the drift budget (step 0: the base weights themselves). */
  kept: { step: number; params: Map<string, FloatArray> } | null;
}

export function stepDir(root: string, step: number): string {
  return join(root, `step-${String(step).padStart(8, '0')}`);
}

function bytes(a: FloatArray): Uint8Array {
  // Checkpoints hold float32 state; a float64 run is narrowed (resuming it is exact only in float32).
  const f32 = a instanceof Float32Array ? a : Float32Array.from(a);
  return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
}

/** Writes `root/step-N/` atomically (temporary directory, then rename) and, with `prune`, removes all but the newest KEEP. */
export async function saveStepCheckpoint(root: string, s: TrainState, shapes: ReadonlyMap<string, number[]>, fingerprint: string, prune = true): Promise<string> {
  const dir = stepDir(root, s.step);
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const tensors: StoredTensor[] = [];
  const kept = s.kept && s.kept.step > 0 ? s.kept.params : new Map<string, FloatArray>();
  for (const [prefix, map] of [['param', s.params], ['adam_m', s.m], ['adam_v', s.v], ['kept', kept]] as const) {
    for (const [name, data] of map) tensors.push({ name: `${prefix}/${name}`, dtype: 'F32', shape: shapes.get(name)!, data: bytes(data) });
  }
  await writeSafetensorsFile(join(tmp, STATE_FILE), tensors);
  await writeFileAtomic(join(tmp, META_FILE), JSON.stringify({ step: s.step, fingerprint, history: s.history, keptStep: s.kept?.step ?? null }));
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  if (prune) {
    const steps = await listSteps(root);
    await Promise.all(steps.slice(0, Math.max(0, steps.length - KEEP)).map((n) => rm(stepDir(root, n), { recursive: true, force: true })));
  }
  return dir;
}

/** Removes the step checkpoints under `root` older than step `keep` (a newer one may be still being written). */
export async function removeStepCheckpointsBefore(root: string, keep: number): Promise<void> {
  const steps = (await listSteps(root)).filter((n) => n < keep);
  await Promise.all(steps.map((n) => rm(stepDir(root, n), { recursive: true, force: true })));
}

async function listSteps(root: string): Promise<number[]> {
  const entries = await readdir(root).catch(() => [] as string[]);
  return entries.flatMap((e) => {
    const m = STEP_DIR.exec(e);
    return m ? [Number(m[1])] : [];
  }).sort((a, b) => a - b);
}

/**
 * The newest step checkpoint under `root` written for this same run (same fingerprint), or null.
 * A checkpoint of a different run (other data, policy or hyper-parameters) is ignored, never mixed in.
 */
export async function loadLatestStepCheckpoint(
  root: string,
  fingerprint: string,
  f64: boolean,
  base: ReadonlyMap<string, FloatArray>,
): Promise<TrainState | null> {
  for (const step of (await listSteps(root)).reverse()) {
    const state = await loadStepCheckpoint(stepDir(root, step), fingerprint, f64, base);
    if (state) return state;
  }
  return null;
}

/** The step checkpoint in `dir` when it is complete and of this same run (same fingerprint), else null. */
export async function loadStepCheckpoint(dir: string, fingerprint: string, f64: boolean, base: ReadonlyMap<string, FloatArray>): Promise<TrainState | null> {
  let meta: { step: number; fingerprint: string; history: StepRecord[]; keptStep: number | null };
  try {
    meta = JSON.parse(await readFile(join(dir, META_FILE), 'utf8'));
  } catch {
    return null; // incomplete or foreign directory
  }
  if (meta.fingerprint !== fingerprint) return null;
  const kept = new Map<string, FloatArray>();
  const state: TrainState = { step: meta.step, params: new Map(), m: new Map(), v: new Map(), history: meta.history, kept: null };
  for (const t of await readSafetensorsFile(join(dir, STATE_FILE))) {
    const [prefix, ...rest] = t.name.split('/');
    const f32 = new Float32Array(new Uint8Array(t.data).buffer);
    const data = f64 ? Float64Array.from(f32) : f32;
    ({ param: state.params, adam_m: state.m, adam_v: state.v, kept })[prefix as 'param']?.set(rest.join('/'), data);
  }
  if (meta.keptStep !== null) state.kept = { step: meta.keptStep, params: meta.keptStep === 0 ? new Map(base) : kept };
  return state;
}
