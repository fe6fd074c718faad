// Tests for the built-in tokenizer and random model initialisation.

import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import {
  CHATML_TEMPLATE,
  ENDOFTEXT,
  IM_END,
  IM_START,
  bytesToUnicode,
  defaultTokenizerConfig,
  defaultTokenizerJson,
  tokenizerVocabSize,
} from '../../src/model/default-tokenizer.js';
import { defaultIntermediateSize, initModel, parameterCount } from '../../src/model/init-model.js';
import { toFloat32 } from '../../src/model/safetensors.js';
import { useTempDirs } from './helpers.js';

const tempDir = useTempDirs();

describe('default tokenizer', () => {
  const tokenizer = new Tokenizer(defaultTokenizerJson(), defaultTokenizerConfig());

  it('uses GPT-2 bytes_to_unicode', () => {
    const map = bytesToUnicode();
    expect(new Set(map).size).toBe(256);
    expect(map[0x41]).toBe('A');
    expect(map[0x20]).toBe('\u0120'); // 'Ġ'
    expect(map[0x0a]).toBe('\u010a'); // 'Ċ'
    expect(map[0xad]).toBe('\u0143'); // soft hyphen is the last remapped byte
  });

  it('encodes text to byte ids and decodes it back exactly', () => {
    for (const text of ['Hello, world! 123', 'héllo 🌍\n\ttabs  and  spaces ', "it's 3.14 — ok?"]) {
      const { ids } = tokenizer.encode(text);
      expect(ids).toEqual([...new TextEncoder().encode(text)]);
      expect(tokenizer.decode(ids)).toBe(text);
    }
  });

  it('encodes special tokens to single ids', () => {
    expect(tokenizer.encode(ENDOFTEXT).ids).toEqual([256]);
    const ids = tokenizer.encode(`${IM_START}user\nhi${IM_END}`).ids;
    expect(ids).toEqual([257, ...new TextEncoder().encode('user\nhi'), 258]);
    expect(tokenizer.decode(ids, { skip_special_tokens: true })).toBe('user\nhi');
    expect(tokenizerVocabSize(defaultTokenizerJson(), 'tokenizer.json')).toBe(259);
  });

  it('ships the Qwen ChatML template', () => {
    const cfg = defaultTokenizerConfig();
    expect(cfg.chat_template).toBe(CHATML_TEMPLATE);
    expect(cfg.eos_token).toBe(ENDOFTEXT);
    expect(cfg.pad_token).toBe(ENDOFTEXT);
    const rendered = new Template(CHATML_TEMPLATE).render({
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
      ],
      add_generation_prompt: true,
    });
    expect(rendered).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\n');
  });
});

describe('initModel', () => {
  it('writes a loadable llama model with the default tokenizer', async () => {
    const root = await tempDir();
    const out = join(root, 'tiny');
    const r = await initModel({ arch: 'llama', hidden: 32, layers: 2, heads: 4, kvHeads: 2, out, seed: 7 });
    expect(r.dir).toBe(out);
    expect((await readdir(out)).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'narrowtune.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const raw = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(raw).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 32,
      intermediate_size: defaultIntermediateSize(32),
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_hidden_layers: 2,
      head_dim: 8,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      vocab_size: 259,
      max_position_embeddings: 4096,
      tie_word_embeddings: false,
      bos_token_id: 256,
      eos_token_id: 256,
      torch_dtype: 'float32',
      attention_bias: false,
    });
    const ckpt = await loadCheckpoint(out);
    expect(ckpt.config).toEqual(r.config);
    expect(r.parameterCount).toBe(parameterCount(r.config));
    expect(r.parameterCount).toBe([...ckpt.tensors.values()].reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0));

    const q = toFloat32(ckpt.tensors.get('model.layers.0.self_attn.q_proj.weight')!);
    const mean = q.reduce((a, b) => a + b, 0) / q.length;
    const std = Math.sqrt(q.reduce((a, b) => a + (b - mean) ** 2, 0) / q.length);
    expect(Math.abs(mean)).toBeLessThan(0.005);
    expect(std).toBeGreaterThan(0.017);
    expect(std).toBeLessThan(0.023);
    expect([...toFloat32(ckpt.tensors.get('model.layers.1.input_layernorm.weight')!)].every((v) => v === 1)).toBe(true);

    const tok = new Tokenizer(JSON.parse(await readFile(join(out, 'tokenizer.json'), 'utf8')), JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8')));
    expect(tok.decode(tok.encode('Hello, world! 123').ids)).toBe('Hello, world! 123');
    expect(JSON.parse(await readFile(join(out, 'generation_config.json'), 'utf8')).eos_token_id).toEqual([256, 258]);
  });

  it('is deterministic: same seed gives byte-identical weights, another seed does not', async () => {
    const root = await tempDir();
    const opts = { arch: 'qwen3' as const, hidden: 16, layers: 1, heads: 2, kvHeads: 1, dtype: 'BF16' as const };
    await initModel({ ...opts, seed: 3, out: join(root, 'a') });
    await initModel({ ...opts, seed: 3, out: join(root, 'b') });
    await initModel({ ...opts, seed: 4, out: join(root, 'c') });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => readFile(join(root, d, 'model.safetensors'))));
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    const ckpt = await loadCheckpoint(join(root, 'a'));
    expect(ckpt.config).toMatchObject({ arch: 'qwen3', qkNorm: true, ropeTheta: 1_000_000 });
    expect(ckpt.tensors.get('model.layers.0.self_attn.q_norm.weight')?.dtype).toBe('BF16');
    expect(JSON.parse(await readFile(join(root, 'a', 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
  });

  it('qwen2 gets zero q/k/v biases; tied embeddings have no lm_head; reruns replace the output', async () => {
    const root = await tempDir();
    const out = join(root, 'q2');
    const opts = { arch: 'qwen2' as const, hidden: 16, layers: 1, heads: 2, kvHeads: 2, tieEmbeddings: true, intermediate: 24, out };
    await initModel(opts);
    const r = await initModel({ ...opts, seed: 1 });
    const ckpt = await loadCheckpoint(out);
    expect([...toFloat32(ckpt.tensors.get('model.layers.0.self_attn.v_proj.bias')!)].every((v) => v === 0)).toBe(true);
    expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
    expect(r.config.intermediateSize).toBe(24);
    expect(r.parameterCount).toBe(259 * 16 + 2 * 16 + 3 * (16 * 16 + 16) + 16 * 16 + 3 * 24 * 16 + 16);
  });

  it('takes the vocabulary and tokenizer files from vocabFrom', async () => {
    const root = await tempDir();
    const vocabDir = join(root, 'vocab');
    await mkdir(vocabDir);
    const json = defaultTokenizerJson();
    (json.added_tokens as unknown[]).push({ id: 300, content: '<pad>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    const tokText = JSON.stringify(json);
    await writeFile(join(vocabDir, 'tokenizer.json'), tokText);
    await writeFile(join(vocabDir, 'tokenizer_config.json'), JSON.stringify({ bos_token: IM_START, eos_token: { content: IM_END } }));
    const out = join(root, 'm');
    const r = await initModel({ arch: 'llama', hidden: 16, layers: 1, heads: 2, kvHeads: 1, vocabFrom: vocabDir, tieEmbeddings: true, out });
    expect(r.config.vocabSize).toBe(301);
    expect(r.config.raw).toMatchObject({ bos_token_id: 257, eos_token_id: 258 });
    expect(await readFile(join(out, 'tokenizer.json'), 'utf8')).toBe(tokText);
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors', 'narrowtune.json', 'tokenizer.json', 'tokenizer_config.json']);
  });

  it('rejects inconsistent options', async () => {
    const root = await tempDir();
    const base = { arch: 'llama' as const, hidden: 16, layers: 1, heads: 4, kvHeads: 3, out: join(root, 'x') };
    await expect(initModel(base)).rejects.toThrow(/heads \(4\) must be a multiple of kvHeads \(3\)/);
    await expect(initModel({ ...base, kvHeads: 2, arch: 'qwen2', attentionBias: true })).rejects.toThrow(/attentionBias/);
    await expect(initModel({ ...base, kvHeads: 2, vocabFrom: join(root, 'none') })).rejects.toThrow(/tokenizer.json: file not found/);
    expect(await readdir(root)).toEqual([]);
  });
});
