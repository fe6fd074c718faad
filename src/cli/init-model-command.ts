// `narrowtune init-model`: a random-initialised Hugging Face model for tests, demos and benchmarks.
import { SUPPORTED_ARCHS } from '../model/config.js';
import { initModel } from '../model/init-model.js';
import { int, oneOf, parseFlags, required, str } from './args.js';

export async function initModelCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    arch: { type: 'string' },
    hidden: { type: 'string' },
    layers: { type: 'string' },
    heads: { type: 'string' },
    'kv-heads': { type: 'string' },
    intermediate: { type: 'string' },
    'head-dim': { type: 'string' },
    'vocab-from': { type: 'string' },
    'tie-embeddings': { type: 'boolean' },
    seed: { type: 'string' },
    out: { type: 'string' },
  });
  required(f, 'arch');
  const need = (name: string) => {
    required(f, name);
    return int(f, name)!;
  };
  const result = await initModel({
    arch: oneOf(f, 'arch', SUPPORTED_ARCHS)!,
    hidden: need('hidden'),
    layers: need('layers'),
    heads: need('heads'),
    kvHeads: need('kv-heads'),
    intermediate: int(f, 'intermediate'),
    headDim: int(f, 'head-dim'),
    vocabFrom: str(f, 'vocab-from'),
    tieEmbeddings: f['tie-embeddings'] === true,
    seed: int(f, 'seed'),
    out: required(f, 'out'),
  });
  process.stderr.write(`wrote ${result.dir}: ${result.config.arch}, ${result.parameterCount.toLocaleString('en-US')} parameters\n`);
}
