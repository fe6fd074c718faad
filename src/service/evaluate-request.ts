// EvaluateRequest → evaluation options: models resolved and inspected, datasets confined and readable, kinds,
// roles and ranges checked; every violation at once. Data lines (and a LLaVA model's images, confined to the caller's
// data roots) are read later, in the evaluation worker.
import { EvalDataset_Kind, EvalDataset_Role, type EvalDataset, type EvaluateRequest } from '../gen/narrowtune/v1/tuning_service.js';
import {
  architectureDifference,
  compileAnswerRegex,
  EVAL_DEFAULTS,
  MAX_NEW_TOKENS,
  type EvalDatasetOptions,
  type EvalKind,
  type EvalRole,
  type EvaluateOptions,
} from '../eval/evaluate.js';
import { deviceViolation, integerViolation, LIMITS } from '../trainer/options.js';
import { checkTokenClasses, dataFile, type RequestContext, resolveModel } from './requests.js';
import { Violations } from './violations.js';

export const MAX_EVAL_DATASETS = 32;

export type EvaluateCommand = EvaluateOptions;

const KINDS: Readonly<Record<number, EvalKind>> = {
  [EvalDataset_Kind.KIND_UNSPECIFIED]: 'loss',
  [EvalDataset_Kind.LOSS]: 'loss',
  [EvalDataset_Kind.GENERATE]: 'generate',
  [EvalDataset_Kind.CHOICE]: 'choice',
};
const ROLES: Readonly<Record<number, EvalRole>> = {
  [EvalDataset_Role.ROLE_UNSPECIFIED]: null,
  [EvalDataset_Role.TARGET]: 'target',
  [EvalDataset_Role.HELD_OUT]: 'held_out',
};

export async function parseEvaluate(req: EvaluateRequest, ctx: RequestContext): Promise<EvaluateCommand> {
  const v = new Violations();
  const model = await resolveModel(v, ctx, req.model, 'model');
  const base = req.baseModel?.source ? await resolveModel(v, ctx, req.baseModel, 'base_model') : undefined;
  if (model && base) {
    const diff = architectureDifference(model.info.config, base.info.config);
    if (diff) v.add(base.field, diff);
  }

  if (req.datasets.length === 0) v.add('datasets', 'at least one dataset is required');
  if (req.datasets.length > MAX_EVAL_DATASETS) v.add('datasets', `at most ${MAX_EVAL_DATASETS} datasets, got ${req.datasets.length}`);
  const datasets: EvalDatasetOptions[] = [];
  for (const [i, d] of req.datasets.slice(0, MAX_EVAL_DATASETS).entries()) datasets.push(await parseDataset(v, ctx, d, `datasets[${i}]`));

  if (req.tokenClasses.length > 0 && !req.baseModel?.source) v.add('token_classes', 'token classes are reported in the drift figures, which need base_model');
  checkTokenClasses(v, req.tokenClasses);
  const batchSize = req.batchSize ?? EVAL_DEFAULTS.batchSize;
  const seqLen = req.seqLen ?? EVAL_DEFAULTS.seqLen;
  const device = req.device || EVAL_DEFAULTS.device;
  for (const bad of [integerViolation(batchSize, 'batch_size', LIMITS.batchSize), integerViolation(seqLen, 'seq_len', LIMITS.seqLen), deviceViolation(device)]) {
    if (bad) v.add(bad.field, bad.description);
  }
  v.throwIfAny();
  return {
    model: model!.dir,
    base: base?.dir ?? null,
    datasets,
    tokenClasses: req.tokenClasses.map((c) => ({ name: c.name, pattern: c.pattern })),
    batchSize,
    seqLen,
    device: device as EvaluateOptions['device'],
    // Images named by the datasets may lie anywhere in the roots this caller may read, after symlinks.
    roots: ctx.dataRoots,
  };
}

async function parseDataset(v: Violations, ctx: RequestContext, d: EvalDataset, at: string): Promise<EvalDatasetOptions> {
  const path = await dataFile(v, ctx, d.path, `${at}.path`, true);
  const kind = KINDS[d.kind];
  if (!kind) v.add(`${at}.kind`, `${d.kind} is not a kind (LOSS = 1, GENERATE = 2, CHOICE = 3)`);
  if (!(d.role in ROLES)) v.add(`${at}.role`, `${d.role} is not a role (TARGET = 1, HELD_OUT = 2)`);
  const maxNewTokens = d.maxNewTokens ?? EVAL_DEFAULTS.maxNewTokens;
  if (kind === 'generate') {
    const bad = integerViolation(maxNewTokens, `${at}.max_new_tokens`, [1, MAX_NEW_TOKENS]);
    if (bad) v.add(bad.field, bad.description);
    v.collectSync(() => compileAnswerRegex(d.answerRegex, `${at}.answer_regex`));
  } else if (kind) {
    if (d.maxNewTokens !== undefined) v.add(`${at}.max_new_tokens`, 'applies only to GENERATE datasets');
    if (d.answerRegex) v.add(`${at}.answer_regex`, 'applies only to GENERATE datasets');
  }
  return { name: d.name || d.path, path: path ?? '', kind: kind ?? 'loss', role: ROLES[d.role] ?? null, maxNewTokens, answerRegex: d.answerRegex };
}
