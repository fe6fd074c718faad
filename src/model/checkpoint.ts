// Hugging Face model directories: load or inspect (headers only) single-file or sharded safetensors checked against
// config.json, and atomic write (temporary sibling directory, fsync, rename into place).

import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { ModelFileError, invalidArgument } from '../util/errors.js';
import { expectedTensors, parseConfig, type ModelConfig } from './config.js';
import type { LlavaConfig } from './llava-config.js';
import type { LlavaLayout } from './llava-names.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterBaseDir, type AdapterConfig, type AdapterPair, mergeLora, readAdapterConfig, readAdapterHeader, readAdapterWeights } from './peft-adapter.js';
import { readSafetensorsFile, readSafetensorsFileHeader, writeSafetensorsFile } from './safetensors-file.js';
import type { Dtype, StoredTensor } from './safetensors.js';

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  /** Every tensor found, including ones outside the language model (e.g. a vision tower), which are kept as-is. */
  tensors: Map<string, StoredTensor>;
  /** Paths of the safetensors files read. */
  files: string[];
  /**
   * A LLaVA-style model read by load-model.ts: `config` is its language model's, `tensors` hold the decoder under
   * text-model names and the tower, projector and image_newline under canonical ones (llava-names.ts).
   */
  llava?: { config: LlavaConfig; layout: LlavaLayout };
}

/** A tensor as described by its file's header. */
export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
}

/** What inspectCheckpoint finds: a Checkpoint without tensor data. */
export interface CheckpointInfo {
  config: ModelConfig;
  /** Every tensor found (a tied model's stored lm_head dropped), by name. */
  tensors: Map<string, TensorInfo>;
  /** Paths of the safetensors files whose headers were read. */
  files: string[];
}

export interface WriteCheckpointOptions {
  config: ModelConfig;
  tensors: StoredTensor[];
  /** Source model directory whose tokenizer/generation files are copied when present. */
  copyFrom?: string;
  /** Extra files written as pretty JSON, keyed by file name (e.g. `{ "narrowtune.json": {...} }`). */
  extraJson?: Record<string, unknown>;
}

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** Present in every directory narrowtune writes; its absence means the directory is not ours to replace. */
export const NARROWTUNE_MARKER = 'narrowtune.json';
const LM_HEAD = 'lm_head.weight';
const PYTORCH_WEIGHTS = 'pytorch_model.bin';

/** Files besides config and weights that make a model directory usable by transformers and tokenizers. */
export const COMPANION_FILES: readonly string[] = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'vocab.txt',
  'tokenizer.model',
  'chat_template.jinja',
  'chat_template.json',
  // LLaVA-style models: how images are resized and tiled, and how many tokens an image takes.
  'preprocessor_config.json',
  'processor_config.json',
];

/** Error messages list at most this many names, then "and N more". */
const MAX_LISTED = 10;
const RANDOM_SUFFIX_BYTES = 4;
const JSON_INDENT = 2;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

function listSome(names: readonly string[]): string {
  const shown = names.slice(0, MAX_LISTED).join(', ');
  return names.length > MAX_LISTED ? `${shown} and ${names.length - MAX_LISTED} more` : shown;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (isNotFound(e)) throw new ModelFileError(path, 'file not found');
    throw new ModelFileError(path, `cannot be read (${(e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(path, `is not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** Shard names come from a file we do not control; keep them inside the model directory. */
function isSafeShardName(name: string): boolean {
  if (name === '' || isAbsolute(name)) return false;
  return !normalize(name).split(/[\\/]/).includes('..');
}

/** Reads one safetensors file into `[name, tensor]` pairs: with data (loadCheckpoint) or header only (inspectCheckpoint). */
export type WeightsReader<T extends { shape: number[] }> = (path: string) => Promise<Array<[string, T]>>;

export interface Weights<T> {
  tensors: Map<string, T>;
  files: string[];
}

async function readSharded<T extends { shape: number[] }>(
  dir: string,
  indexPath: string,
  read: WeightsReader<T>,
): Promise<Weights<T>> {
  const index = await readJsonFile(indexPath);
  const weightMap = isPlainObject(index) ? index.weight_map : undefined;
  if (!isPlainObject(weightMap)) throw new ModelFileError(indexPath, 'has no "weight_map" object');
  const shardOf = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || !isSafeShardName(file)) {
      throw new ModelFileError(indexPath, `weight_map entry "${name}" must name a file inside the model directory, got ${JSON.stringify(file)}`);
    }
    shardOf.set(name, file);
  }
  if (shardOf.size === 0) throw new ModelFileError(indexPath, 'weight_map is empty');

  const shards = [...new Set(shardOf.values())].sort();
  const absent: string[] = [];
  for (const shard of shards) {
    const st = await statOrNull(join(dir, shard));
    if (!st?.isFile()) absent.push(shard);
  }
  if (absent.length > 0) {
    throw new ModelFileError(indexPath, `weight_map refers to shard file(s) missing from ${dir}: ${listSome(absent)}`);
  }

  const tensors = new Map<string, T>();
  const files: string[] = [];
  for (const shard of shards) {
    const path = join(dir, shard);
    files.push(path);
    for (const [name, t] of await read(path)) {
      const mapped = shardOf.get(name);
      if (mapped === undefined) throw new ModelFileError(path, `contains tensor "${name}", which ${INDEX_FILE} does not list`);
      if (mapped !== shard) {
        throw new ModelFileError(path, `contains tensor "${name}", but ${INDEX_FILE} says it is in "${mapped}"`);
      }
      tensors.set(name, t);
    }
  }
  const notFound = [...shardOf.keys()].filter((name) => !tensors.has(name));
  if (notFound.length > 0) {
    throw new ModelFileError(indexPath, `lists tensor(s) that are not in their shard: ${listSome(notFound)}`);
  }
  return { tensors, files };
}

/** Names missing from `tensors` and shape mismatches against config.json; empty when the checkpoint matches. */
function checkAgainstConfig(config: ModelConfig, tensors: ReadonlyMap<string, { shape: number[] }>): string[] {
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    const t = tensors.get(name);
    if (!t) missing.push(name);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      mismatched.push(`${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)} from ${CONFIG_FILE}`);
    }
  }
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing ${missing.length} tensor(s) that ${CONFIG_FILE} requires: ${listSome(missing)}`);
  if (mismatched.length > 0) problems.push(listSome(mismatched));
  return problems;
}

/**
 * Config and weights of a model directory, checked against each other; `read` decides whether tensor data is read.
 * The one code path behind loadCheckpoint and inspectCheckpoint, so both accept and reject exactly the same inputs.
 */
async function readCheckpoint<T extends { shape: number[] }>(
  dir: string,
  read: WeightsReader<T>,
): Promise<Weights<T> & { config: ModelConfig }> {
  const st = await statOrNull(dir);
  if (!st) throw new ModelFileError(dir, 'model directory does not exist');
  if (!st.isDirectory()) throw new ModelFileError(dir, 'is not a directory (expected a Hugging Face model directory)');

  const configPath = join(dir, CONFIG_FILE);
  if (!(await statOrNull(configPath))) throw new ModelFileError(configPath, 'file not found; a Hugging Face model directory needs one');
  const config = parseConfig(await readJsonFile(configPath), configPath);

  const { weightsDesc, ...loaded } = await readModelWeights(dir, read);
  // Tied models use embed_tokens as the head; a stored lm_head copy is stale by definition, so drop it.
  if (config.tieWordEmbeddings) loaded.tensors.delete(LM_HEAD);
  const problems = checkAgainstConfig(config, loaded.tensors);
  if (problems.length > 0) throw new ModelFileError(weightsDesc, problems.join('; '));
  return { config, tensors: loaded.tensors, files: loaded.files };
}

/** The weights of a model directory (model.safetensors or a sharded index); weightsDesc is the path to blame. */
export async function readModelWeights<T extends { shape: number[] }>(dir: string, read: WeightsReader<T>): Promise<Weights<T> & { weightsDesc: string }> {
  const indexPath = join(dir, INDEX_FILE);
  const singlePath = join(dir, WEIGHTS_FILE);
  let loaded: Weights<T>;
  let weightsDesc: string;
  if (await statOrNull(indexPath)) {
    loaded = await readSharded(dir, indexPath, read);
    weightsDesc = indexPath;
  } else if (await statOrNull(singlePath)) {
    loaded = { tensors: new Map(await read(singlePath)), files: [singlePath] };
    weightsDesc = singlePath;
  } else {
    const legacy = (await statOrNull(join(dir, PYTORCH_WEIGHTS)))
      ? `; ${PYTORCH_WEIGHTS} is not supported, convert it to safetensors first`
      : '';
    throw new ModelFileError(dir, `no model weights: neither ${WEIGHTS_FILE} nor ${INDEX_FILE} exists${legacy}`);
  }
  return { ...loaded, weightsDesc };
}

/** A PEFT LoRA adapter directory: its config and its base model directory, which must be a plain model. */
export async function adapterOf(dir: string): Promise<{ config: AdapterConfig; base: string } | null> {
  const config = await readAdapterConfig(dir);
  if (!config) return null;
  const base = adapterBaseDir(dir, config);
  if (await readAdapterConfig(base)) throw new ModelFileError(join(dir, ADAPTER_CONFIG_FILE), `base model ${base} is itself an adapter; merge it first`);
  return { config, base };
}

/** Checks each adapter pair against the base weight it adapts. */
export function checkPairs<T extends { name: string; shape: number[] }>(dir: string, pairs: Map<string, AdapterPair<T>>, base: ReadonlyMap<string, { shape: number[] }>): Map<string, AdapterPair<T>> {
  const file = join(dir, ADAPTER_WEIGHTS_FILE);
  for (const [name, { a, b }] of pairs) {
    const w = base.get(name);
    if (!w) throw new ModelFileError(file, `adapts ${name}, which the base model does not have`);
    if (w.shape.length !== 2 || w.shape[0] !== b.shape[0] || w.shape[1] !== a.shape[1]) {
      throw new ModelFileError(file, `${name} has shape ${fmtShape(w.shape)}, which lora_A ${fmtShape(a.shape)} and lora_B ${fmtShape(b.shape)} do not fit`);
    }
  }
  return pairs;
}

/**
 * Loads config.json and all safetensors weights of a Hugging Face model directory, checked against each other.
 * A PEFT LoRA adapter directory loads as its base model with the adapter merged in (W + scaling·B·A).
 */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const adapter = await adapterOf(dir);
  if (adapter) {
    const base = await loadCheckpoint(adapter.base);
    for (const [name, pair] of checkPairs(dir, await readAdapterWeights(dir, adapter.config), base.tensors)) {
      base.tensors.set(name, mergeLora(base.tensors.get(name)!, pair, adapter.config.scale));
    }
    return { dir, config: base.config, tensors: base.tensors, files: [...base.files, join(dir, ADAPTER_WEIGHTS_FILE)] };
  }
  const { config, tensors, files } = await readCheckpoint(dir, async (path) =>
    (await readSafetensorsFile(path)).map((t): [string, StoredTensor] => [t.name, t]),
  );
  return { dir, config, tensors, files };
}

/**
 * Validates a model directory exactly as loadCheckpoint does (same checks, same errors, same tied lm_head handling)
 * but reads only config.json (adapter_config.json for an adapter), the index and each safetensors file's length prefix
 * and JSON header, never tensor data.
 */
export async function inspectCheckpoint(dir: string): Promise<CheckpointInfo> {
  const adapter = await adapterOf(dir);
  if (adapter) {
    const base = await inspectCheckpoint(adapter.base);
    checkPairs(dir, await readAdapterHeader(dir, adapter.config), base.tensors);
    return { ...base, files: [...base.files, join(dir, ADAPTER_WEIGHTS_FILE)] };
  }
  return readCheckpoint(dir, async (path) =>
    (await readSafetensorsFileHeader(path)).entries.map(({ name, dtype, shape }): [string, TensorInfo] => [name, { dtype, shape }]),
  );
}

// ---- writing ----

/** Suffix for temporary names; uniqueness only, so it deliberately does not come from the seeded Rng. */
function randomSuffix(): string {
  return `${process.pid}-${randomBytes(RANDOM_SUFFIX_BYTES).toString('hex')}`;
}

async function writeSynced(path: string, data: string | Uint8Array): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes renames inside `dir` durable; some platforms cannot fsync a directory, which only weakens durability. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // best effort: see above
  } finally {
    await fh?.close();
  }
}

/** Writes a file so readers see the old or the new content, never a torn one (temp file, fsync, rename). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${randomSuffix()}`;
  try {
    await writeSynced(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await syncDir(dirname(path));
}

function prettyJson(value: unknown): string {
  return `${JSON.stringify(value, null, JSON_INDENT)}\n`;
}

/** Refuses to replace anything that is not absent, empty, or a previous narrowtune output. */
async function assertReplaceable(target: string): Promise<boolean> {
  const st = await statOrNull(target);
  if (!st) return false;
  if (!st.isDirectory()) throw new ModelFileError(target, 'exists and is not a directory; refusing to replace it');
  const entries = await readdir(target);
  if (entries.length > 0 && !entries.includes(NARROWTUNE_MARKER)) {
    throw new ModelFileError(
      target,
      `exists, is not empty and is not a narrowtune output (no ${NARROWTUNE_MARKER}); refusing to replace it. ` +
        'Choose another output directory or remove this one yourself.',
    );
  }
  return true;
}

function checkExtraName(name: string): void {
  if (name !== basename(name) || name === '' || name === '.' || name === '..' || name.includes(sep)) {
    throw invalidArgument('extraJson', `"${name}" must be a plain file name`);
  }
  if (name === CONFIG_FILE || name === WEIGHTS_FILE || name === INDEX_FILE) {
    throw invalidArgument('extraJson', `"${name}" would overwrite the checkpoint's own ${name}`);
  }
}

/**
 * Writes a complete model directory (config.json, model.safetensors, companion files, extra JSON) atomically:
 * it is built in `${outDir}.tmp-<pid>-<random>` and renamed into place, so a crash leaves the old or the new one.
 * Include NARROWTUNE_MARKER in `extraJson` so a later write may replace this output.
 */
export async function writeCheckpoint(outDir: string, opts: WriteCheckpointOptions): Promise<void> {
  const target = resolve(outDir);
  const extra = Object.entries(opts.extraJson ?? {});
  for (const [name] of extra) checkExtraName(name);

  // A tied head is embed_tokens itself; like save_pretrained, do not store a second copy.
  const tensors = opts.config.tieWordEmbeddings ? opts.tensors.filter((t) => t.name !== LM_HEAD) : opts.tensors;
  const problems = checkAgainstConfig(opts.config, new Map(tensors.map((t) => [t.name, t])));
  if (problems.length > 0) throw invalidArgument('tensors', `checkpoint for ${target} does not match its config: ${problems.join('; ')}`);

  await writeModelDirectory(target, { ...opts, extraJson: { [CONFIG_FILE]: opts.config.raw, ...opts.extraJson } }, async (tmp) => {
    // Streams tensor by tensor (models may exceed one 4 GiB buffer); a bad tensor fails before anything is renamed.
    await writeSafetensorsFile(join(tmp, WEIGHTS_FILE), tensors);
  });
}

/**
 * The atomic directory write behind writeCheckpoint, for other layouts (a PEFT adapter): `writeFiles` fills the
 * temporary directory, then companion files and `extraJson` are added and the directory is renamed into place.
 */
export async function writeModelDirectory(
  outDir: string,
  opts: Pick<WriteCheckpointOptions, 'copyFrom' | 'extraJson'>,
  writeFiles: (tmp: string) => Promise<void>,
): Promise<void> {
  const target = resolve(outDir);
  const exists = await assertReplaceable(target);
  const parent = dirname(target);
  await mkdir(parent, { recursive: true });
  const tmp = `${target}.tmp-${randomSuffix()}`;
  await mkdir(tmp);
  try {
    await writeFiles(tmp);
    if (opts.copyFrom !== undefined) {
      for (const name of COMPANION_FILES) {
        const src = join(opts.copyFrom, name);
        if (!(await statOrNull(src))?.isFile()) continue;
        await copyFile(src, join(tmp, name));
        await syncFile(join(tmp, name));
      }
    }
    for (const [name, value] of Object.entries(opts.extraJson ?? {})) await writeSynced(join(tmp, name), prettyJson(value));
    await syncDir(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await swapInto(tmp, target, exists);
}

/** Renames `tmp` to `target`, moving an existing `target` aside first (POSIX cannot rename over a non-empty dir). */
async function swapInto(tmp: string, target: string, exists: boolean): Promise<void> {
  const parent = dirname(target);
  if (!exists) {
    await rename(tmp, target);
    await syncDir(parent);
    return;
  }
  // The name matches `*.tmp-*` so leftovers from a crash between the two renames are easy to find and ignore.
  const aside = `${target}.tmp-old-${randomSuffix()}`;
  await rename(target, aside);
  try {
    await rename(tmp, target);
  } catch (e) {
    await rename(aside, target).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await syncDir(parent);
  await rm(aside, { recursive: true, force: true });
}
