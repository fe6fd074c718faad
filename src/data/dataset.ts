// Reads a JSONL training file (prompt/completion, chat messages, or pre-tokenized ids) into labeled examples.

import { readFile } from 'node:fs/promises';
import { DataFileError, invalidArgument } from '../util/errors.js';
import { CHAT_ROLES, ChatTemplateError, chatSegments, type ChatMessage, type ChatRole } from './chat.js';
import type { TextTokenizer } from './tokenizer.js';

/** HF causal-LM convention: `labels` has the length of `inputIds`, is not shifted, and -100 means "no loss". */
export interface Example {
  inputIds: number[];
  labels: number[];
  /** Image-text examples (image-dataset.ts): where each image's positions are; absent for text. */
  images?: ExampleImage[];
}

/** An image's place in an example: positions [start, start + count), filled with the dataset's image `image`. */
export interface ExampleImage {
  start: number;
  count: number;
  /** index into the dataset's list of distinct images */
  image: number;
}

type TextForm = 'prompt_completion' | 'chat' | 'tokenized';
/** llava_conversations and chat_images are image-text files (image-dataset.ts). */
export type DatasetForm = TextForm | 'llava_conversations' | 'chat_images';

export interface Dataset {
  examples: Example[];
  form: DatasetForm;
  /** examples cut to seqLen */
  truncated: number;
  /** tokens the loss is taken on (see `trainableTokens`) */
  trainTokens: number;
}

export interface LoadDatasetOptions {
  seqLen: number;
  /** name used in error violations */
  field?: string;
  /** how error messages name the file (default: its path), e.g. the path as a client sent it */
  name?: string;
}

export const IGNORE_INDEX = -100;

const FORM_KEYS: Record<TextForm, string> = {
  prompt_completion: '{"prompt", "completion"}',
  chat: '{"messages": [{"role", "content"}, ...]}',
  tokenized: '{"input_ids", "labels"?}',
};
const ACCEPTED_FORMS = Object.values(FORM_KEYS).join(', ');
const BYTE_ORDER_MARK = 0xfeff;
// Text used to discover which special tokens the post-processor puts in front of a sequence.
const PROBE_TEXT = 'a';
// A wrong-typed value is quoted in the error; a whole document would bury the message.
const SHOWN_VALUE_CHARS = 40;

/** A JSONL file's text without a UTF-8 byte-order mark; a missing or unreadable file names itself. */
export async function readDataText(file: string, field: string, name = file): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataFileError(name, null, code === 'ENOENT' ? 'no such file' : `cannot read: ${(err as Error).message}`, field);
  }
  return text.charCodeAt(0) === BYTE_ORDER_MARK ? text.slice(1) : text;
}

export async function loadDataset(file: string, tokenizer: TextTokenizer, opts: LoadDatasetOptions): Promise<Dataset> {
  const field = opts.field ?? 'data';
  const { seqLen } = opts;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw invalidArgument('seq_len', `must be an integer >= 2, got ${seqLen}`);

  const text = await readDataText(file, field, opts.name);
  const name = opts.name ?? file;
  const leading = leadingSpecialIds(tokenizer);
  const examples: Example[] = [];
  let form: TextForm | null = null;
  let formLine = 0;
  let truncated = 0;
  let trainTokens = 0;

  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    const fail: (problem: string) => never = (problem) => {
      throw new DataFileError(name, lineNo, problem, field);
    };

    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (err) {
      fail(`invalid JSON: ${(err as Error).message}`);
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      fail(`expected a JSON object, got ${describeValue(record)}`);
    }
    const obj = record as Record<string, unknown>;
    const lineForm = detectForm(obj, fail);
    if (form === null) {
      form = lineForm;
      formLine = lineNo;
    } else if (lineForm !== form) {
      fail(`this line is in the ${lineForm} form but line ${formLine} is in the ${form} form; a file must use one form`);
    }

    let example: Example;
    switch (lineForm) {
      case 'prompt_completion':
        example = promptCompletion(obj, tokenizer, leading, fail);
        break;
      case 'chat':
        example = chat(obj, tokenizer, leading, fail);
        break;
      case 'tokenized':
        example = tokenized(obj, tokenizer.vocabSize, fail);
        break;
    }

    const cut = example.inputIds.length > seqLen;
    if (cut) {
      example = { inputIds: example.inputIds.slice(0, seqLen), labels: example.labels.slice(0, seqLen) };
      truncated++;
    }
    const trainable = trainableTokens(example);
    if (trainable === 0) {
      fail(
        cut
          ? `no completion tokens left after truncation to --seq-len ${seqLen}`
          : 'no trainable tokens (every label is -100, or only the first, which predicts nothing)',
      );
    }
    trainTokens += trainable;
    examples.push(example);
  }

  if (form === null) throw new DataFileError(name, null, `no examples (empty file); expected JSONL lines of ${ACCEPTED_FORMS}`, field);
  return { examples, form, truncated, trainTokens };
}

/**
 * Labels that reach the loss. Position 0's label is never a target: after the causal shift, logits[t] predict
 * token t+1, so labels[0] has no logit predicting it.
 */
export function trainableTokens(example: Example): number {
  let n = 0;
  for (let t = 1; t < example.labels.length; t++) if (example.labels[t] !== IGNORE_INDEX) n++;
  return n;
}

/**
 * The special ids the tokenizer's post-processor puts before a text (Llama's BOS; nothing for Qwen). Only the
 * leading ones are used: a post-processor that also appends EOS would otherwise wedge an EOS between prompt
 * and completion.
 */
export function leadingSpecialIds(tokenizer: TextTokenizer): number[] {
  const plain = tokenizer.encode(PROBE_TEXT, { addSpecialTokens: false });
  const withSpecials = tokenizer.encode(PROBE_TEXT, { addSpecialTokens: true });
  for (let start = 0; start + plain.length <= withSpecials.length; start++) {
    if (plain.every((id, k) => withSpecials[start + k] === id)) return withSpecials.slice(0, start);
  }
  return [];
}

function detectForm(obj: Record<string, unknown>, fail: (problem: string) => never): TextForm {
  const present: TextForm[] = [];
  if ('prompt' in obj || 'completion' in obj) present.push('prompt_completion');
  if ('messages' in obj) present.push('chat');
  if ('input_ids' in obj || 'labels' in obj) present.push('tokenized');
  if (present.length === 0) {
    const keys = Object.keys(obj);
    fail(`unknown form (keys: ${keys.length ? keys.map((k) => JSON.stringify(k)).join(', ') : 'none'}); accepted forms: ${ACCEPTED_FORMS}`);
  }
  if (present.length > 1) fail(`ambiguous form: has keys of both ${present.map((f) => FORM_KEYS[f]).join(' and ')}`);
  return present[0];
}

function promptCompletion(
  obj: Record<string, unknown>,
  tokenizer: TextTokenizer,
  leading: number[],
  fail: (problem: string) => never,
): Example {
  const prompt = obj.prompt;
  const completion = obj.completion;
  if (prompt === undefined) fail('missing "prompt" (the prompt/completion form needs both)');
  if (completion === undefined) fail('missing "completion" (the prompt/completion form needs both)');
  if (typeof prompt !== 'string') fail(`"prompt" must be a string, got ${describeValue(prompt)}`);
  if (typeof completion !== 'string') fail(`"completion" must be a string, got ${describeValue(completion)}`);
  if (completion === '') fail('empty "completion"');

  const promptIds = [...leading, ...tokenizer.encode(prompt, { addSpecialTokens: false })];
  const completionIds = [...tokenizer.encode(completion, { addSpecialTokens: false }), tokenizer.eosId];
  return {
    inputIds: [...promptIds, ...completionIds],
    labels: [...promptIds.map(() => IGNORE_INDEX), ...completionIds],
  };
}

function chat(obj: Record<string, unknown>, tokenizer: TextTokenizer, leading: number[], fail: (problem: string) => never): Example {
  const raw = obj.messages;
  if (!Array.isArray(raw)) fail(`"messages" must be an array, got ${describeValue(raw)}`);
  const list = raw as unknown[];
  if (list.length === 0) fail('"messages" is empty');
  const messages: ChatMessage[] = list.map((m, k) => {
    const where = `messages[${k}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail(`${where} must be an object, got ${describeValue(m)}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string') fail(`${where}.role must be a string, got ${describeValue(role)}`);
    if (!CHAT_ROLES.includes(role as ChatRole)) fail(`${where}.role ${JSON.stringify(role)} is not one of ${CHAT_ROLES.join(', ')}`);
    if (typeof content !== 'string') fail(`${where}.content must be a string, got ${describeValue(content)}`);
    return { role: role as ChatRole, content: content as string };
  });
  if (!messages.some((m) => m.role === 'assistant')) fail('no assistant message (nothing to train on)');

  let segments;
  try {
    segments = chatSegments(tokenizer, messages);
  } catch (err) {
    if (err instanceof ChatTemplateError) fail(err.message);
    throw err;
  }

  const inputIds: number[] = [];
  const labels: number[] = [];
  segments.forEach((segment, k) => {
    let ids = tokenizer.encode(segment.text, { addSpecialTokens: false });
    // Templates such as Llama 3's emit {{ bos_token }} themselves; adding the post-processor's BOS again would
    // double it, so only add what the rendered text does not already start with.
    if (k === 0 && !startsWith(ids, leading)) ids = [...leading, ...ids];
    for (const id of ids) {
      inputIds.push(id);
      labels.push(segment.train ? id : IGNORE_INDEX);
    }
  });
  return { inputIds, labels };
}

function tokenized(obj: Record<string, unknown>, vocabSize: number, fail: (problem: string) => never): Example {
  const ids = obj.input_ids;
  if (ids === undefined) fail('missing "input_ids" ("labels" alone is not an example)');
  if (!Array.isArray(ids)) fail(`"input_ids" must be an array of integers, got ${describeValue(ids)}`);
  const inputIds = ids as unknown[];
  if (inputIds.length === 0) fail('"input_ids" is empty');
  inputIds.forEach((id, k) => {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
      fail(`input_ids[${k}] = ${JSON.stringify(id)} is not a token id in [0, ${vocabSize})`);
    }
  });
  if (obj.labels === undefined) return { inputIds: inputIds as number[], labels: [...(inputIds as number[])] };

  if (!Array.isArray(obj.labels)) fail(`"labels" must be an array of integers, got ${describeValue(obj.labels)}`);
  const labels = obj.labels as unknown[];
  if (labels.length !== inputIds.length) {
    fail(`"labels" has ${labels.length} entries but "input_ids" has ${inputIds.length}; they must match (labels are not shifted)`);
  }
  labels.forEach((label, k) => {
    if (label === IGNORE_INDEX) return;
    if (!Number.isInteger(label) || (label as number) < 0 || (label as number) >= vocabSize) {
      fail(`labels[${k}] = ${JSON.stringify(label)} is neither -100 nor a token id in [0, ${vocabSize})`);
    }
  });
  return { inputIds: inputIds as number[], labels: labels as number[] };
}

function startsWith(ids: number[], prefix: number[]): boolean {
  return prefix.length <= ids.length && prefix.every((id, k) => ids[k] === id);
}

/** A bad JSON value for an error message: its type, and short scalars shown. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const shown = JSON.stringify(value) ?? String(value);
  return `${typeof value} ${shown.length > SHOWN_VALUE_CHARS ? shown.slice(0, SHOWN_VALUE_CHARS) + '…' : shown}`;
}
