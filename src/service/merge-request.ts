// MergeModelsRequest → merge options: both models resolved inside the model roots (a job's output, an adapter and
// its base included) and of one architecture, alpha in range, the output a new path inside the model roots.
import type { MergeModelsRequest } from '../gen/narrowtune/v1/tuning_service.js';
import type { CheckpointInfo } from '../model/checkpoint.js';
import { alphaViolation, llavaDifference, type MergeOptions } from '../model/merge.js';
import { architectureDifference } from '../model/same-architecture.js';
import { confinePath } from './paths.js';
import { type RequestContext, resolveModel } from './requests.js';
import { Violations } from './violations.js';

const shapes = (info: CheckpointInfo) => new Map([...info.tensors].map(([n, t]) => [n, t.shape]));

export async function parseMergeModels(req: MergeModelsRequest, ctx: RequestContext): Promise<MergeOptions> {
  const v = new Violations();
  const base = await resolveModel(v, ctx, req.baseModel, 'base_model');
  const tuned = await resolveModel(v, ctx, req.tunedModel, 'tuned_model');
  if (base && tuned) {
    // Whether a LLaVA pair's towers hold the same bytes needs their data: the merge itself checks that.
    const diff = llavaDifference(base.info, tuned.info) ?? architectureDifference({ config: base.info.config, shapes: shapes(base.info) }, { config: tuned.info.config, shapes: shapes(tuned.info) });
    if (diff) v.add(tuned.field, `${diff}; WiSE-FT merges models of one architecture and shapes`);
  }
  const bad = alphaViolation(req.alpha);
  if (bad) v.add('alpha', bad);
  const out = await v.collect(() => confinePath(req.outputPath, ctx.modelRoots, 'output_path'));
  if (out !== undefined && (out === base?.dir || out === tuned?.dir)) v.add('output_path', 'must not be base_model or tuned_model');
  v.throwIfAny();
  return { base: base!.dir, tuned: tuned!.dir, alpha: req.alpha, out: out! };
}
