// A row's model and data: init-model's random weights and uniformly random token ids, generated once into the
// cache directory, keyed by the configuration's content.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../model/config.js';
import { defaultTokenizerConfig, defaultTokenizerJson } from '../model/default-tokenizer.js';
import { initModel } from '../model/init-model.js';
import { Rng } from '../util/rng.js';
import type { BenchConfig } from './configs.js';

const DATA_SEED = 1234;

/** A tokenizer directory whose vocabulary is the built-in byte-level one padded with reserved tokens up to `vocab`. */
async function paddedTokenizer(dir: string, vocab: number): Promise<string> {
  const json = defaultTokenizerJson() as { added_tokens: { id: number; content: string }[] };
  const last = json.added_tokens[json.added_tokens.length - 1];
  // Only the top id matters for the vocabulary size; ids in between are simply never produced.
  json.added_tokens.push({ ...last, id: vocab - 1, content: '<|bench_reserved_top|>' });
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(defaultTokenizerConfig()));
  return dir;
}

export async function prepare(c: BenchConfig, cacheDir: string, examples: number): Promise<{ model: string; data: string; vocab: number }> {
  const key = createHash('sha256').update(JSON.stringify([c.model, c.seq, c.batch, examples, DATA_SEED, 1])).digest('hex').slice(0, 12);
  const dir = join(cacheDir, `${c.name}-${key}`);
  const model = join(dir, 'model');
  const data = join(dir, 'train.jsonl');
  if (!existsSync(join(model, 'config.json'))) {
    await mkdir(dir, { recursive: true });
    const { vocab, ...opts } = c.model;
    const vocabFrom = vocab === undefined ? undefined : await paddedTokenizer(join(dir, 'tokenizer'), vocab);
    process.stderr.write(`bench: init-model ${c.name} → ${model}\n`);
    await initModel({ ...opts, vocabFrom, out: model });
  }
  const config = parseConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')), join(model, 'config.json'));
  if (!existsSync(data)) {
    const rng = new Rng(DATA_SEED);
    // Uniform over the whole vocabulary: pre-tokenized ids are never decoded, so special tokens are fine.
    const lines = Array.from({ length: examples }, () =>
      JSON.stringify({ input_ids: Array.from({ length: c.seq }, () => rng.int(config.vocabSize)) }),
    );
    await writeFile(`${data}.tmp`, `${lines.join('\n')}\n`);
    await rename(`${data}.tmp`, data);
  }
  return { model, data, vocab: config.vocabSize };
}
