// The built-in tokenizer for models created without --vocab-from: byte-level BPE over the 256 bytes (no merges)
// plus ChatML special tokens, in Hugging Face tokenizer.json / tokenizer_config.json form.

import { ModelFileError } from '../util/errors.js';

export const ENDOFTEXT = '<|endoftext|>';
export const IM_START = '<|im_start|>';
export const IM_END = '<|im_end|>';
export const SPECIAL_TOKENS: readonly string[] = [ENDOFTEXT, IM_START, IM_END];

/** Qwen's ChatML template; the `\n` are Jinja string escapes, hence String.raw. */
export const CHATML_TEMPLATE = String.raw`{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`;

const BYTE_VALUES = 256;
/** GPT-2 keeps these byte ranges as their own code points: '!'..'~', '¡'..'¬', '®'..'ÿ'. */
const PRINTABLE_BYTE_RANGES: readonly [number, number][] = [
  [0x21, 0x7e],
  [0xa1, 0xac],
  [0xae, 0xff],
];
/** Model context length advertised by the default tokenizer config. */
const DEFAULT_MODEL_MAX_LENGTH = 4096;

/**
 * GPT-2's bytes_to_unicode: every byte maps to a printable, non-whitespace character, so byte-level tokens are
 * ordinary strings. Bytes outside the printable ranges map to 256, 257, ... in byte order.
 */
export function bytesToUnicode(): string[] {
  const map: string[] = new Array(BYTE_VALUES);
  const printable = new Set<number>();
  for (const [lo, hi] of PRINTABLE_BYTE_RANGES) for (let b = lo; b <= hi; b++) printable.add(b);
  let next = BYTE_VALUES;
  for (let b = 0; b < BYTE_VALUES; b++) map[b] = String.fromCodePoint(printable.has(b) ? b : next++);
  return map;
}

function specialTokenFields(content: string): Record<string, unknown> {
  return { content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** tokenizer.json: token id b is byte b; the special tokens follow at 256, 257, 258. */
export function defaultTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, byte) => {
    vocab[ch] = byte;
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t, i) => ({ id: BYTE_VALUES + i, ...specialTokenFields(t) })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

/** tokenizer_config.json: plain-text EOS is <|endoftext|>, chat turns end with <|im_end|> via the ChatML template. */
export function defaultTokenizerConfig(): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  SPECIAL_TOKENS.forEach((t, i) => {
    decoder[String(BYTE_VALUES + i)] = specialTokenFields(t);
  });
  return {
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    additional_special_tokens: [IM_START, IM_END],
    bos_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: ENDOFTEXT,
    errors: 'replace',
    model_max_length: DEFAULT_MODEL_MAX_LENGTH,
    pad_token: ENDOFTEXT,
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: null,
  };
}

/**
 * Vocabulary size of a tokenizer.json: one more than the largest id in the model vocab or the added tokens, which is
 * what a model's embedding needs to cover (ids need not be contiguous).
 */
export function tokenizerVocabSize(json: unknown, file: string): number {
  const model = (json as { model?: { vocab?: unknown } } | null)?.model;
  const vocab = model?.vocab;
  let maxId = -1;
  const see = (id: unknown, what: string): void => {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw new ModelFileError(file, `${what} has invalid id ${JSON.stringify(id)}`);
    }
    maxId = Math.max(maxId, id);
  };
  if (Array.isArray(vocab)) {
    // Unigram vocabularies are [piece, score] lists whose index is the id.
    maxId = vocab.length - 1;
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const [token, id] of Object.entries(vocab)) see(id, `vocab token ${JSON.stringify(token)}`);
  } else {
    throw new ModelFileError(file, 'has no model.vocab; not a Hugging Face tokenizer.json');
  }
  const added = (json as { added_tokens?: unknown }).added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new ModelFileError(file, 'added_tokens must be a list');
    for (const t of added) see((t as { id?: unknown } | null)?.id, `added token ${JSON.stringify((t as { content?: unknown } | null)?.content)}`);
  }
  if (maxId < 0) throw new ModelFileError(file, 'has an empty vocabulary');
  return maxId + 1;
}
