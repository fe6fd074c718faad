// `narrowtune evaluate`: the service's Evaluate run here, on text or LLaVA models; a table, or the result as JSON.
import { basename, extname } from 'node:path';
import { compileAnswerRegex, EVAL_DEFAULTS, evaluate, MAX_NEW_TOKENS, type DatasetScore, type EvalDatasetOptions, type EvalKind, type EvalRole, type EvaluateResult } from '../eval/evaluate.js';
import { DEVICES } from '../runtime/session.js';
import { integerViolation, LIMITS } from '../trainer/options.js';
import { invalidArgument, NarrowtuneError, type FieldViolation } from '../util/errors.js';
import { type Flags, int, list, oneOf, parseFlags, pathFlag, required, str } from './args.js';

const KINDS: readonly EvalKind[] = ['loss', 'generate', 'choice'];
const ROLES: Readonly<Record<string, EvalRole>> = { target: 'target', 'held-out': 'held_out', heldout: 'held_out', held_out: 'held_out' };
const OPTIONS = ['kind', 'role', 'max-new-tokens', 'answer-regex'] as const;

/**
 * `[NAME=]FILE[,kind=K][,role=R][,max-new-tokens=N][,answer-regex=RE]`. An option starts at a comma followed by a known
 * option name, so commas elsewhere stay part of the path; answer-regex takes the rest of the spec (regexes hold commas).
 */
export function parseDatasetSpec(spec: string): EvalDatasetOptions {
  const flag = '--dataset';
  const at = spec.indexOf(',answer-regex=');
  const head = at < 0 ? spec : spec.slice(0, at);
  const [first, ...opts] = head.split(new RegExp(`,(?=(?:${OPTIONS.join('|')})=)`));
  const eq = first.indexOf('=');
  const path = eq < 0 ? first : first.slice(eq + 1);
  if (path === '') throw invalidArgument(flag, `expected [NAME=]FILE[,kind=…][,role=…], got "${spec}"`);
  const name = eq < 0 ? basename(path, extname(path)) : first.slice(0, eq);
  if (name === '') throw invalidArgument(flag, `empty NAME in "${spec}"`);
  const given = new Map<string, string>();
  if (at >= 0) given.set('answer-regex', spec.slice(at + ',answer-regex='.length));
  for (const o of opts) {
    const k = o.slice(0, o.indexOf('='));
    if (given.has(k)) throw invalidArgument(flag, `${name}: ${k} given twice`);
    given.set(k, o.slice(k.length + 1));
  }
  const kind = (given.get('kind') ?? 'loss') as EvalKind;
  if (!KINDS.includes(kind)) throw invalidArgument(flag, `${name}: kind must be one of ${KINDS.join(', ')}, got "${given.get('kind')}"`);
  const roleText = given.get('role');
  const role = roleText === undefined ? null : ROLES[roleText];
  if (role === undefined) throw invalidArgument(flag, `${name}: role must be target or held-out, got "${roleText}"`);
  const maxText = given.get('max-new-tokens');
  const answerRegex = given.get('answer-regex') ?? '';
  if (kind !== 'generate') {
    const stray = maxText !== undefined ? 'max-new-tokens' : given.has('answer-regex') ? 'answer-regex' : null;
    if (stray) throw invalidArgument(flag, `${name}: ${stray} applies only to kind=generate`);
  }
  const maxNewTokens = maxText === undefined ? EVAL_DEFAULTS.maxNewTokens : Number(maxText);
  const bad = integerViolation(maxNewTokens, 'max-new-tokens', [1, MAX_NEW_TOKENS]);
  if (bad) throw invalidArgument(flag, `${name}: max-new-tokens ${bad.description.replace(/got .*/, `got "${maxText}"`)}`);
  try {
    compileAnswerRegex(answerRegex, 'answer-regex');
  } catch (e) {
    if (e instanceof NarrowtuneError) throw invalidArgument(flag, `${name}: answer-regex ${e.violations[0]?.description ?? e.message}`);
    throw e;
  }
  return { name, path, kind, role, maxNewTokens, answerRegex };
}

function tokenClasses(f: Flags): { name: string; pattern: string }[] {
  return list(f, 'token-class').map((spec) => {
    const at = spec.indexOf('=');
    if (at <= 0) throw invalidArgument('--token-class', `expected NAME=RE, got "${spec}"`);
    return { name: spec.slice(0, at), pattern: spec.slice(at + 1) };
  });
}

function bounded(f: Flags, name: string, range: readonly [number, number], fallback: number | null): number | null {
  const n = int(f, name);
  if (n === undefined) return fallback;
  const v = integerViolation(n, `--${name}`, range);
  if (v) throw invalidArgument(v.field, v.description);
  return n;
}

/** evaluate()'s request field names (datasets[i].path, base_model, …) as this command's flags. */
function asFlags(e: NarrowtuneError, datasets: readonly EvalDatasetOptions[]): NarrowtuneError {
  const flagOf = (field: string) => {
    const m = /^datasets\[(\d+)\](?:\.(\w+))?/.exec(field);
    if (m) return `--dataset ${datasets[Number(m[1])]?.name ?? m[1]}${m[2] && m[2] !== 'path' ? ` (${m[2].replace(/_/g, '-')})` : ''}`;
    return ({ base_model: '--base', token_classes: '--token-class', model: '--model', datasets: '--dataset' } as Record<string, string>)[field.replace(/\[.*$/, '')] ?? field;
  };
  const v: FieldViolation[] = e.violations.map((x) => ({ field: flagOf(x.field), description: x.description }));
  if (v.length === 0) return e;
  return new NarrowtuneError(e.kind, v.map((x) => `${x.field}: ${x.description}`).join('\n'), v, { cause: e });
}

export const EVALUATE_FLAGS = {
  model: { type: 'string' },
  base: { type: 'string' },
  dataset: { type: 'string', multiple: true },
  'token-class': { type: 'string', multiple: true },
  'batch-size': { type: 'string' },
  'seq-len': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  'feature-cache': { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function evaluateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, EVALUATE_FLAGS);
  const model = required(f, 'model');
  const specs = list(f, 'dataset');
  if (specs.length === 0) throw invalidArgument('--dataset', 'is required (at least one)');
  const datasets = specs.map(parseDatasetSpec);
  const names = datasets.map((d) => d.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) throw invalidArgument('--dataset', `two datasets are named "${twice}"; give each a NAME= of its own`);
  const base = str(f, 'base') ?? null;
  const classes = tokenClasses(f);
  if (classes.length > 0 && base === null) throw invalidArgument('--token-class', 'token classes are reported in the drift figures, which need --base');
  const options = {
    model,
    base,
    datasets,
    tokenClasses: classes,
    batchSize: bounded(f, 'batch-size', LIMITS.batchSize, EVAL_DEFAULTS.batchSize)!,
    seqLen: bounded(f, 'seq-len', LIMITS.seqLen, EVAL_DEFAULTS.seqLen)!,
    device: oneOf(f, 'device', DEVICES) ?? EVAL_DEFAULTS.device,
    threads: bounded(f, 'threads', LIMITS.threads, null),
    featureCache: pathFlag(f, 'feature-cache') ?? null,
  };
  let result: EvaluateResult;
  try {
    result = await evaluate(options);
  } catch (e) {
    throw e instanceof NarrowtuneError ? asFlags(e, datasets) : e;
  }
  process.stdout.write(f.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatResult(result));
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const signedPct = (x: number) => `${x >= 0 ? '+' : '−'}${(100 * Math.abs(x)).toFixed(1)}`;
const signed = (x: number, digits: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;

/** One row per dataset (accuracy: exact match, pick rate or token accuracy by kind), then the summary. */
export function formatResult(r: EvaluateResult): string {
  const withBase = r.datasets.some((d) => d.base);
  const header = ['dataset', 'kind', 'role', 'accuracy', ...(withBase ? ['base', 'Δ acc (pts)', 'Δ loss', 'KL to base'] : ['loss']), 'examples'];
  const row = (d: DatasetScore) => [
    d.name,
    d.kind,
    d.role === 'held_out' ? 'held-out' : (d.role ?? '-'),
    pct(d.accuracy),
    ...(d.base ? [pct(d.base.accuracy), signedPct(d.base.accuracyDelta), signed(d.base.lossDelta, 4), d.base.drift.klToBase.toFixed(4)] : [d.loss.toFixed(4)]),
    String(d.examples),
  ];
  const rows = [header, ...r.datasets.map(row)];
  const widths = header.map((_, c) => Math.max(...rows.map((x) => x[c].length)));
  // Text left, figures right.
  const lines = rows.map((x) => x.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd());
  const out = [...lines];
  if (r.images) out.push('', `images: ${r.images.files} file${r.images.files === 1 ? '' : 's'}, ${r.images.visionRuns} vision tower run${r.images.visionRuns === 1 ? '' : 's'}`);
  if (withBase) {
    const summary = (label: string, x: number | null, n: number, what: string) =>
      `${label} ${x === null ? `n/a (no ${what} datasets)` : `${signedPct(x)} pts (mean over ${n} ${what} dataset${n === 1 ? '' : 's'})`}`;
    out.push('', summary('Δ learning  ', r.deltaLearning, r.targetDatasets, 'target'), summary('Δ forgetting', r.deltaForgetting, r.heldOutDatasets, 'held-out'));
  }
  return `${out.join('\n')}\n`;
}
