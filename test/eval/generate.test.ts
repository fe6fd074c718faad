// Batched KV-cache greedy generation (left padding, position ids, cache slots, masks) must pick exactly the
// tokens a naive per-prompt full forward picks; EOS ends a row; generate() wires tokenizer and batches.
import { rm } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { generate, Generator, stopIdsOf } from '../../src/eval/generate.js';
import { Tape } from '../../src/graph/autodiff.js';
import { compileGenerateStep, GEN_IO } from '../../src/graph/generate-step.js';
import { GraphBuilder, type Kernels, type Value } from '../../src/graph/graph-builder.js';
import { paramsOf } from '../../src/graph/params.js';
import { logits } from '../../src/graph/transformer.js';
import { loadCheckpoint, type Checkpoint } from '../../src/model/checkpoint.js';
import type { InitModelOptions } from '../../src/model/init-model.js';
import { fromFloat32, toFloat32 } from '../../src/model/safetensors.js';
import { createSession, int64Tensor } from '../../src/runtime/session.js';
import { Rng } from '../../src/util/rng.js';
import { needs } from '../support/system-tools.js';
import { tempDir, TINY_LLAMA, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

/** Attention-23 as onnxruntime's fused kernel, and the MatMul/Softmax form the WebGPU provider runs. */
const KERNELS: Kernels[] = ['fused', 'portable'];

const TINY_QWEN3: Omit<InitModelOptions, 'out'> = { arch: 'qwen3', hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64, seed: 3 };

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-generate-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/**
 * A freshly initialised model is nearly indifferent to its input (weights ~N(0, 0.02)), so a wrong position or
 * a leaked padding slot could go unnoticed. Sharpen it: weights ×12, random biases, norm weights around 1.
 */
function sharpen(ckpt: Checkpoint, seed: number): Checkpoint {
  const rng = new Rng(seed, 99);
  const tensors = new Map(ckpt.tensors);
  for (const [name, t] of ckpt.tensors) {
    const x = toFloat32(t);
    for (let i = 0; i < x.length; i++) {
      if (name.endsWith('norm.weight')) x[i] = 1 + 0.3 * rng.normal();
      else if (name.endsWith('.bias')) x[i] = 0.5 * rng.normal();
      else x[i] *= 12;
    }
    tensors.set(name, { ...t, data: fromFloat32(x, t.dtype) });
  }
  return { ...ckpt, tensors };
}

/** The training graph's full forward (batch 1, right-padded to `seq`; causal, so padding never matters). */
async function referenceModel(ckpt: Checkpoint, seq: number) {
  const g = new GraphBuilder('reference');
  const tape = new Tape(g);
  const p = paramsOf(ckpt);
  const cache = new Map<string, Value>();
  const lookup = (name: string): Value => {
    if (!cache.has(name)) cache.set(name, g.initializer(name, 'float32', p.get(name)!.shape, p.get(name)!.data));
    return cache.get(name)!;
  };
  const ids = g.input('ids', 'int64', [seq]);
  const z = logits(tape, ckpt.config, lookup, ids, 1, seq);
  g.output(z, 'logits');
  const { session } = await createSession(g.toModel(), 'cpu');
  const V = ckpt.config.vocabSize;
  return {
    /** Logits at the last position of `tokens`. */
    async last(tokens: number[]): Promise<Float32Array> {
      const padded = new BigInt64Array(seq);
      tokens.forEach((id, i) => (padded[i] = BigInt(id)));
      const out = await session.run({ ids: int64Tensor(padded, [seq]) });
      return ((out.logits as ort.Tensor).data as Float32Array).slice((tokens.length - 1) * V, tokens.length * V);
    },
    /** Naive greedy decoding: the whole sequence so far through the model, every step. */
    async greedy(prompt: number[], steps: number): Promise<number[]> {
      const seqSoFar = [...prompt];
      for (let s = 0; s < steps; s++) seqSoFar.push(argmax(await this.last(seqSoFar)));
      return seqSoFar.slice(prompt.length);
    },
    release: () => session.release(),
  };
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function randomPrompt(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => 1 + Math.floor(rng.next() * 250));
}

describe.each([
  ['llama', TINY_LLAMA],
  ['qwen2', TINY_QWEN2],
  ['qwen3', TINY_QWEN3],
] as const)('KV-cache generation on tiny %s', (arch, opts) => {
  const P = 9;
  const M = 7;
  let ckpt: Checkpoint;
  let reference: Awaited<ReturnType<typeof referenceModel>>;
  let prompts: number[][];
  let expected: number[][];

  beforeAll(async () => {
    ckpt = sharpen(await loadCheckpoint(await tinyModel(dir, opts, arch)), opts.seed ?? 0);
    reference = await referenceModel(ckpt, P + M);
    const rng = new Rng(opts.seed ?? 0, 7);
    prompts = [5, 1, P, 3].map((n) => randomPrompt(rng, n)); // different lengths: different left padding
    expected = await Promise.all(prompts.map((p) => reference.greedy(p, M)));
  });
  afterAll(() => reference.release());

  it.for(KERNELS)('prefill logits match the full forward at each row\'s last prompt token (%s kernels)', async (kernels) => {
    const B = prompts.length;
    const model = compileGenerateStep({ config: ckpt.config, params: paramsOf(ckpt), batch: B, promptLen: P, maxNewTokens: M, phase: 'prefill', logits: true, kernels });
    const { session } = await createSession(model, 'cpu');
    try {
      const ids = new BigInt64Array(B * P);
      const positions = new BigInt64Array(B * P);
      const mask = new Uint8Array(B * P * P);
      prompts.forEach((p, b) => {
        const pad = P - p.length;
        for (let i = 0; i < P; i++) {
          if (i >= pad) {
            ids[b * P + i] = BigInt(p[i - pad]);
            positions[b * P + i] = BigInt(i - pad);
            for (let j = pad; j <= i; j++) mask[(b * P + i) * P + j] = 1;
          } else mask[(b * P + i) * P + i] = 1;
        }
      });
      const out = await session.run({
        [GEN_IO.ids]: int64Tensor(ids, [B, P]),
        [GEN_IO.positions]: int64Tensor(positions, [B, P]),
        [GEN_IO.mask]: new ort.Tensor('bool', mask, [B, 1, P, P]),
      });
      const z = (out[GEN_IO.logits] as ort.Tensor).data as Float32Array;
      const V = ckpt.config.vocabSize;
      for (let b = 0; b < B; b++) {
        const want = await reference.last(prompts[b]);
        const got = z.subarray(b * V, (b + 1) * V);
        let err = 0;
        let scale = 0;
        for (let v = 0; v < V; v++) {
          err = Math.max(err, Math.abs(got[v] - want[v]));
          scale = Math.max(scale, Math.abs(want[v]));
        }
        expect(err / scale).toBeLessThan(1e-4);
      }
      const cache = out[GEN_IO.presentKey(0)] as ort.Tensor;
      expect(cache.dims).toEqual([B, ckpt.config.numKvHeads, P + M, ckpt.config.headDim]);
      expect([...(cache.data as Float32Array)].every(Number.isFinite)).toBe(true);
    } finally {
      await session.release();
    }
  });

  it.for(KERNELS)('batched left-padded KV-cache greedy ids equal the naive per-prompt reference (%s kernels)', async (kernels) => {
    // The test has power only if the model's choices depend on the prompt.
    expect(new Set(expected.map((e) => e.join(','))).size).toBe(prompts.length);
    const gen = await Generator.create(ckpt, 4, P, M, 'cpu', { stopIds: [], kernels });
    try {
      expect(await gen.generateIds(prompts)).toEqual(expected);
      // A partial batch (dummy rows) and a reordered one give the same rows.
      expect(await gen.generateIds([prompts[2], prompts[0]])).toEqual([expected[2], expected[0]]);
    } finally {
      await gen.release();
    }
  });

  it('on WebGPU (lavapipe in CI), the same ids', needs('vulkan'), async () => {
    const gen = await Generator.create(ckpt, 4, P, M, 'webgpu', { stopIds: [] });
    try {
      expect(await gen.generateIds(prompts)).toEqual(expected);
    } finally {
      await gen.release();
    }
  });

  it('a row stops before its first stop id and the others carry on', async () => {
    const stop = expected[0][3];
    const gen = await Generator.create(ckpt, 4, P, M, 'cpu', { stopIds: [stop] });
    try {
      const want = expected.map((e) => (e.includes(stop) ? e.slice(0, e.indexOf(stop)) : e));
      expect(want[0].length).toBeLessThan(M);
      expect(await gen.generateIds(prompts)).toEqual(want);
    } finally {
      await gen.release();
    }
  });
});

describe('generate()', () => {
  let model: string;
  beforeAll(async () => {
    model = await tinyModel(dir, TINY_QWEN2, 'plain');
  });

  it('decodes each prompt\'s ids, independent of the batch size, never past an EOS', async () => {
    const prompts = ['cat:', 'a much longer prompt here', 'x'];
    const three = await generate({ model, prompts, maxNewTokens: 5, batchSize: 3 });
    const two = await generate({ model, prompts, maxNewTokens: 5, batchSize: 2 });
    expect(two).toEqual(three);
    const tokenizer = await loadTokenizer(model);
    const stops = await stopIdsOf(model, tokenizer);
    expect(stops).toContain(tokenizer.eosId);
    expect(three.tokenIds).toHaveLength(3);
    three.tokenIds.forEach((ids, i) => {
      expect(ids.length).toBeLessThanOrEqual(5);
      expect(ids.some((id) => stops.includes(id))).toBe(false);
      expect(three.texts[i]).toBe(tokenizer.decode(ids, { skipSpecialTokens: true }));
    });
  });

  it('rejects prompts that leave no room for the new tokens', async () => {
    await expect(generate({ model, prompts: ['hello'], maxNewTokens: 4094, batchSize: 1 })).rejects.toThrow(/max_position_embeddings 4096/);
    await expect(generate({ model, prompts: [], maxNewTokens: 4, batchSize: 1 })).rejects.toThrow(/at least one prompt/);
  });
});
