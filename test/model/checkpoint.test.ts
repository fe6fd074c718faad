// Tests for loading (single-file and sharded) and atomically writing Hugging Face model directories.

import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ModelFileError } from '../../src/util/errors.js';
import { inspectCheckpoint, loadCheckpoint, writeCheckpoint, writeFileAtomic, type Checkpoint } from '../../src/model/checkpoint.js';
import { expectedTensors, parseConfig, type ModelConfig } from '../../src/model/config.js';
import { fromFloat32, numel, serializeSafetensors, type StoredTensor } from '../../src/model/safetensors.js';
import { MALFORMED_SAFETENSORS, rawSafetensors, useTempDirs } from './helpers.js';

const tempDir = useTempDirs();

function tinyRaw(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 32,
    vocab_size: 24,
    tie_word_embeddings: false,
    ...extra,
  };
}

/** Tensors whose values encode their index, so a mix-up between tensors is visible. */
function tensorsFor(config: ModelConfig): StoredTensor[] {
  return [...expectedTensors(config)].map(([name, shape], i) => ({
    name,
    dtype: 'F32' as const,
    shape,
    data: fromFloat32(new Float32Array(numel(shape)).fill(i), 'F32'),
  }));
}

async function writeModelDir(dir: string, raw: Record<string, unknown>, tensors: StoredTensor[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(raw));
  await writeFile(join(dir, 'model.safetensors'), serializeSafetensors(tensors));
}

/** Loads `dir` with loadCheckpoint and checks that inspectCheckpoint accepts it and describes the same tensors. */
async function loadOk(dir: string): Promise<Checkpoint> {
  const ckpt = await loadCheckpoint(dir);
  const info = await inspectCheckpoint(dir);
  expect(info.config).toEqual(ckpt.config);
  expect(info.files).toEqual(ckpt.files);
  expect([...info.tensors]).toEqual([...ckpt.tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape }]));
  return ckpt;
}

/** Both loadCheckpoint and inspectCheckpoint reject `dir` with a ModelFileError, and with the same message. */
async function loadError(dir: string): Promise<Error> {
  const settle = (p: Promise<unknown>): Promise<unknown> =>
    p.then(
      () => null,
      (err: unknown) => err,
    );
  const e = await settle(loadCheckpoint(dir));
  expect(e).toBeInstanceOf(ModelFileError);
  const inspected = await settle(inspectCheckpoint(dir));
  expect(inspected).toBeInstanceOf(ModelFileError);
  expect((inspected as Error).message).toBe((e as Error).message);
  return e as Error;
}

/** Writes a sharded checkpoint: each shard file holds the given tensors, and the index maps them accordingly. */
async function writeShardedDir(dir: string, raw: Record<string, unknown>, shards: Record<string, StoredTensor[]>): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(raw));
  const weightMap: Record<string, string> = {};
  for (const [file, ts] of Object.entries(shards)) {
    await writeFile(join(dir, file), serializeSafetensors(ts));
    for (const t of ts) weightMap[t.name] = file;
  }
  await writeIndex(dir, { metadata: { total_size: 0 }, weight_map: weightMap });
  return weightMap;
}

async function writeIndex(dir: string, index: unknown): Promise<void> {
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
}

describe('loadCheckpoint and inspectCheckpoint (same verdicts, same messages)', () => {
  it('loads a single-file checkpoint', async () => {
    const dir = await tempDir();
    const config = parseConfig(tinyRaw(), 'x');
    const tensors = tensorsFor(config);
    await writeModelDir(dir, tinyRaw(), tensors);
    const ckpt = await loadOk(dir);
    expect(ckpt.dir).toBe(dir);
    expect(ckpt.config.arch).toBe('qwen2');
    expect(ckpt.files).toEqual([join(dir, 'model.safetensors')]);
    expect(ckpt.tensors.size).toBe(tensors.length);
    expect([...ckpt.tensors.get('model.layers.1.self_attn.k_proj.bias')!.data]).toEqual([
      ...tensors.find((t) => t.name === 'model.layers.1.self_attn.k_proj.bias')!.data,
    ]);
  });

  it('loads a sharded checkpoint through model.safetensors.index.json', async () => {
    const dir = await tempDir();
    const config = parseConfig(tinyRaw(), 'x');
    const tensors = tensorsFor(config);
    const half = Math.floor(tensors.length / 2);
    const shards = { 'model-00001-of-00002.safetensors': tensors.slice(0, half), 'model-00002-of-00002.safetensors': tensors.slice(half) };
    const weightMap = await writeShardedDir(dir, tinyRaw(), shards);
    const ckpt = await loadOk(dir);
    expect(ckpt.files.map((f) => basename(f))).toEqual(Object.keys(shards));
    expect(ckpt.tensors.size).toBe(tensors.length);
    for (const t of tensors) expect([...ckpt.tensors.get(t.name)!.data]).toEqual([...t.data]);

    // The index says a tensor lives elsewhere than it does.
    const moved = tensors[0].name;
    await writeIndex(dir, { weight_map: { ...weightMap, [moved]: 'model-00002-of-00002.safetensors' } });
    expect((await loadError(dir)).message).toMatch(
      new RegExp(`model-00001-of-00002.safetensors: contains tensor "${moved}", but model.safetensors.index.json says it is in "model-00002-of-00002.safetensors"`),
    );

    // The index refers to a shard that does not exist.
    await writeIndex(dir, { weight_map: { ...weightMap, extra: 'model-00003.safetensors' } });
    expect((await loadError(dir)).message).toMatch(/missing from .*: model-00003.safetensors/);

    // The index lists a tensor that its shard does not contain.
    await writeIndex(dir, { weight_map: { ...weightMap, ghost: 'model-00001-of-00002.safetensors' } });
    expect((await loadError(dir)).message).toMatch(/index.json: lists tensor\(s\) that are not in their shard: ghost/);

    // A shard holds a tensor the index does not list.
    const { [moved]: _unlisted, ...partial } = weightMap;
    await writeIndex(dir, { weight_map: partial });
    expect((await loadError(dir)).message).toMatch(new RegExp(`contains tensor "${moved}", which model.safetensors.index.json does not list`));

    await writeIndex(dir, { weight_map: { ...weightMap, [moved]: '../elsewhere.safetensors' } });
    expect((await loadError(dir)).message).toMatch(/must name a file inside the model directory/);
    await writeIndex(dir, { weight_map: {} });
    expect((await loadError(dir)).message).toMatch(/weight_map is empty/);
    await writeIndex(dir, { metadata: {} });
    expect((await loadError(dir)).message).toMatch(/has no "weight_map" object/);
    await writeFile(join(dir, 'model.safetensors.index.json'), '{');
    expect((await loadError(dir)).message).toMatch(/index.json: is not valid JSON/);
  });

  it('lists missing tensors (at most 10, then "and N more") and shape mismatches', async () => {
    const dir = await tempDir();
    const config = parseConfig(tinyRaw(), 'x');
    const tensors = tensorsFor(config);
    const kept = tensors.filter((t) => !t.name.startsWith('model.layers.1.'));
    const dropped = tensors.length - kept.length;
    expect(dropped).toBeGreaterThan(10);
    await writeModelDir(dir, tinyRaw(), kept);
    const missing = (await loadError(dir)).message;
    expect(missing).toContain(join(dir, 'model.safetensors'));
    expect(missing).toContain(`missing ${dropped} tensor(s) that config.json requires: model.layers.1.input_layernorm.weight`);
    expect(missing).toContain(`and ${dropped - 10} more`);

    const wrong = tensors.map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [4, 4] } : t));
    await writeModelDir(dir, tinyRaw(), wrong);
    expect((await loadError(dir)).message).toContain('model.norm.weight has shape [4,4], expected [16] from config.json');
  });

  it('accepts and drops a stored lm_head of a tied model, and keeps unrelated extra tensors', async () => {
    const dir = await tempDir();
    const raw = tinyRaw({ tie_word_embeddings: true });
    const config = parseConfig(raw, 'x');
    const extra: StoredTensor = { name: 'visual.patch_embed.proj.weight', dtype: 'BF16', shape: [2], data: fromFloat32(Float32Array.of(1, 2), 'BF16') };
    const lmHead: StoredTensor = { name: 'lm_head.weight', dtype: 'F32', shape: [24, 16], data: new Uint8Array(24 * 16 * 4) };
    await writeModelDir(dir, raw, [...tensorsFor(config), extra, lmHead]);
    const ckpt = await loadOk(dir);
    expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
    expect(ckpt.tensors.get('visual.patch_embed.proj.weight')?.dtype).toBe('BF16');
  });

  it('explains missing directories, configs and weights', async () => {
    const root = await tempDir();
    expect((await loadError(join(root, 'nope'))).message).toMatch(/nope: model directory does not exist/);
    await writeFile(join(root, 'file'), 'x');
    expect((await loadError(join(root, 'file'))).message).toMatch(/file: is not a directory/);
    const dir = join(root, 'm');
    await mkdir(dir);
    expect((await loadError(dir)).message).toMatch(/config.json: file not found/);
    await writeFile(join(dir, 'config.json'), '{ not json');
    expect((await loadError(dir)).message).toMatch(/config.json: is not valid JSON/);
    await writeFile(join(dir, 'config.json'), JSON.stringify(tinyRaw({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' })));
    expect((await loadError(dir)).message).toMatch(/config.json: /);
    await writeFile(join(dir, 'config.json'), JSON.stringify(tinyRaw()));
    expect((await loadError(dir)).message).toMatch(/no model weights: neither model.safetensors nor model.safetensors.index.json/);
    await writeFile(join(dir, 'pytorch_model.bin'), 'x');
    expect((await loadError(dir)).message).toMatch(/pytorch_model.bin is not supported/);
    await writeFile(join(dir, 'model.safetensors'), new Uint8Array(3));
    expect((await loadError(dir)).message).toMatch(/model.safetensors: not a valid safetensors file/);
  });
  it('rejects every malformed safetensors file, single or as a shard', async () => {
    const root = await tempDir();
    const config = parseConfig(tinyRaw(), 'x');
    const single = join(root, 'single');
    const sharded = join(root, 'sharded');
    const shard = 'model-00002-of-00002.safetensors';
    const weightMap = await writeShardedDir(sharded, tinyRaw(), { 'model-00001-of-00002.safetensors': tensorsFor(config), [shard]: [] });
    await writeIndex(sharded, { weight_map: { ...weightMap, a: shard } });
    for (const { what, bytes, problem } of MALFORMED_SAFETENSORS) {
      await writeModelDir(single, tinyRaw(), []);
      await writeFile(join(single, 'model.safetensors'), bytes);
      const e = await loadError(single);
      expect(e.message, what).toContain(join(single, 'model.safetensors'));
      expect(e.message, what).toMatch(problem);
      await writeFile(join(sharded, shard), bytes);
      expect((await loadError(sharded)).message, what).toMatch(problem);
    }
  });
});

describe('inspectCheckpoint', () => {
  it('reads only each file\'s prefix and header, never tensor data, even of a huge sparse checkpoint', async () => {
    const dir = await tempDir();
    // A tied model with a stale lm_head: ~8 GiB of (sparse, never written) tensor data behind a valid header.
    const raw = tinyRaw({ vocab_size: 1 << 26, tie_word_embeddings: true });
    const config = parseConfig(raw, 'x');
    const entries: Record<string, unknown> = {};
    let offset = 0;
    for (const [name, shape] of [...expectedTensors(config), ['lm_head.weight', [1 << 26, 16]] as const]) {
      const bytes = numel(shape) * 4;
      entries[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
    }
    expect(offset).toBeGreaterThan(2 ** 33);
    const header = rawSafetensors(entries);
    const path = join(dir, 'model.safetensors');
    await writeFile(path, header);
    const fh = await open(path, 'r+');
    await fh.truncate(header.length + offset);
    const fileHandleProto = Object.getPrototypeOf(fh) as { read: (...args: unknown[]) => unknown };
    await fh.close();
    await writeFile(join(dir, 'config.json'), JSON.stringify(raw));

    const read = vi.spyOn(fileHandleProto, 'read');
    try {
      const info = await inspectCheckpoint(dir);
      expect(info.files).toEqual([path]);
      expect(info.tensors.has('lm_head.weight')).toBe(false);
      expect(info.tensors.get('model.embed_tokens.weight')).toEqual({ dtype: 'F32', shape: [1 << 26, 16] });
      expect(info.tensors.size).toBe(expectedTensors(config).size);
      // Every read lies within the length prefix and JSON header.
      const calls = read.mock.calls as unknown as [Uint8Array, number, number, number][];
      expect(calls.length).toBeGreaterThan(0);
      for (const [, , length, position] of calls) expect(position + length).toBeLessThanOrEqual(header.length);
      expect(calls.reduce((sum, [, , length]) => sum + length, 0)).toBe(header.length);
    } finally {
      read.mockRestore();
    }
  });
});

describe('writeCheckpoint', () => {
  const marker = { 'narrowtune.json': { run: 1 } };

  async function siblings(dir: string): Promise<string[]> {
    return (await readdir(dirname(dir))).sort();
  }

  it('writes a complete, loadable directory with copied tokenizer files and extra JSON, leaving no temporaries', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    const raw = tinyRaw({ some_unknown_key: [1, 2] });
    const config = parseConfig(raw, 'x');
    await writeModelDir(src, raw, tensorsFor(config));
    await writeFile(join(src, 'tokenizer.json'), '{"tok":1}');
    await writeFile(join(src, 'chat_template.jinja'), '{{ x }}');
    await writeFile(join(src, 'unrelated.txt'), 'not copied');

    const out = join(root, 'out');
    const loaded = await loadCheckpoint(src);
    await writeCheckpoint(out, { config: loaded.config, tensors: [...loaded.tensors.values()], copyFrom: src, extraJson: marker });
    expect((await readdir(out)).sort()).toEqual(['chat_template.jinja', 'config.json', 'model.safetensors', 'narrowtune.json', 'tokenizer.json']);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))).toEqual(raw);
    expect(await readFile(join(out, 'model.safetensors'))).toEqual(await readFile(join(src, 'model.safetensors')));
    expect(JSON.parse(await readFile(join(out, 'narrowtune.json'), 'utf8'))).toEqual({ run: 1 });
    expect(await readFile(join(out, 'tokenizer.json'), 'utf8')).toBe('{"tok":1}');
    expect((await loadCheckpoint(out)).tensors.size).toBe(loaded.tensors.size);
    expect(await siblings(out)).toEqual(['out', 'src']);
  });

  it('replaces a previous narrowtune output completely', async () => {
    const root = await tempDir();
    const out = join(root, 'out');
    const config = parseConfig(tinyRaw(), 'x');
    await writeCheckpoint(out, { config, tensors: tensorsFor(config), extraJson: { ...marker, 'stale.json': {} } });
    const bigger = parseConfig(tinyRaw({ vocab_size: 40 }), 'x');
    await writeCheckpoint(out, { config: bigger, tensors: tensorsFor(bigger), extraJson: marker });
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors', 'narrowtune.json']);
    expect((await loadCheckpoint(out)).config.vocabSize).toBe(40);
    expect(await siblings(out)).toEqual(['out']);
  });

  it('refuses to replace a non-empty directory that is not a narrowtune output', async () => {
    const root = await tempDir();
    const out = join(root, 'precious');
    await mkdir(out);
    await writeFile(join(out, 'thesis.tex'), 'years of work');
    const config = parseConfig(tinyRaw(), 'x');
    const err = await writeCheckpoint(out, { config, tensors: tensorsFor(config), extraJson: marker }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect((err as Error).message).toMatch(/precious: exists, is not empty and is not a narrowtune output \(no narrowtune.json\); refusing/);
    expect(await readdir(out)).toEqual(['thesis.tex']);
    expect(await siblings(out)).toEqual(['precious']);
  });

  it('writes into an existing empty directory', async () => {
    const root = await tempDir();
    const out = join(root, 'empty');
    await mkdir(out);
    const config = parseConfig(tinyRaw(), 'x');
    await writeCheckpoint(out, { config, tensors: tensorsFor(config) });
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  it('leaves the old output untouched when writing fails midway', async () => {
    const root = await tempDir();
    const out = join(root, 'out');
    const config = parseConfig(tinyRaw(), 'x');
    await writeCheckpoint(out, { config, tensors: tensorsFor(config), extraJson: marker });
    const before = await readFile(join(out, 'model.safetensors'));
    // Right shape, wrong byte count: only discovered while serialising inside the temporary directory.
    const broken = tensorsFor(config).map((t, i) => (i === 3 ? { ...t, data: t.data.subarray(1) } : t));
    await expect(writeCheckpoint(out, { config, tensors: broken, extraJson: marker })).rejects.toThrow(/needs \d+ bytes/);
    expect(await readFile(join(out, 'model.safetensors'))).toEqual(before);
    expect(await siblings(out)).toEqual(['out']);
  });

  it('rejects tensors that do not match the config before touching the disk', async () => {
    const root = await tempDir();
    const config = parseConfig(tinyRaw(), 'x');
    await expect(writeCheckpoint(join(root, 'out'), { config, tensors: tensorsFor(config).slice(1) })).rejects.toThrow(
      /missing 1 tensor\(s\).*model.embed_tokens.weight/,
    );
    expect(await readdir(root)).toEqual([]);
  });
});

describe('writeFileAtomic', () => {
  it('creates and replaces a file without leaving temporaries', async () => {
    const dir = await tempDir();
    const path = join(dir, 'state.json');
    await writeFileAtomic(path, 'one');
    await writeFileAtomic(path, new TextEncoder().encode('two'));
    expect(await readFile(path, 'utf8')).toBe('two');
    expect(await readdir(dir)).toEqual(['state.json']);
  });
});
