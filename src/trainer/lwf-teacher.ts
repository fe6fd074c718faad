// The teacher of learning without forgetting: the base model itself (its tensors are already in memory and
// shared with the step graph's frozen initializers), or another checkpoint of the same architecture and shapes.
import { createHash } from 'node:crypto';
import { paramsOf, type ParamTensor } from '../graph/params.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { loadModel } from '../model/load-model.js';
import { architectureDifference } from '../model/same-architecture.js';
import { invalidArgument } from '../util/errors.js';
import type { LwfOptions } from './options.js';
import { sha256 } from './receipt.js';

export interface Teacher {
  params: ReadonlyMap<string, ParamTensor>;
  /** sha256 over the teacher's tensor hashes; null for the base model. Identifies the teacher in the fingerprint and receipt. */
  sha256: string | null;
}

const shapesOf = (ckpt: Pick<Checkpoint, 'tensors'>) => new Map([...ckpt.tensors].map(([n, t]) => [n, t.shape]));

export async function loadTeacher(lwf: LwfOptions, base: Checkpoint, baseParams: ReadonlyMap<string, ParamTensor>): Promise<Teacher> {
  if (lwf.teacher === null) return { params: baseParams, sha256: null };
  const ckpt = await loadModel(lwf.teacher);
  const diff = architectureDifference({ config: base.config, shapes: shapesOf(base) }, { config: ckpt.config, shapes: shapesOf(ckpt) });
  if (diff) throw invalidArgument('teacher', `${lwf.teacher} ${diff}; the teacher must have the model's architecture and shapes`);
  const params = paramsOf(ckpt);
  const digest = createHash('sha256');
  for (const n of [...params.keys()].sort()) digest.update(`${n}:${sha256(ckpt.tensors.get(n)!)}\n`);
  return { params, sha256: digest.digest('hex') };
}
