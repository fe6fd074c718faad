// Evaluate's data forms (CHOICE lines, GENERATE prompts and answers) and its pure helpers: answer extraction, the
// learning/forgetting summary, the base-model compatibility check.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderChat } from '../../src/data/chat.js';
import { IGNORE_INDEX, loadDataset } from '../../src/data/dataset.js';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import { choiceExample, loadChoiceSet, loadGenerateSet } from '../../src/eval/eval-data.js';
import { architectureDifference, compileAnswerRegex, extractAnswer, summarize } from '../../src/eval/evaluate.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { tempDir, TINY_LLAMA, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

let dir: string;
let model: string;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  dir = await tempDir('nt-evaldata-');
  model = await tinyModel(dir, TINY_QWEN2, 'qwen');
  tokenizer = await loadTokenizer(model);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

let files = 0;
async function jsonl(lines: (string | object)[]): Promise<string> {
  const file = join(dir, `f${files++}.jsonl`);
  await writeFile(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}

const opts = { seqLen: 64, field: 'datasets[3].path' };

describe('CHOICE files', () => {
  it('encode the prompt as the trainer does and each choice on its own; answer by index or text', async () => {
    const file = await jsonl([
      { prompt: 'copy: cat =', choices: [' tac', ' cat'], answer: 1, id: 'extra keys are ignored' },
      '',
      { prompt: 'reverse: dog =', choices: [' dog', ' god', ' sun'], answer: ' god' },
    ]);
    const items = await loadChoiceSet(file, tokenizer, opts);
    expect(items.map((it) => [it.line, it.answer])).toEqual([[1, 1], [3, 1]]);
    expect(items[0].promptIds).toEqual(tokenizer.encode('copy: cat =', { addSpecialTokens: false }));
    expect(items[1].choiceIds[2]).toEqual(tokenizer.encode(' sun', { addSpecialTokens: false }));
    const row = choiceExample(items[0], 0);
    expect(row.inputIds).toEqual([...items[0].promptIds, ...items[0].choiceIds[0]]);
    expect(row.labels).toEqual([...items[0].promptIds.map(() => IGNORE_INDEX), ...items[0].choiceIds[0]]);
  });

  it.each([
    ['{"prompt": "a", "choices": [" b", " c"], "answer": 0', 'invalid JSON'],
    ['[1, 2]', 'expected a JSON object, got an array'],
    [{ choices: [' b', ' c'], answer: 0 }, 'missing "prompt"'],
    [{ prompt: 3, choices: [' b', ' c'], answer: 0 }, '"prompt" must be a string, got number 3'],
    [{ prompt: 'a', choices: ' b', answer: 0 }, '"choices" must be an array of strings'],
    [{ prompt: 'a', choices: [' b'], answer: 0 }, '"choices" needs at least 2 entries, got 1'],
    [{ prompt: 'a', choices: [' b', 7], answer: 0 }, 'choices[1] must be a string, got number 7'],
    [{ prompt: 'a', choices: [' b', ''], answer: 0 }, 'choices[1] is empty'],
    [{ prompt: 'a', choices: [' b', ' c', ' b'], answer: 0 }, 'choices[2] repeats choices[0]'],
    [{ prompt: 'a', choices: [' b', ' c'] }, 'missing "answer"'],
    [{ prompt: 'a', choices: [' b', ' c'], answer: 2 }, '"answer" 2 is not a choice index in [0, 2)'],
    [{ prompt: 'a', choices: [' b', ' c'], answer: 0.5 }, '"answer" 0.5 is not a choice index'],
    [{ prompt: 'a', choices: [' b', ' c'], answer: ' d' }, '"answer" " d" is not one of the choices'],
    [{ prompt: 'a', choices: [' b', ' c'], answer: true }, '"answer" must be a choice index or a choice\'s text, got boolean true'],
    [{ prompt: '', choices: [' b', ' c'], answer: 0 }, '"prompt" encodes to no tokens'],
    [{ prompt: 'x'.repeat(60), choices: [' b', ' long choice'], answer: 0 }, 'prompt + choices[1] is 72 tokens, more than seq_len 64'],
  ])('a malformed line fails with file:line and the problem (%s)', async (bad, problem) => {
    const file = await jsonl([{ prompt: 'ok', choices: [' a', ' b'], answer: 0 }, bad]);
    const err = (await loadChoiceSet(file, tokenizer, opts).catch((e: unknown) => e)) as NarrowtuneError;
    expect(err).toBeInstanceOf(NarrowtuneError);
    expect(err.kind).toBe('invalid_argument');
    expect(err.message).toContain(`${file}:2: ${problem}`);
    expect(err.violations).toEqual([{ field: 'datasets[3].path', description: expect.stringContaining(`${file}:2: ${problem}`) }]);
  });

  it('an empty file fails', async () => {
    await expect(loadChoiceSet(await jsonl(['']), tokenizer, opts)).rejects.toThrow(/no examples/);
  });
});

describe('GENERATE files', () => {
  it('prompt/completion: the prompt is the trainer\'s prompt ids, the answer the trimmed completion', async () => {
    const file = await jsonl([{ prompt: 'count: a a =', completion: ' 2 \n' }, { prompt: 'x'.repeat(10), completion: 'y'.repeat(100) }]);
    const set = await loadGenerateSet(file, tokenizer, opts);
    const { examples } = await loadDataset(file, tokenizer, { seqLen: 64 });
    expect(set.items[0]).toEqual({ line: 1, promptIds: tokenizer.encode('count: a a =', { addSpecialTokens: false }), answer: '2' });
    expect(set.examples[0]).toEqual(examples[0]);
    // Teacher-forced examples are cut to seq_len as the trainer cuts them; the prompt is whole.
    expect(set.examples[1]).toEqual(examples[1]);
    expect(set.examples[1].inputIds).toHaveLength(64);
  });

  it('messages: the prompt is the conversation before the last assistant turn with the generation prompt', async () => {
    const conversation = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'copy: cat' },
      { role: 'assistant', content: 'cat' },
      { role: 'user', content: 'copy: dog' },
      { role: 'assistant', content: '  dog ' },
    ] as const;
    const file = await jsonl([{ messages: conversation }]);
    const set = await loadGenerateSet(file, tokenizer, { ...opts, seqLen: 512 });
    const prompt = renderChat(tokenizer, conversation.slice(0, -1).map((m) => ({ ...m })), true);
    expect(prompt.endsWith('<|im_start|>assistant\n')).toBe(true);
    expect(set.items[0].answer).toBe('dog');
    expect(set.items[0].promptIds).toEqual(tokenizer.encode(prompt, { addSpecialTokens: false }));
    // The same ids the trainer's example has before the last assistant turn.
    const { examples } = await loadDataset(file, tokenizer, { seqLen: 512 });
    expect(examples[0].inputIds.slice(0, set.items[0].promptIds.length)).toEqual(set.items[0].promptIds);
    expect(examples[0].labels[set.items[0].promptIds.length]).not.toBe(IGNORE_INDEX);
  });

  it('rejects the input_ids form and prompts longer than seq_len', async () => {
    await expect(loadGenerateSet(await jsonl([{ input_ids: [1, 2, 3] }]), tokenizer, opts)).rejects.toThrow(/need the prompt\/completion or messages form/);
    const long = await jsonl([{ prompt: 'a', completion: 'b' }, { prompt: 'x'.repeat(70), completion: 'b' }]);
    await expect(loadGenerateSet(long, tokenizer, opts)).rejects.toThrow(`${long}:2: the prompt is 70 tokens, more than seq_len 64`);
  });
});

describe('helpers', () => {
  it('extractAnswer: first group, else the whole match; no match is null; trimmed', () => {
    expect(extractAnswer('  42 \n', null)).toBe('42');
    const re = (source: string) => compileAnswerRegex(source, 'answer_regex');
    expect(extractAnswer('the answer is 42.', re('(\\d+)'))).toBe('42');
    expect(extractAnswer('x = 42', re('\\d+'))).toBe('42');
    expect(extractAnswer('no digits', re('\\d+'))).toBeNull();
    expect(extractAnswer('ab', re('a(z)?'))).toBe('');
    expect(extractAnswer('😀 7', re('^.\\s(\\d)'))).toBe('7');
  });

  it('summarize: mean accuracy deltas per role; unset without a base or without datasets of the role', () => {
    const b = (accuracyDelta: number) => ({ accuracyDelta }) as never;
    const s = summarize([
      { role: 'target', base: b(0.5) },
      { role: 'target', base: b(0.25) },
      { role: 'held_out', base: b(-0.1) },
      { role: null, base: b(9) },
    ]);
    expect(s).toEqual({ deltaLearning: 0.375, deltaForgetting: -0.1, targetDatasets: 2, heldOutDatasets: 1 });
    expect(summarize([{ role: 'target', base: null }])).toEqual({ deltaLearning: null, deltaForgetting: null, targetDatasets: 0, heldOutDatasets: 0 });
  });

  it('architectureDifference: a base must match the model\'s config', async () => {
    const a = (await loadCheckpoint(model)).config;
    expect(architectureDifference(a, a)).toBeNull();
    const other = (await loadCheckpoint(await tinyModel(dir, TINY_LLAMA, 'llama'))).config;
    expect(architectureDifference(a, other)).toMatch(/has arch "llama" but the model has "qwen2"/);
  });
});
