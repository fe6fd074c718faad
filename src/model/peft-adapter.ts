// PEFT's LoRA adapter format (what `PeftModel.save_pretrained` writes and `PeftModel.from_pretrained` reads):
// adapter_config.json and adapter_model.safetensors with `base_model.model.<module>.lora_{A,B}.weight` tensors.
// Also the merge W + scaling·B·A that turns base + adapter into plain weights.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ModelFileError } from '../util/errors.js';
import { readSafetensorsFile, readSafetensorsFileHeader } from './safetensors-file.js';
import { fromFloat32, toFloat32, type StoredTensor } from './safetensors.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
/** PeftModelForCausalLM wraps the transformers model: its module names start with this. */
const PEFT_PREFIX = 'base_model.model.';
const LORA_TENSOR = /^(.+)\.lora_([AB])\.weight$/;

/** What narrowtune reads from adapter_config.json. */
export interface AdapterConfig {
  rank: number;
  alpha: number;
  dropout: number;
  /** PEFT's `scaling`: alpha / rank (alpha / √rank with use_rslora). */
  scale: number;
  /** base_model_name_or_path as written. */
  base: string;
}

/** The module of a weight (`model.layers.0.mlp.gate_proj.weight` → `…gate_proj`) and its short name (`gate_proj`). */
function moduleOf(weight: string): string {
  return weight.replace(/\.weight$/, '');
}

/**
 * PEFT's target_modules for exactly `targets` among `candidates` (every weight LoRA could adapt): the list of
 * short names when they cover every layer (`["gate_proj", "up_proj"]`, PEFT's usual form), else one regex that
 * PEFT full-matches against module names, so an adapter on some layers loads onto those layers only.
 */
export function targetModules(targets: readonly string[], candidates: readonly string[]): string[] | string {
  const short = [...new Set(targets.map((t) => moduleOf(t).split('.').pop()!))];
  const covered = candidates.filter((c) => short.includes(moduleOf(c).split('.').pop()!));
  if (covered.length === targets.length) return short;
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return `^(${targets.map((t) => escape(moduleOf(t))).join('|')})$`;
}

/** adapter_config.json as PEFT writes it for a causal LM (fields PEFT reads with their defaults). */
export function adapterConfigJson(o: { rank: number; alpha: number; dropout: number; targetModules: string[] | string; base: string }): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: o.base,
    r: o.rank,
    lora_alpha: o.alpha,
    lora_dropout: o.dropout,
    target_modules: o.targetModules,
    bias: 'none',
    fan_in_fan_out: false,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    inference_mode: true,
    revision: null,
  };
}

/** The name PEFT stores an adapter tensor under. */
export function peftTensorName(name: string): string {
  return `${PEFT_PREFIX}${name}`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** adapter_config.json of `dir`, or null when `dir` holds none (a plain model directory). */
export async function readAdapterConfig(dir: string): Promise<AdapterConfig | null> {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  if (!(await exists(path))) return null;
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ModelFileError(path, `is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const bad = (why: string): never => {
    throw new ModelFileError(path, why);
  };
  if (c?.peft_type !== 'LORA') bad(`peft_type must be "LORA", got ${JSON.stringify(c?.peft_type)}`);
  const rank = c.r;
  const alpha = c.lora_alpha;
  if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 1) bad(`r must be a positive integer, got ${JSON.stringify(rank)}`);
  if (typeof alpha !== 'number' || !(alpha > 0)) bad(`lora_alpha must be a number > 0, got ${JSON.stringify(alpha)}`);
  if (typeof c.base_model_name_or_path !== 'string' || c.base_model_name_or_path === '') bad('base_model_name_or_path must name the base model directory');
  if (c.fan_in_fan_out === true) bad('fan_in_fan_out adapters (GPT-2 Conv1D layers) are not supported');
  if (c.use_dora === true) bad('DoRA adapters (use_dora) are not supported');
  if (c.bias !== undefined && c.bias !== 'none') bad(`bias must be "none", got ${JSON.stringify(c.bias)}`);
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const p = c[key];
    if (p != null && (typeof p !== 'object' || Object.keys(p).length > 0)) bad(`${key} is not supported (every module must share r and lora_alpha)`);
  }
  if (c.modules_to_save != null && !(Array.isArray(c.modules_to_save) && c.modules_to_save.length === 0)) bad('modules_to_save is not supported');
  const r = rank as number;
  const a = alpha as number;
  return {
    rank: r,
    alpha: a,
    dropout: typeof c.lora_dropout === 'number' ? c.lora_dropout : 0,
    scale: c.use_rslora === true ? a / Math.sqrt(r) : a / r,
    base: c.base_model_name_or_path as string,
  };
}

/**
 * The base model directory of an adapter: base_model_name_or_path, a relative path taken from the adapter's own
 * directory (narrowtune writes it so, and an adapter moved together with its base still loads).
 */
export function adapterBaseDir(dir: string, config: AdapterConfig): string {
  return isAbsolute(config.base) ? config.base : resolve(dir, config.base);
}

export interface AdapterPair<T extends { name: string; shape: number[] } = StoredTensor> {
  a: T; // [r, in]
  b: T; // [out, r]
}

/** The adapter's tensors by adapted weight name (`model.layers.0.mlp.gate_proj.weight`). */
export function readAdapterWeights(dir: string, config: AdapterConfig): Promise<Map<string, AdapterPair>> {
  return readPairs(dir, config, readSafetensorsFile);
}

/** The same pairs as readAdapterWeights from the file's header alone: names, dtypes and shapes, no data. */
export function readAdapterHeader(dir: string, config: AdapterConfig): Promise<Map<string, AdapterPair<{ name: string; shape: number[] }>>> {
  return readPairs(dir, config, async (path) => (await readSafetensorsFileHeader(path)).entries);
}

async function readPairs<T extends { name: string; shape: number[] }>(dir: string, config: AdapterConfig, read: (path: string) => Promise<T[]>): Promise<Map<string, AdapterPair<T>>> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!(await exists(path))) throw new ModelFileError(path, 'file not found; a PEFT adapter directory needs one (adapter_model.bin is not supported)');
  const halves = new Map<string, Partial<AdapterPair<T>>>();
  for (const t of await read(path)) {
    const m = LORA_TENSOR.exec(t.name.startsWith(PEFT_PREFIX) ? t.name.slice(PEFT_PREFIX.length) : t.name);
    if (!m) throw new ModelFileError(path, `tensor "${t.name}" is not a LoRA A or B weight`);
    const pair = halves.get(`${m[1]}.weight`) ?? {};
    pair[m[2] === 'A' ? 'a' : 'b'] = t;
    halves.set(`${m[1]}.weight`, pair);
  }
  const pairs = new Map<string, AdapterPair<T>>();
  for (const [weight, { a, b }] of halves) {
    if (!a || !b) throw new ModelFileError(path, `${moduleOf(weight)} has lora_${a ? 'B' : 'A'} missing`);
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== config.rank || b.shape[1] !== config.rank) {
      throw new ModelFileError(path, `${moduleOf(weight)}: lora_A [${a.shape}] and lora_B [${b.shape}] do not have rank ${config.rank}`);
    }
    pairs.set(weight, { a, b });
  }
  if (pairs.size === 0) throw new ModelFileError(path, 'holds no LoRA tensors');
  return pairs;
}

/** W + scale·B·A in float32 (accumulated in float64 per row), returned in W's dtype. */
export function mergeLora(w: StoredTensor, pair: AdapterPair, scale: number): StoredTensor {
  const [out, inp] = w.shape;
  const [r, inA] = pair.a.shape;
  if (w.shape.length !== 2 || inA !== inp || pair.b.shape[0] !== out) {
    throw new ModelFileError(w.name, `shape [${w.shape}] does not fit lora_A [${pair.a.shape}] and lora_B [${pair.b.shape}]`);
  }
  const W = toFloat32(w);
  const A = toFloat32(pair.a);
  const B = toFloat32(pair.b);
  const row = new Float64Array(inp);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const s = B[o * r + k];
      if (s === 0) continue;
      const base = k * inp;
      for (let i = 0; i < inp; i++) row[i] += s * A[base + i];
    }
    const at = o * inp;
    for (let i = 0; i < inp; i++) W[at + i] += scale * row[i];
  }
  return { ...w, data: fromFloat32(W, w.dtype) };
}
