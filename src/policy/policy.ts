// Freezing policies: which Hugging Face tensors a fine-tune may change. Presets follow Zhu et al.
// (arXiv 2510.08564) and only ever match the language model's decoder layers (`model.layers.N.`).
import { NarrowtuneError, quote } from '../util/errors.js';
import { compileUserRegex, MAX_USER_REGEX_CHARS } from '../util/user-regex.js';

export const PRESETS = {
  /** Every tensor of every decoder layer (attention, MLP, norms); embeddings and lm_head stay frozen. */
  full: [/^model\.layers\.\d+\./],
  /** MLP gate, up and down projections. */
  mlp: [/^model\.layers\.\d+\.mlp\.(gate|up|down)_proj\.(weight|bias)$/],
  /** MLP gate and up projections; the down projection stays frozen (the paper's low-forgetting recipe). */
  mlp_gate_up: [/^model\.layers\.\d+\.mlp\.(gate|up)_proj\.(weight|bias)$/],
  /** Self-attention q, k, v, o projections with their biases. */
  sa_proj: [/^model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj\.(weight|bias)$/],
  /** Both of the paper's low-forgetting choices together. */
  sa_proj_gate_up: [
    /^model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj\.(weight|bias)$/,
    /^model\.layers\.\d+\.mlp\.(gate|up)_proj\.(weight|bias)$/,
  ],
} as const satisfies Record<string, readonly RegExp[]>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];
export const DEFAULT_POLICY: PresetName = 'mlp_gate_up';

export interface PolicySpec {
  /** A preset name; absent means the default preset unless `include` is given. */
  preset?: string;
  include?: string[];
  exclude?: string[];
}

export interface ResolvedPolicy {
  /** The preset's name, or 'custom' for include patterns. */
  name: string;
  include: string[];
  exclude: string[];
  /** Trainable tensors in the model's own order. */
  trainable: string[];
  /** Everything else the trainer computes with; bitwise unchanged by training. */
  frozen: string[];
}

/** Names with layer numbers folded (`model.layers.{0..23}.mlp.up_proj.weight`), for error messages. */
export function summarizeNames(names: readonly string[]): string[] {
  const groups = new Map<string, number[]>();
  for (const name of names) {
    const m = /^(.*?\.layers\.)(\d+)(\..*)$/.exec(name);
    const key = m ? `${m[1]}{N}${m[3]}` : name;
    const layers = groups.get(key) ?? [];
    if (m) layers.push(Number(m[2]));
    groups.set(key, layers);
  }
  return [...groups].map(([key, layers]) => {
    if (layers.length === 0) return key;
    const lo = Math.min(...layers);
    const hi = Math.max(...layers);
    return key.replace('{N}', lo === hi ? String(lo) : `{${lo}..${hi}}`);
  });
}

/** What a pattern needs here: the presets' RegExps, the users' RE2 patterns. */
interface NameMatcher {
  test(name: string): boolean;
}

/**
 * Resolves a policy against the model's real parameter names (`names`, the tensors the trainer computes
 * with). Every problem is collected, so one error lists every bad field. Include/exclude patterns are RE2
 * (user-regex.ts), at most MAX_USER_REGEX_CHARS characters each.
 */
export function resolvePolicy(spec: PolicySpec, names: readonly string[]): ResolvedPolicy {
  const include = spec.include ?? [];
  const exclude = spec.exclude ?? [];
  const violations: { field: string; description: string }[] = [];
  const valid = () => `valid tensor names: ${summarizeNames(names).join(', ')}`;

  if (spec.preset && include.length > 0) {
    violations.push({ field: 'policy', description: 'give either a preset or include patterns, not both' });
  }
  if (spec.preset && !(spec.preset in PRESETS)) {
    violations.push({ field: 'policy.preset', description: `unknown policy ${quote(spec.preset)}; presets: ${PRESET_NAMES.join(', ')}` });
  }
  const check = (patterns: string[], field: string) =>
    patterns.flatMap((p, i) => {
      try {
        const re = compileUserRegex(p, `${field}[${i}]`, MAX_USER_REGEX_CHARS);
        if (!names.some((n) => re.test(n))) {
          violations.push({ field: `${field}[${i}]`, description: `${quote(p)} matches no tensor; ${valid()}` });
        }
        return [re];
      } catch (e) {
        violations.push(...(e as NarrowtuneError).violations.map((v) => ({ ...v, field: `${field}[${i}]` })));
        return [];
      }
    });
  const includeRes = check(include, 'policy.include');
  const excludeRes = check(exclude, 'policy.exclude');
  if (violations.length > 0) {
    throw new NarrowtuneError('invalid_argument', violations.map((v) => `${v.field}: ${v.description}`).join('\n'), violations);
  }

  const name = include.length > 0 ? 'custom' : (spec.preset ?? DEFAULT_POLICY);
  const selectors: readonly NameMatcher[] = include.length > 0 ? includeRes : PRESETS[name as PresetName];
  const trainable = names.filter((n) => selectors.some((re) => re.test(n)) && !excludeRes.some((re) => re.test(n)));
  if (trainable.length === 0) {
    throw new NarrowtuneError('invalid_argument', `policy ${name} leaves no trainable tensor in this model; ${valid()}`, [
      { field: 'policy', description: `leaves no trainable tensor; ${valid()}` },
    ]);
  }
  const chosen = new Set(trainable);
  return { name, include, exclude, trainable, frozen: names.filter((n) => !chosen.has(n)) };
}
