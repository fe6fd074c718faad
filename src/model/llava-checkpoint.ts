// LLaVA-style model directories: config and weights (single file or sharded) read in any of the three layouts,
// checked against each other under canonical names, and written back under the names they came with.

import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ModelFileError, invalidArgument } from '../util/errors.js';
import { CONFIG_FILE, WEIGHTS_FILE, readJsonFile, readModelWeights, writeModelDirectory, type TensorInfo, type WeightsReader } from './checkpoint.js';
import { isLlavaConfig, parseLlavaConfig, type LlavaConfig } from './llava-config.js';
import { canonicalNames, detectLayout, expectedLlavaTensors, isOptionalVisionTensor, partOf, toFileName, type LlavaLayout } from './llava-names.js';
import { readSafetensorsFile, readSafetensorsFileHeader, writeSafetensorsFile } from './safetensors-file.js';
import type { StoredTensor } from './safetensors.js';

/** A LLaVA checkpoint split into the decoder (what the text-model graph trains) and the rest, canonical names. */
export interface LlavaWeights<T> {
  dir: string;
  config: LlavaConfig;
  /** The layout of the files' names; writeLlavaCheckpoint writes the same one back. */
  layout: LlavaLayout;
  /** The decoder as a text-only checkpoint names it (model.*, lm_head.weight); a tied model's stored head dropped. */
  language: Map<string, T>;
  /** Tower (vision_tower.vision_model.*), projector (multi_modal_projector.*) and image_newline. */
  vision: Map<string, T>;
  /** Paths of the safetensors files read. */
  files: string[];
}

export type LlavaCheckpoint = LlavaWeights<StoredTensor>;
export type LlavaCheckpointInfo = LlavaWeights<TensorInfo>;

export interface WriteLlavaOptions {
  config: LlavaConfig;
  layout: LlavaLayout;
  /** Every tensor under its canonical name: decoder, tower, projector, image_newline. */
  tensors: StoredTensor[];
  /** Source directory whose tokenizer, generation and preprocessor files are copied when present. */
  copyFrom?: string;
  /** Extra files written as pretty JSON, keyed by file name. */
  extraJson?: Record<string, unknown>;
}

const LM_HEAD = 'lm_head.weight';
const MAX_LISTED = 10;

function listSome(items: readonly string[]): string {
  const shown = items.slice(0, MAX_LISTED).join(', ');
  return items.length > MAX_LISTED ? `${shown} and ${items.length - MAX_LISTED} more` : shown;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/**
 * Missing, misshapen and unexpected tensors against the config, each named as `layout` stores it; empty when the
 * tensors match. A tied model must not include lm_head.weight.
 */
export function checkLlavaTensors(config: LlavaConfig, layout: LlavaLayout, shapes: ReadonlyMap<string, readonly number[]>): string[] {
  const expected = expectedLlavaTensors(config);
  const fileName = (canonical: string): string => toFileName(layout, canonical);
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const [name, shape] of expected) {
    const got = shapes.get(name);
    if (got === undefined) missing.push(fileName(name));
    else if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      mismatched.push(`${fileName(name)} has shape ${fmtShape(got)}, expected ${fmtShape(shape)} from ${CONFIG_FILE}`);
    }
  }
  const unexpected = [...shapes.keys()].filter((n) => !expected.has(n) && !isOptionalVisionTensor(config, n)).map(fileName);
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing ${missing.length} tensor(s) that ${CONFIG_FILE} requires: ${listSome(missing)}`);
  if (mismatched.length > 0) problems.push(listSome(mismatched));
  if (unexpected.length > 0) problems.push(`${unexpected.length} tensor(s) that ${CONFIG_FILE} does not describe: ${listSome(unexpected)}`);
  return problems;
}

async function readLlava<T extends { shape: number[] }>(dir: string, read: WeightsReader<T>, rename: (t: T, name: string) => T): Promise<LlavaWeights<T>> {
  const st = await stat(dir).catch(() => null);
  if (!st) throw new ModelFileError(dir, 'model directory does not exist');
  if (!st.isDirectory()) throw new ModelFileError(dir, 'is not a directory (expected a Hugging Face model directory)');
  const configPath = join(dir, CONFIG_FILE);
  const json = await readJsonFile(configPath);
  if (!isLlavaConfig(json)) throw new ModelFileError(configPath, 'is not a LLaVA-style config (model_type llava_onevision or llava, or LlavaQwenForCausalLM)');

  const { tensors, files, weightsDesc } = await readModelWeights(dir, read);
  const layout = detectLayout(tensors.keys(), weightsDesc);
  const byCanonical = new Map<string, T>();
  for (const [canonical, fileName] of canonicalNames(layout, tensors.keys(), weightsDesc)) {
    byCanonical.set(canonical, rename(tensors.get(fileName)!, canonical));
  }
  const config = parseLlavaConfig(json, configPath, new Map([...byCanonical].map(([n, t]) => [n, t.shape])));
  // As for text models: a tied head is embed_tokens itself, so a stored copy is stale.
  if (config.text.tieWordEmbeddings) byCanonical.delete(LM_HEAD);
  const problems = checkLlavaTensors(config, layout, new Map([...byCanonical].map(([n, t]) => [n, t.shape])));
  if (problems.length > 0) throw new ModelFileError(weightsDesc, problems.join('; '));

  const language = new Map<string, T>();
  const vision = new Map<string, T>();
  for (const [name, t] of byCanonical) (partOf(name) === 'language' ? language : vision).set(name, t);
  return { dir, config, layout, language, vision, files };
}

/** Loads a LLaVA-style model directory in any layout; tensors are renamed to their canonical names. */
export async function loadLlavaCheckpoint(dir: string): Promise<LlavaCheckpoint> {
  return readLlava(
    dir,
    async (path) => (await readSafetensorsFile(path)).map((t): [string, StoredTensor] => [t.name, t]),
    (t, name) => ({ ...t, name }),
  );
}

/** Validates a LLaVA-style model directory exactly as loadLlavaCheckpoint does, reading only headers. */
export async function inspectLlavaCheckpoint(dir: string): Promise<LlavaCheckpointInfo> {
  return readLlava(
    dir,
    async (path) => (await readSafetensorsFileHeader(path)).entries.map(({ name, dtype, shape }): [string, TensorInfo] => [name, { dtype, shape }]),
    (t) => t,
  );
}

/**
 * Writes a LLaVA-style model directory atomically (see writeModelDirectory): config.json as `config.raw`, and one
 * model.safetensors with every canonical tensor stored under `layout`'s name for it.
 */
export async function writeLlavaCheckpoint(outDir: string, opts: WriteLlavaOptions): Promise<void> {
  const target = resolve(outDir);
  const tensors = opts.config.text.tieWordEmbeddings ? opts.tensors.filter((t) => t.name !== LM_HEAD) : opts.tensors;
  const problems = checkLlavaTensors(opts.config, opts.layout, new Map(tensors.map((t) => [t.name, t.shape])));
  if (problems.length > 0) throw invalidArgument('tensors', `checkpoint for ${target} does not match its config: ${problems.join('; ')}`);
  if (opts.extraJson && (CONFIG_FILE in opts.extraJson || WEIGHTS_FILE in opts.extraJson)) {
    throw invalidArgument('extraJson', `must not name ${CONFIG_FILE} or ${WEIGHTS_FILE}`);
  }
  const stored = tensors.map((t) => ({ ...t, name: toFileName(opts.layout, t.name) }));
  await writeModelDirectory(target, { copyFrom: opts.copyFrom, extraJson: { [CONFIG_FILE]: opts.config.raw, ...opts.extraJson } }, async (tmp) => {
    await writeSafetensorsFile(join(tmp, WEIGHTS_FILE), stored);
  });
}
