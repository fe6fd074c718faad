// Tiny models and datasets shared by the trainer, service and CLI tests.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initModel, type InitModelOptions } from '../../src/model/init-model.js';

export async function tempDir(prefix = 'nt-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export const TINY_QWEN2: Omit<InitModelOptions, 'out'> = { arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 1 };
export const TINY_LLAMA: Omit<InitModelOptions, 'out'> = { arch: 'llama', hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 2 };

export async function tinyModel(dir: string, opts: Omit<InitModelOptions, 'out'> = TINY_QWEN2, name = 'base'): Promise<string> {
  const out = join(dir, name);
  await initModel({ ...opts, out });
  return out;
}

/** A learnable skill: repeat a word three times. */
export async function repeatData(dir: string, n = 16, name = 'train.jsonl'): Promise<string> {
  const words = ['cat', 'dog', 'sun', 'red', 'one', 'sky', 'map', 'ice'];
  const lines = Array.from({ length: n }, (_, i) => {
    const w = words[i % words.length];
    return JSON.stringify({ prompt: `${w}:`, completion: ` ${w} ${w} ${w}` });
  });
  const file = join(dir, name);
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}
