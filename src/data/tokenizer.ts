// Loads a Hugging Face tokenizer directory (tokenizer.json + tokenizer_config.json) behind a small interface.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelFileError } from '../util/errors.js';

export interface TextTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** decoded text of a single id, for token-class telemetry */
  tokenText(id: number): string;
  /** max id + 1, including added tokens */
  vocabSize: number;
  eosId: number;
  /** pad_token id, else eos */
  padId: number;
  bosId: number | null;
  chatTemplate: string | null;
  /** bos_token, eos_token, pad_token... as strings, for chat templates */
  specialTokens: Record<string, string>;
}

const TOKENIZER_FILE = 'tokenizer.json';
const CONFIG_FILE = 'tokenizer_config.json';
const TEMPLATE_FILE = 'chat_template.jinja';
// Where transformers looks for eos_token_id when the tokenizer config does not name an EOS, in its order.
const EOS_ID_FILES = ['generation_config.json', 'config.json'];
// The tokenizer_config keys that transformers exposes to chat templates as special-token strings.
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token'];
// tokenizer.json keys the library insists exist (null is fine: it means "no such stage").
const PIPELINE_KEYS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'];

export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tokenizerPath = join(dir, TOKENIZER_FILE);
  const configPath = join(dir, CONFIG_FILE);

  const tokenizerJson = await readJson(tokenizerPath, true);
  if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
    throw new ModelFileError(tokenizerPath, 'not a tokenizer.json (no "model" object)');
  }
  const rawConfig = (await readJson(configPath, false)) ?? {};
  if (!isObject(rawConfig)) throw new ModelFileError(configPath, 'expected a JSON object');

  // The library indexes these unguarded; older exports omit them.
  const tokJson: Record<string, unknown> = { ...tokenizerJson, added_tokens: tokenizerJson.added_tokens ?? [] };
  for (const key of PIPELINE_KEYS) if (!(key in tokJson)) tokJson[key] = null;

  const specialTokens: Record<string, string> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const text = tokenString(rawConfig[key]);
    if (text !== null) specialTokens[key] = text;
  }
  // The library reads token fields as plain strings, while configs often hold {content: ...} objects.
  const libConfig: Record<string, unknown> = { ...rawConfig, ...specialTokens };
  if (Array.isArray(rawConfig.additional_special_tokens)) {
    libConfig.additional_special_tokens = rawConfig.additional_special_tokens
      .map(tokenString)
      .filter((t): t is string => t !== null);
  }

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokJson, libConfig);
  } catch (err) {
    throw new ModelFileError(tokenizerPath, `unsupported tokenizer: ${(err as Error).message}`, { cause: err });
  }

  const idOf = (token: string, file: string, key: string): number => {
    const id = tok.token_to_id(token);
    if (id === undefined) throw new ModelFileError(file, `${key} ${JSON.stringify(token)} is not in the vocabulary`);
    return id;
  };

  let eosId: number;
  if (specialTokens.eos_token !== undefined) {
    eosId = idOf(specialTokens.eos_token, configPath, 'eos_token');
  } else {
    eosId = await eosIdFromModelConfig(dir);
    const text = tok.id_to_token(eosId);
    if (text === undefined) throw new ModelFileError(join(dir, 'config.json'), `eos_token_id ${eosId} is not in the vocabulary`);
    specialTokens.eos_token = text;
  }
  const padId = specialTokens.pad_token !== undefined ? idOf(specialTokens.pad_token, configPath, 'pad_token') : eosId;
  const bosId = specialTokens.bos_token !== undefined ? idOf(specialTokens.bos_token, configPath, 'bos_token') : null;

  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) if (id + 1 > vocabSize) vocabSize = id + 1;
  for (const id of tok.get_added_tokens_decoder().keys()) if (id + 1 > vocabSize) vocabSize = id + 1;

  const chatTemplate = await findChatTemplate(dir, rawConfig, configPath);

  return {
    encode: (text, opts) => tok.encode(text, { add_special_tokens: opts?.addSpecialTokens ?? true }).ids,
    // The library throws on an empty id list; an empty decode is a legitimate request (e.g. an empty completion).
    decode: (ids, opts) => (ids.length === 0 ? '' : tok.decode(ids, { skip_special_tokens: opts?.skipSpecialTokens ?? false })),
    // No clean-up: telemetry wants the token's own text, not " ." folded into ".".
    tokenText: (id) => tok.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
    vocabSize,
    eosId,
    padId,
    bosId,
    chatTemplate,
    specialTokens,
  };
}

async function eosIdFromModelConfig(dir: string): Promise<number> {
  for (const name of EOS_ID_FILES) {
    const path = join(dir, name);
    const json = await readJson(path, false);
    if (!isObject(json)) continue;
    const raw = json.eos_token_id;
    // Several ids (e.g. Llama 3 instruct's end-of-turn and end-of-text): the first is the canonical EOS.
    const id = Array.isArray(raw) ? raw[0] : raw;
    if (Number.isInteger(id) && (id as number) >= 0) return id as number;
  }
  throw new ModelFileError(
    join(dir, CONFIG_FILE),
    `no eos_token (nor eos_token_id in ${EOS_ID_FILES.join(' or ')}); training needs an end-of-sequence token`,
  );
}

async function findChatTemplate(dir: string, config: Record<string, unknown>, configPath: string): Promise<string | null> {
  const raw = config.chat_template;
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    const named = raw.find((t) => isObject(t) && t.name === 'default');
    if (named && typeof named.template === 'string') return named.template;
    throw new ModelFileError(configPath, 'chat_template is a list without a "default" entry');
  }
  if (raw !== undefined && raw !== null) throw new ModelFileError(configPath, 'chat_template must be a string or a list of {name, template}');
  // Newer exports keep the template in its own file.
  try {
    return await readFile(join(dir, TEMPLATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ModelFileError(join(dir, TEMPLATE_FILE), `cannot read: ${(err as Error).message}`, { cause: err });
  }
}

/** Parsed JSON of a file; a missing optional file is undefined. */
async function readJson(path: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      if (!required) return undefined;
      throw new ModelFileError(path, 'no such file', { cause: err });
    }
    throw new ModelFileError(path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw new ModelFileError(path, `invalid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** A special token as configs spell it: a string, an AddedToken-like {content}, or absent/null. */
function tokenString(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return null;
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
