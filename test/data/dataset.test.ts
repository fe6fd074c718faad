// Tests for JSONL dataset loading: exact ids/labels per form, truncation, and line-pinned errors.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset, type LoadDatasetOptions } from '../../src/data/dataset.js';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import { DataFileError } from '../../src/util/errors.js';
import { TINY, byteIds, writeTinyTokenizer } from './fixtures.js';

const X = -100;
const { endOfText: EOS, imStart: START, imEnd: END, bos: BOS } = TINY;
const NL = 10;

let root: string;
let chatml: TextTokenizer;
let plain: TextTokenizer; // no chat template
let withBos: TextTokenizer;
let fileNo = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'narrowtune-data-'));
  chatml = await loadTokenizer(await writeTinyTokenizer(join(root, 'chatml')));
  plain = await loadTokenizer(await writeTinyTokenizer(join(root, 'plain'), { chatTemplate: false }));
  withBos = await loadTokenizer(await writeTinyTokenizer(join(root, 'bos'), { bos: true }));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function writeLines(lines: (string | object)[]): Promise<string> {
  const file = join(root, `data${fileNo++}.jsonl`);
  await writeFile(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n'));
  return file;
}

async function load(lines: (string | object)[], tok = chatml, opts: LoadDatasetOptions = { seqLen: 64 }) {
  return loadDataset(await writeLines(lines), tok, opts);
}

/** Asserts the load fails with a DataFileError pinned to `line`, whose problem matches `problem`. */
async function expectLineError(lines: (string | object)[], line: number | null, problem: RegExp | string, opts?: LoadDatasetOptions) {
  const file = await writeLines(lines);
  const err = await loadDataset(file, chatml, opts ?? { seqLen: 64 }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataFileError);
  const message = (err as Error).message;
  const where = line === null ? `${file}: ` : `${file}:${line}: `;
  expect(message.startsWith(where), message).toBe(true);
  if (typeof problem === 'string') expect(message.slice(where.length)).toBe(problem);
  else expect(message.slice(where.length)).toMatch(problem);
}

const userHi = [START, ...byteIds('user\nhi'), END, NL];
const assistantPrompt = [START, ...byteIds('assistant\n')];

describe('prompt/completion form', () => {
  it('masks the prompt and labels the completion plus an appended EOS', async () => {
    const ds = await load([{ prompt: 'ab', completion: 'cd' }, { prompt: '', completion: 'x y' }]);
    expect(ds.form).toBe('prompt_completion');
    expect(ds.examples).toEqual([
      { inputIds: [97, 98, 99, 100, EOS], labels: [X, X, 99, 100, EOS] },
      { inputIds: [120, 32, 121, EOS], labels: [120, 32, 121, EOS] },
    ]);
    // labels[0] predicts nothing after the shift, so the second example trains 3 tokens, not 4.
    expect(ds.trainTokens).toBe(3 + 3);
    expect(ds.truncated).toBe(0);
  });

  it('puts the post-processor BOS before the prompt', async () => {
    const ds = await load([{ prompt: 'ab', completion: 'cd' }], withBos);
    expect(ds.examples[0]).toEqual({ inputIds: [BOS, 97, 98, 99, 100, EOS], labels: [X, X, X, 99, 100, EOS] });
  });

  it('tolerates a BOM, CRLF line ends and blank lines', async () => {
    const file = join(root, `bom${fileNo++}.jsonl`);
    await writeFile(file, '\ufeff{"prompt":"a","completion":"b"}\r\n\r\n   \r\n{"prompt":"c","completion":"d"}\r\n');
    const ds = await loadDataset(file, chatml, { seqLen: 64 });
    expect(ds.examples.map((e) => e.inputIds)).toEqual([[97, 98, EOS], [99, 100, EOS]]);
  });
});

describe('chat form', () => {
  const messages = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'yo' },
    { role: 'user', content: 'q' },
    { role: 'assistant', content: 'ok' },
  ];

  it('labels exactly the assistant turns including <|im_end|>', async () => {
    const ds = await load([{ messages }]);
    expect(ds.form).toBe('chat');
    const untrained1 = [...userHi, ...assistantPrompt];
    const turn1 = [...byteIds('yo'), END, NL];
    const untrained2 = [START, ...byteIds('user\nq'), END, NL, ...assistantPrompt];
    const turn2 = [...byteIds('ok'), END, NL];
    expect(ds.examples[0]).toEqual({
      inputIds: [...untrained1, ...turn1, ...untrained2, ...turn2],
      labels: [...untrained1.map(() => X), ...turn1, ...untrained2.map(() => X), ...turn2],
    });
    expect(ds.trainTokens).toBe(turn1.length + turn2.length);
  });

  it('uses the plain fallback (role lines, EOS ends a turn) without a template', async () => {
    const ds = await load([{ messages: messages.slice(0, 2) }], plain);
    const prompt = byteIds('user: hi\nassistant: ');
    const turn = [...byteIds('yo'), EOS, NL];
    expect(ds.examples[0]).toEqual({ inputIds: [...prompt, ...turn], labels: [...prompt.map(() => X), ...turn] });
  });

  it('adds the BOS once: before the render, unless the template already emits it', async () => {
    const ds = await load([{ messages: messages.slice(0, 2) }], withBos);
    expect(ds.examples[0].inputIds.slice(0, 2)).toEqual([BOS, START]);

    const emitsBos = { ...withBos, chatTemplate: "{{ bos_token }}{% for m in messages %}{{ m.content + '|' }}{% endfor %}" };
    const own = await load([{ messages: messages.slice(0, 2) }], emitsBos);
    expect(own.examples[0]).toEqual({ inputIds: [BOS, 104, 105, 124, 121, 111, 124], labels: [X, X, X, X, 121, 111, 124] });
  });
});

describe('tokenized form', () => {
  it('defaults labels to input_ids and keeps given labels', async () => {
    const ds = await load([{ input_ids: [1, 2, 3] }, { input_ids: [4, 5, 6], labels: [-100, -100, 6] }]);
    expect(ds.form).toBe('tokenized');
    expect(ds.examples).toEqual([
      { inputIds: [1, 2, 3], labels: [1, 2, 3] },
      { inputIds: [4, 5, 6], labels: [X, X, 6] },
    ]);
    expect(ds.trainTokens).toBe(2 + 1);
  });
});

describe('truncation', () => {
  it('keeps the first seqLen tokens and counts truncated examples', async () => {
    const ds = await load([{ prompt: 'ab', completion: 'cdef' }, { prompt: 'a', completion: 'b' }], chatml, { seqLen: 4 });
    expect(ds.examples[0]).toEqual({ inputIds: [97, 98, 99, 100], labels: [X, X, 99, 100] });
    expect(ds.truncated).toBe(1);
    expect(ds.trainTokens).toBe(2 + 2);
  });

  it('fails on an example with nothing left to train after truncation', async () => {
    await expectLineError(
      [{ prompt: 'a', completion: 'b' }, { prompt: 'abcdef', completion: 'x' }],
      2,
      'no completion tokens left after truncation to --seq-len 4',
      { seqLen: 4 },
    );
  });
});

describe('errors pin the file and line', () => {
  const ok = { prompt: 'a', completion: 'b' };
  const cases: [string, (string | object)[], number, RegExp | string][] = [
    ['invalid JSON', [ok, '{"prompt": "a",'], 2, /^invalid JSON: .+/],
    ['not an object', [ok, ok, '[1, 2]'], 3, 'expected a JSON object, got an array'],
    ['missing completion', [{ prompt: 'a' }], 1, 'missing "completion" (the prompt/completion form needs both)'],
    ['wrong-typed prompt', [{ prompt: 3, completion: 'b' }], 1, '"prompt" must be a string, got number 3'],
    ['empty completion', [ok, { prompt: 'a', completion: '' }], 2, 'empty "completion"'],
    ['unknown form', [{ text: 'hello' }], 1, /^unknown form \(keys: "text"\); accepted forms: \{"prompt", "completion"\}, \{"messages"/],
    ['ambiguous form', [{ prompt: 'a', completion: 'b', messages: [] }], 1, /^ambiguous form/],
    ['mixed forms', [ok, '', { input_ids: [1, 2] }], 3, 'this line is in the tokenized form but line 1 is in the prompt_completion form; a file must use one form'],
    ['messages not an array', [{ messages: 'hi' }], 1, '"messages" must be an array, got string "hi"'],
    ['bad role', [{ messages: [{ role: 'bot', content: 'x' }] }], 1, 'messages[0].role "bot" is not one of system, user, assistant, tool'],
    ['content not a string', [{ messages: [{ role: 'user', content: null }] }], 1, 'messages[0].content must be a string, got null'],
    ['no assistant turn', [{ messages: [{ role: 'user', content: 'x' }] }], 1, 'no assistant message (nothing to train on)'],
    ['id out of range', [{ input_ids: [1, TINY.vocabSize] }], 1, `input_ids[1] = ${TINY.vocabSize} is not a token id in [0, ${TINY.vocabSize})`],
    ['non-integer id', [{ input_ids: [1.5, 2] }], 1, `input_ids[0] = 1.5 is not a token id in [0, ${TINY.vocabSize})`],
    ['label length', [{ input_ids: [1, 2], labels: [1] }], 1, /^"labels" has 1 entries but "input_ids" has 2/],
    ['bad label', [{ input_ids: [1, 2], labels: [1, -5] }], 1, `labels[1] = -5 is neither -100 nor a token id in [0, ${TINY.vocabSize})`],
    ['all labels ignored', [{ input_ids: [1, 2], labels: [-100, -100] }], 1, /^no trainable tokens/],
  ];
  it.each(cases)('%s', async (_name, lines, line, problem) => {
    await expectLineError(lines, line, problem);
  });

  it('rejects an empty file and a missing file', async () => {
    await expectLineError([''], null, /^no examples \(empty file\)/);
    await expectLineError(['', '  '], null, /^no examples \(empty file\)/);
    await expect(loadDataset(join(root, 'nope.jsonl'), chatml, { seqLen: 8 })).rejects.toThrow(`${join(root, 'nope.jsonl')}: no such file`);
  });

  it('names the requested field in violations', async () => {
    const file = await writeLines([{ text: 'x' }]);
    const err = await loadDataset(file, chatml, { seqLen: 8, field: 'eval_data' }).catch((e: DataFileError) => e);
    expect((err as DataFileError).violations[0].field).toBe('eval_data');
  });

  it('turns chat template failures into line errors', async () => {
    const strict = { ...chatml, chatTemplate: "{{ raise_exception('roles must alternate') }}" };
    const file = await writeLines([{ messages: [{ role: 'assistant', content: 'x' }] }]);
    await expect(loadDataset(file, strict, { seqLen: 8 })).rejects.toThrow(`${file}:1: chat template failed on this conversation: roles must alternate`);
  });
});
