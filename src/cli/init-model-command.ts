// `narrowtune init-model`: a random-initialised Hugging Face model for tests, demos and benchmarks.
import { SUPPORTED_ARCHS } from '../model/config.js';
import { initLlavaModel } from '../model/init-llava.js';
import { LLAVA_ARCHS, type LlavaArch } from '../model/llava-config.js';
import { initModel } from '../model/init-model.js';
import { invalidArgument } from '../util/errors.js';
import { int, oneOf, parseFlags, required, str } from './args.js';

/** Flags that shape a LLaVA model's vision tower, by the option they set. */
const VISION_FLAGS = {
  'vision-hidden': 'hidden',
  'vision-layers': 'layers',
  'vision-heads': 'heads',
  'vision-intermediate': 'intermediate',
  'image-size': 'imageSize',
  'patch-size': 'patchSize',
} as const;

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
    ...Object.fromEntries(Object.keys(VISION_FLAGS).map((name) => [name, { type: 'string' as const }])),
  });
  required(f, 'arch');
  const arch = oneOf(f, 'arch', [...SUPPORTED_ARCHS, ...LLAVA_ARCHS])!;
  const need = (name: string) => {
    required(f, name);
    return int(f, name)!;
  };
  const text = {
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
  };
  if ((LLAVA_ARCHS as readonly string[]).includes(arch)) {
    const vision = Object.fromEntries(Object.entries(VISION_FLAGS).map(([flag, key]) => [key, int(f, flag)]));
    const result = await initLlavaModel({ ...text, arch: arch as LlavaArch, vision });
    const { text: t, vision: v } = result.config;
    process.stderr.write(
      `wrote ${result.dir}: ${arch} (${t.arch} decoder, ${v.kind} tower), ${result.parameterCount.toLocaleString('en-US')} parameters\n`,
    );
    return;
  }
  const given = Object.keys(VISION_FLAGS).filter((flag) => f[flag] !== undefined);
  if (given.length > 0) throw invalidArgument(`--${given[0]}`, `applies only to --arch ${LLAVA_ARCHS.join(' or ')}`);
  const result = await initModel({ ...text, arch: arch as (typeof SUPPORTED_ARCHS)[number] });
  process.stderr.write(`wrote ${result.dir}: ${result.config.arch}, ${result.parameterCount.toLocaleString('en-US')} parameters\n`);
}
