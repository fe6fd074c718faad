// Tests for loading a tokenizer directory: special ids, EOS fallbacks, chat template sources, file errors.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { ModelFileError } from '../../src/util/errors.js';
import { CHATML_TEMPLATE, TINY, byteIds, writeTinyTokenizer } from './fixtures.js';

let root: string;
let n = 0;
const fresh = () => join(root, `tok${n++}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'narrowtune-tok-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('loadTokenizer', () => {
  it('reads the tiny tokenizer: merges, specials, eos/pad, template', async () => {
    const tok = await loadTokenizer(await writeTinyTokenizer(fresh()));
    expect(tok.encode('hello world')).toEqual([TINY.he, ...byteIds('llo'), TINY.spaceW, ...byteIds('orld')]);
    expect(tok.encode('<|im_start|>x<|im_end|>', { addSpecialTokens: false })).toEqual([TINY.imStart, 120, TINY.imEnd]);
    expect(tok.vocabSize).toBe(TINY.vocabSize);
    expect(tok.eosId).toBe(TINY.endOfText);
    expect(tok.padId).toBe(TINY.endOfText);
    expect(tok.bosId).toBeNull();
    expect(tok.chatTemplate).toBe(CHATML_TEMPLATE);
    expect(tok.specialTokens).toEqual({ eos_token: '<|endoftext|>' });
    expect(tok.decode(tok.encode('hello wörld'))).toBe('hello wörld');
    expect(tok.decode([TINY.imEnd, 104], { skipSpecialTokens: true })).toBe('h');
    expect(tok.decode([])).toBe('');
    expect(tok.tokenText(TINY.spaceW)).toBe(' w');
    expect(tok.tokenText(TINY.imEnd)).toBe('<|im_end|>');
  });

  it('adds BOS only when the post-processor does', async () => {
    const tok = await loadTokenizer(await writeTinyTokenizer(fresh(), { bos: true }));
    expect(tok.bosId).toBe(TINY.bos);
    expect(tok.vocabSize).toBe(TINY.vocabSizeWithBos);
    expect(tok.encode('hi')).toEqual([TINY.bos, 104, 105]);
    expect(tok.encode('hi', { addSpecialTokens: false })).toEqual([104, 105]);
  });

  it('takes pad_token and {content} token objects from the config', async () => {
    const dir = await writeTinyTokenizer(fresh(), {
      config: { eos_token: { content: '<|im_end|>', special: true }, pad_token: '<|endoftext|>' },
    });
    const tok = await loadTokenizer(dir);
    expect(tok.eosId).toBe(TINY.imEnd);
    expect(tok.padId).toBe(TINY.endOfText);
    expect(tok.specialTokens.eos_token).toBe('<|im_end|>');
  });

  it('falls back to eos_token_id in generation_config.json, then config.json', async () => {
    const dir = await writeTinyTokenizer(fresh(), { config: { eos_token: null } });
    await writeFile(join(dir, 'config.json'), JSON.stringify({ eos_token_id: TINY.imEnd }));
    expect((await loadTokenizer(dir)).eosId).toBe(TINY.imEnd);
    await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [TINY.endOfText, TINY.imEnd] }));
    const tok = await loadTokenizer(dir);
    expect(tok.eosId).toBe(TINY.endOfText);
    expect(tok.specialTokens.eos_token).toBe('<|endoftext|>');
  });

  it('fails without any EOS', async () => {
    const dir = await writeTinyTokenizer(fresh(), { config: { eos_token: null } });
    await expect(loadTokenizer(dir)).rejects.toThrow(/training needs an end-of-sequence token/);
  });

  it('works without tokenizer_config.json when config.json names the EOS', async () => {
    const dir = await writeTinyTokenizer(fresh());
    await rm(join(dir, 'tokenizer_config.json'));
    await writeFile(join(dir, 'config.json'), JSON.stringify({ eos_token_id: TINY.endOfText }));
    const tok = await loadTokenizer(dir);
    expect(tok.eosId).toBe(TINY.endOfText);
    expect(tok.chatTemplate).toBeNull();
  });

  it('reads chat_template from a named list or chat_template.jinja', async () => {
    const listed = await writeTinyTokenizer(fresh(), {
      config: { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] },
    });
    expect((await loadTokenizer(listed)).chatTemplate).toBe('D');

    const separate = await writeTinyTokenizer(fresh(), { chatTemplate: false });
    expect((await loadTokenizer(separate)).chatTemplate).toBeNull();
    await writeFile(join(separate, 'chat_template.jinja'), 'J');
    expect((await loadTokenizer(separate)).chatTemplate).toBe('J');
  });

  it('names the file when tokenizer.json is missing or broken', async () => {
    const dir = fresh();
    await expect(loadTokenizer(dir)).rejects.toThrow(ModelFileError);
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: no such file`);
    await writeTinyTokenizer(dir);
    await writeFile(join(dir, 'tokenizer.json'), '{"model": ');
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: invalid JSON`);
    await writeFile(join(dir, 'tokenizer.json'), '{"model": {"type": "Nope"}}');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json: unsupported tokenizer: .*Nope/);
  });

  it('rejects an eos_token that is not in the vocabulary', async () => {
    const dir = await writeTinyTokenizer(fresh(), { config: { eos_token: '</s>' } });
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer_config\.json: eos_token "<\/s>" is not in the vocabulary/);
  });
});
