// Tests for config.json parsing, HF defaults, RoPE frequencies and expected tensor names/shapes.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ModelFileError } from '../../src/util/errors.js';
import { expectedTensors, parseConfig, ropeInvFreq, type ModelConfig } from '../../src/model/config.js';
import { parameterCount } from '../../src/model/init-model.js';

const FILE = '/models/x/config.json';

function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}.config.json`, import.meta.url), 'utf8'));
}

function minimal(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'llama',
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 128,
    vocab_size: 100,
    ...extra,
  };
}

function errorOf(json: unknown): Error {
  try {
    parseConfig(json, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as Error).message).toContain(FILE);
    return e as Error;
  }
  throw new Error('expected parseConfig to throw');
}

describe('parseConfig on real configs', () => {
  it('Llama 3.2 1B: GQA, explicit head_dim, llama3 rope scaling, tied head', () => {
    const c = parseConfig(fixture('llama-3.2-1b'), FILE);
    expect(c).toMatchObject({
      arch: 'llama',
      hiddenSize: 2048,
      numLayers: 16,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 64,
      intermediateSize: 8192,
      vocabSize: 128256,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      tieWordEmbeddings: true,
      attentionBias: { qkv: false, o: false },
      mlpBias: false,
      qkNorm: false,
      maxPositionEmbeddings: 131072,
    });
    expect(c.raw).toEqual(fixture('llama-3.2-1b'));
    const t = expectedTensors(c);
    expect(t.get('model.layers.0.self_attn.k_proj.weight')).toEqual([512, 2048]);
    expect(t.get('model.layers.15.mlp.down_proj.weight')).toEqual([2048, 8192]);
    expect(t.has('lm_head.weight')).toBe(false);
    expect(parameterCount(c)).toBe(1_235_814_400);
  });

  it('Qwen2.5 0.5B: q/k/v biases without o bias, derived head_dim', () => {
    const c = parseConfig(fixture('qwen2.5-0.5b'), FILE);
    expect(c).toMatchObject({ arch: 'qwen2', headDim: 64, numKvHeads: 2, attentionBias: { qkv: true, o: false }, qkNorm: false });
    const t = expectedTensors(c);
    expect(t.get('model.layers.3.self_attn.q_proj.bias')).toEqual([896]);
    expect(t.get('model.layers.3.self_attn.k_proj.bias')).toEqual([128]);
    expect(t.get('model.layers.3.self_attn.v_proj.bias')).toEqual([128]);
    expect(t.has('model.layers.3.self_attn.o_proj.bias')).toBe(false);
    expect(parameterCount(c)).toBe(494_032_768);
  });

  it('Qwen3 0.6B: q/k norms, head_dim larger than hidden/heads', () => {
    const c = parseConfig(fixture('qwen3-0.6b'), FILE);
    expect(c).toMatchObject({ arch: 'qwen3', headDim: 128, qkNorm: true, attentionBias: { qkv: false, o: false }, ropeScaling: null });
    const t = expectedTensors(c);
    expect(t.get('model.layers.0.self_attn.q_proj.weight')).toEqual([2048, 1024]);
    expect(t.get('model.layers.0.self_attn.o_proj.weight')).toEqual([1024, 2048]);
    expect(t.get('model.layers.0.self_attn.q_norm.weight')).toEqual([128]);
    expect(t.get('model.layers.0.self_attn.k_norm.weight')).toEqual([128]);
    expect(parameterCount(c)).toBe(596_049_920);
  });
});

describe('parseConfig defaults', () => {
  it('fills HF defaults for a minimal llama config', () => {
    const c = parseConfig(minimal(), FILE);
    expect(c).toMatchObject({
      numKvHeads: 4,
      headDim: 16,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      ropeScaling: null,
      tieWordEmbeddings: false,
      attentionBias: { qkv: false, o: false },
      mlpBias: false,
      maxPositionEmbeddings: 2048,
    });
    const names = [...expectedTensors(c).keys()];
    expect(names[0]).toBe('model.embed_tokens.weight');
    expect(names.at(-1)).toBe('lm_head.weight');
    expect(names).toHaveLength(1 + 2 * 9 + 2);
  });

  it('takes the architecture from architectures[0] when model_type is absent', () => {
    const json = minimal({ architectures: ['Qwen2ForCausalLM'] });
    delete json.model_type;
    expect(parseConfig(json, FILE).arch).toBe('qwen2');
  });

  it('qwen3 head_dim defaults to 128 as in Qwen3Config', () => {
    expect(parseConfig(minimal({ model_type: 'qwen3' }), FILE).headDim).toBe(128);
  });

  it('llama attention_bias covers q, k, v and o; mlp_bias covers the MLP', () => {
    const c = parseConfig(minimal({ attention_bias: true, mlp_bias: true }), FILE);
    expect(c.attentionBias).toEqual({ qkv: true, o: true });
    const t = expectedTensors(c);
    expect(t.get('model.layers.1.self_attn.o_proj.bias')).toEqual([64]);
    expect(t.get('model.layers.1.mlp.gate_proj.bias')).toEqual([128]);
    expect(t.get('model.layers.1.mlp.down_proj.bias')).toEqual([64]);
  });

  it('qwen3 attention_bias covers o as well', () => {
    expect(parseConfig(minimal({ model_type: 'qwen3', attention_bias: true }), FILE).attentionBias).toEqual({ qkv: true, o: true });
  });

  it('reads transformers v5 rope_parameters', () => {
    const c = parseConfig(minimal({ rope_parameters: { rope_type: 'default', rope_theta: 250000 } }), FILE);
    expect(c.ropeTheta).toBe(250000);
    expect(c.ropeScaling).toBeNull();
  });
});

describe('parseConfig errors name the file and the problem', () => {
  it('unsupported architecture', () => {
    expect(errorOf(minimal({ model_type: 'mistral' })).message).toBe(
      `${FILE}: unsupported architecture "mistral"; supported: llama, qwen2, qwen3`,
    );
    const json = minimal({ architectures: ['GPT2LMHeadModel'] });
    delete json.model_type;
    expect(errorOf(json).message).toMatch(/unsupported architecture "GPT2LMHeadModel"/);
  });
  it('missing required field', () => {
    const json = minimal();
    delete json.hidden_size;
    expect(errorOf(json).message).toMatch(/hidden_size is missing/);
  });
  it('non-positive or fractional sizes', () => {
    expect(errorOf(minimal({ num_hidden_layers: 0 })).message).toMatch(/num_hidden_layers must be a positive integer/);
    expect(errorOf(minimal({ vocab_size: 10.5 })).message).toMatch(/vocab_size must be a positive integer/);
  });
  it('heads not divisible by kv heads', () => {
    expect(errorOf(minimal({ num_key_value_heads: 3 })).message).toMatch(/num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/);
  });
  it('unsupported rope scaling type', () => {
    expect(errorOf(minimal({ rope_scaling: { rope_type: 'yarn', factor: 4 } })).message).toMatch(/rope scaling type "yarn" is not supported/);
  });
  it('llama3 scaling without its parameters', () => {
    expect(errorOf(minimal({ rope_scaling: { rope_type: 'llama3', factor: 8 } })).message).toMatch(/low_freq_factor is missing/);
  });
  it('unsupported activation', () => {
    expect(errorOf(minimal({ hidden_act: 'gelu' })).message).toMatch(/hidden_act "gelu"/);
  });
  it('not an object', () => {
    expect(errorOf([1]).message).toMatch(/not a JSON object/);
  });
});

describe('ropeInvFreq', () => {
  const base = (c: ModelConfig): number[] => Array.from({ length: c.headDim / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / c.headDim));

  it('default: theta^(-2i/d)', () => {
    const c = parseConfig(minimal(), FILE);
    const inv = ropeInvFreq(c);
    expect(inv).toHaveLength(8);
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBeCloseTo(10000 ** -(2 / 16), 15);
  });

  it('linear (old "type" key) divides by the factor; "default" means none', () => {
    const c = parseConfig(minimal({ rope_scaling: { type: 'linear', factor: 4 } }), FILE);
    expect(c.ropeScaling).toEqual({ type: 'linear', factor: 4 });
    expect([...ropeInvFreq(c)]).toEqual(base(c).map((v) => v / 4));
    expect(parseConfig(minimal({ rope_scaling: { rope_type: 'default' } }), FILE).ropeScaling).toBeNull();
  });

  it('llama3: keeps high frequencies, divides low ones, interpolates between', () => {
    const c = parseConfig(fixture('llama-3.2-1b'), FILE);
    const inv = ropeInvFreq(c);
    const plain = base(c);
    let high = 0;
    let low = 0;
    let mid = 0;
    plain.forEach((f, i) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < 8192 / 4) {
        expect(inv[i]).toBe(f);
        high++;
      } else if (wavelen > 8192 / 1) {
        expect(inv[i]).toBeCloseTo(f / 32, 15);
        low++;
      } else {
        const smooth = (8192 / wavelen - 1) / (4 - 1);
        expect(inv[i]).toBeCloseTo((1 - smooth) * (f / 32) + smooth * f, 15);
        expect(inv[i]).toBeLessThan(f);
        expect(inv[i]).toBeGreaterThan(f / 32);
        mid++;
      }
    });
    expect(high).toBeGreaterThan(0);
    expect(low).toBeGreaterThan(0);
    expect(mid).toBeGreaterThan(0);
  });
});
