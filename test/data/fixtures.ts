// Test fixture: a tiny byte-level BPE tokenizer directory (GPT-2 byte alphabet, Qwen-style ChatML specials).

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Token ids of the tiny tokenizer. A single byte b has id b (so 'a' is 97); see `byteIds`. */
export const TINY = {
  /** merge "h e" */
  he: 256,
  /** merge "Ġ w" (a space then w) */
  spaceW: 257,
  endOfText: 258,
  imStart: 259,
  imEnd: 260,
  /** only with {bos: true} */
  bos: 261,
  vocabSize: 261,
  vocabSizeWithBos: 262,
} as const;

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface TinyTokenizerOptions {
  /** write the ChatML chat_template into tokenizer_config.json (default true) */
  chatTemplate?: boolean;
  /** Llama-style: add <|begin_of_text|> and a post-processor that puts it before every sequence (default false) */
  bos?: boolean;
  /** extra tokenizer_config.json keys (override the defaults) */
  config?: Record<string, unknown>;
}

/** GPT-2's reversible map from bytes to printable unicode characters. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])));
  return out;
}

/** Byte-per-token ids of a text (what the tiny tokenizer gives when no merge applies). */
export function byteIds(text: string): number[] {
  return [...new TextEncoder().encode(text)];
}

export async function writeTinyTokenizer(dir: string, opts: TinyTokenizerOptions = {}): Promise<string> {
  const { chatTemplate = true, bos = false } = opts;
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => (vocab[c] = b));
  vocab['he'] = TINY.he;
  vocab[chars[0x20] + 'w'] = TINY.spaceW;

  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const addedTokens = [
    special(TINY.endOfText, '<|endoftext|>'),
    special(TINY.imStart, '<|im_start|>'),
    special(TINY.imEnd, '<|im_end|>'),
  ];
  if (bos) addedTokens.push(special(TINY.bos, '<|begin_of_text|>'));

  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: bos
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [TINY.bos], tokens: ['<|begin_of_text|>'] } },
        }
      : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [['h', 'e'], [chars[0x20], 'w']],
    },
  };

  const config: Record<string, unknown> = {
    add_prefix_space: false,
    bos_token: bos ? '<|begin_of_text|>' : null,
    eos_token: '<|endoftext|>',
    pad_token: null,
    clean_up_tokenization_spaces: false,
    model_max_length: 32768,
    tokenizer_class: 'Qwen2Tokenizer',
    ...(chatTemplate ? { chat_template: CHATML_TEMPLATE } : {}),
    ...opts.config,
  };

  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}
