// Evaluation datasets that need more than the trainer's examples:
//   GENERATE: prompts to continue greedily and the expected answers (prompt/completion or messages JSONL; for a
//             LLaVA-style model also LLaVA conversations, and images on any form);
//   CHOICE:   {"prompt", "choices", "answer"} JSONL, each choice scored as a continuation of its prompt.
// Images (eval-images.ts) come as the trainer's image-text files give them: an `image` / `images` field and one
// `<image>` marker per image. Errors are DataFileErrors naming the file and the 1-based line, as the trainer's
// loader reports them.
import { ChatTemplateError, chatSegments, renderChat, type ChatMessage } from '../data/chat.js';
import { describeValue, IGNORE_INDEX, leadingSpecialIds, loadDataset, readDataText, type Example, type ExampleImage } from '../data/dataset.js';
import { isImageTextFile, loadImageDataset } from '../data/image-dataset.js';
import type { ImageRef } from '../data/image-text.js';
import type { TextTokenizer } from '../data/tokenizer.js';
import { DataFileError } from '../util/errors.js';
import { checkMarkers, type EvalImageOptions, ImageSequence, lineImages, SetImages } from './eval-images.js';

export interface EvalDataOptions {
  /** Longest example, in tokens: prompt plus choice (CHOICE), prompt (GENERATE). */
  seqLen: number;
  /** Field named in errors, e.g. `datasets[2].path`. */
  field: string;
  /** A LLaVA-style model's image settings; absent or null (a text-only model): a line naming an image fails. */
  images?: EvalImageOptions | null;
}

/** A set's distinct images; ExampleImage.image (items' and examples') indexes `images`. */
export interface EvalImages {
  images: ImageRef[];
  /** per image: the data file line that first uses it */
  imageLines: number[];
}

export interface GenerateItem {
  /** 1-based line in the file. */
  line: number;
  /** The prompt as the trainer encodes it (leading special tokens, chat template with the generation prompt). */
  promptIds: number[];
  /** The expected answer, trimmed. */
  answer: string;
  /** Image positions in promptIds. */
  images?: ExampleImage[];
}

export interface GenerateSet extends EvalImages {
  items: GenerateItem[];
  /** The trainer's teacher-forced encoding of each line (prompt + completion + EOS, or the whole conversation), cut to seqLen. */
  examples: Example[];
}

export interface ChoiceItem {
  line: number;
  promptIds: number[];
  /** Each choice's tokens, encoded on its own (as a completion is) and appended to the prompt. */
  choiceIds: number[][];
  /** Index of the correct choice. */
  answer: number;
  /** Image positions in promptIds. */
  images?: ExampleImage[];
}

export interface ChoiceSet extends EvalImages {
  items: ChoiceItem[];
}

interface JsonlRecord {
  line: number;
  record: Record<string, unknown>;
}

// Without truncation: a GENERATE prompt must stay whole, so it is measured before anything is cut.
const NO_TRUNCATION = Number.MAX_SAFE_INTEGER;

/** The non-blank lines of a JSONL file as objects, with the line rules of the trainer's loader (CRLF, BOM, blank lines). */
async function readJsonl(file: string, field: string): Promise<JsonlRecord[]> {
  const lines = (await readDataText(file, field)).split('\n');
  const out: JsonlRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (err) {
      throw new DataFileError(file, i + 1, `invalid JSON: ${(err as Error).message}`, field);
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      throw new DataFileError(file, i + 1, `expected a JSON object, got ${describeValue(record)}`, field);
    }
    out.push({ line: i + 1, record: record as Record<string, unknown> });
  }
  return out;
}

/** loadChoiceData's items. */
export async function loadChoiceSet(file: string, tokenizer: TextTokenizer, o: EvalDataOptions): Promise<ChoiceItem[]> {
  return (await loadChoiceData(file, tokenizer, o)).items;
}

/**
 * A CHOICE file: `{"prompt": str, "choices": [str, ...], "answer": index | one of the choices}` per line, with
 * `image` / `images` and markers in the prompt for a LLaVA-style model (other keys are ignored). At least two
 * distinct, non-empty choices; the prompt must encode to at least one token (something has to predict a choice's
 * first token), and prompt (image positions included) plus each choice must fit seqLen.
 */
export async function loadChoiceData(file: string, tokenizer: TextTokenizer, o: EvalDataOptions): Promise<ChoiceSet> {
  const records = await readJsonl(file, o.field);
  if (records.length === 0) throw new DataFileError(file, null, 'no examples (empty file); expected JSONL lines of {"prompt", "choices", "answer"}', o.field);
  const leading = leadingSpecialIds(tokenizer);
  const readImages = await lineImages(file, o.images ?? null);
  const set = new SetImages();
  const items: ChoiceItem[] = [];
  for (const { line, record } of records) {
    const fail: (problem: string) => never = (problem) => {
      throw new DataFileError(file, line, problem, o.field);
    };
    const { prompt, choices, answer } = record;
    if (prompt === undefined) fail('missing "prompt" (a CHOICE line is {"prompt", "choices", "answer"})');
    if (typeof prompt !== 'string') fail(`"prompt" must be a string, got ${describeValue(prompt)}`);
    if (choices === undefined) fail('missing "choices" (a CHOICE line is {"prompt", "choices", "answer"})');
    if (!Array.isArray(choices)) fail(`"choices" must be an array of strings, got ${describeValue(choices)}`);
    const list = choices as unknown[];
    if (list.length < 2) fail(`"choices" needs at least 2 entries, got ${list.length}`);
    list.forEach((c, k) => {
      if (typeof c !== 'string') fail(`choices[${k}] must be a string, got ${describeValue(c)}`);
      if (c === '') fail(`choices[${k}] is empty`);
      const first = list.indexOf(c);
      if (first < k) fail(`choices[${k}] repeats choices[${first}] (${JSON.stringify(c)})`);
    });
    const texts = list as string[];
    let index: number;
    if (answer === undefined) fail('missing "answer" (the index of the correct choice, or its text)');
    if (typeof answer === 'number') {
      if (!Number.isInteger(answer) || answer < 0 || answer >= texts.length) fail(`"answer" ${answer} is not a choice index in [0, ${texts.length})`);
      index = answer as number;
    } else if (typeof answer === 'string') {
      index = texts.indexOf(answer);
      if (index < 0) fail(`"answer" ${JSON.stringify(answer)} is not one of the choices`);
    } else {
      fail(`"answer" must be a choice index or a choice's text, got ${describeValue(answer)}`);
    }
    const refs = await readImages(record, fail);
    if (o.images) checkMarkers([prompt as string], refs, fail);
    const seq = new ImageSequence(tokenizer, o.images ?? null, set, line, refs, fail);
    seq.append(prompt as string, leading);
    const promptIds = seq.ids;
    if (promptIds.length === 0) fail('"prompt" encodes to no tokens: nothing would predict the first token of a choice');
    const choiceIds = texts.map((c, k) => {
      const ids = tokenizer.encode(c, { addSpecialTokens: false });
      if (ids.length === 0) fail(`choices[${k}] encodes to no tokens`);
      if (promptIds.length + ids.length > o.seqLen) {
        fail(`prompt + choices[${k}] is ${promptIds.length + ids.length} tokens, more than seq_len ${o.seqLen} (choices are never truncated)`);
      }
      return ids;
    });
    items.push({ line, promptIds, choiceIds, answer: index!, ...(seq.images.length > 0 ? { images: seq.images } : {}) });
  }
  return { items, images: set.images, imageLines: set.imageLines };
}

/** Prompt + one choice, with labels on the choice's tokens only: its summed loss is −log p(choice | prompt). */
export function choiceExample(item: ChoiceItem, choice: number): Example {
  const ids = item.choiceIds[choice];
  const example: Example = { inputIds: [...item.promptIds, ...ids], labels: [...item.promptIds.map(() => IGNORE_INDEX), ...ids] };
  return item.images ? { ...example, images: item.images } : example;
}

/**
 * A GENERATE file: the trainer's prompt/completion or messages form. The expected answer is the completion, or the
 * last assistant turn's content; the prompt is what precedes it, tokenized exactly as the trainer tokenizes it (for
 * messages: the conversation before that turn rendered with add_generation_prompt, segment by segment).
 */
export async function loadGenerateSet(file: string, tokenizer: TextTokenizer, o: EvalDataOptions): Promise<GenerateSet> {
  if (await isImageTextFile(file, o.field)) return loadImageGenerateSet(file, tokenizer, o);
  const data = await loadDataset(file, tokenizer, { seqLen: NO_TRUNCATION, field: o.field });
  if (data.form === 'tokenized') {
    throw new DataFileError(file, null, 'GENERATE datasets need the prompt/completion or messages form (the expected answer is text), not input_ids', o.field);
  }
  const records = await readJsonl(file, o.field);
  if (records.length !== data.examples.length) throw new Error(`${file}: ${records.length} records but ${data.examples.length} examples`);
  const leading = leadingSpecialIds(tokenizer);
  const items = records.map(({ line, record }): GenerateItem => {
    const fail: (problem: string) => never = (problem) => {
      throw new DataFileError(file, line, problem, o.field);
    };
    let promptIds: number[];
    let answer: string;
    if (data.form === 'prompt_completion') {
      promptIds = [...leading, ...tokenizer.encode(record.prompt as string, { addSpecialTokens: false })];
      answer = (record.completion as string).trim();
    } else {
      const messages = record.messages as ChatMessage[];
      let last = messages.length - 1;
      while (messages[last].role !== 'assistant') last--;
      try {
        promptIds = chatPromptPieces(tokenizer, messages.slice(0, last + 1)).flatMap((piece, k) => {
          const ids = tokenizer.encode(piece, { addSpecialTokens: false });
          return k === 0 && !leading.every((id, j) => ids[j] === id) ? [...leading, ...ids] : ids;
        });
      } catch (err) {
        if (err instanceof ChatTemplateError) fail(err.message);
        throw err;
      }
      answer = messages[last].content.trim();
    }
    if (promptIds.length === 0) fail('the prompt encodes to no tokens: there is nothing to continue');
    if (promptIds.length > o.seqLen) fail(`the prompt is ${promptIds.length} tokens, more than seq_len ${o.seqLen} (prompts are never truncated)`);
    return { line, promptIds, answer };
  });
  const examples = data.examples.map((e) =>
    e.inputIds.length > o.seqLen ? { inputIds: e.inputIds.slice(0, o.seqLen), labels: e.labels.slice(0, o.seqLen) } : e,
  );
  return { items, examples, images: [], imageLines: [] };
}

/**
 * The text of render(messages[:-1], add_generation_prompt) for a conversation ending in an assistant turn, split
 * into the pieces the trainer encodes separately (its chat segments, cut where the last turn begins); the trainer
 * puts the leading specials before the first piece unless the template wrote them.
 */
function chatPromptPieces(tokenizer: TextTokenizer, messages: ChatMessage[]): string[] {
  const promptText = renderChat(tokenizer, messages.slice(0, -1), true);
  const pieces: string[] = [];
  let pos = 0;
  for (const segment of chatSegments(tokenizer, messages)) {
    if (pos >= promptText.length) break;
    pieces.push(segment.text.slice(0, promptText.length - pos));
    pos += segment.text.length;
  }
  return pieces;
}

/**
 * A GENERATE file with images: prompt/completion lines with `image` / `images` and markers in the prompt (the
 * teacher-forced example is prompt + completion + EOS, as the trainer's), or the trainer's image-text forms (LLaVA
 * conversations, messages with images: the examples are the trainer's, the prompt is the conversation before the
 * last assistant turn, rendered with the generation prompt).
 */
async function loadImageGenerateSet(file: string, tokenizer: TextTokenizer, o: EvalDataOptions): Promise<GenerateSet> {
  const records = await readJsonl(file, o.field);
  const leading = leadingSpecialIds(tokenizer);
  const checkPrompt = (promptIds: number[], fail: (problem: string) => never) => {
    if (promptIds.length === 0) fail('the prompt encodes to no tokens: there is nothing to continue');
    if (promptIds.length > o.seqLen) fail(`the prompt is ${promptIds.length} tokens (image positions included), more than seq_len ${o.seqLen} (prompts are never truncated)`);
  };
  if (records.length > 0 && !('prompt' in records[0].record || 'completion' in records[0].record)) {
    if (!o.images) throw new DataFileError(file, null, 'is image-text data (LLaVA conversations or messages with images), but the model is text-only (it has no vision tower)', o.field);
    const data = await loadImageDataset(file, tokenizer, { ...o.images, seqLen: o.seqLen, field: o.field });
    const set = SetImages.of(data.images, data.imageLines);
    const items = data.source.examples.map((ex): GenerateItem => {
      const fail = (problem: string): never => {
        throw new DataFileError(file, ex.line, problem, o.field);
      };
      let last = ex.messages.length - 1;
      while (ex.messages[last].role !== 'assistant') last--;
      const seq = new ImageSequence(tokenizer, o.images!, set, ex.line, ex.images, fail);
      chatPromptPieces(tokenizer, ex.messages.slice(0, last + 1)).forEach((piece, k) => seq.append(piece, k === 0 ? leading : [], true));
      checkPrompt(seq.ids, fail);
      return { line: ex.line, promptIds: seq.ids, answer: ex.messages[last].content.trim(), ...(seq.images.length > 0 ? { images: seq.images } : {}) };
    });
    return { items, examples: data.examples, images: set.images, imageLines: set.imageLines };
  }

  const readImages = await lineImages(file, o.images ?? null);
  const set = new SetImages();
  const items: GenerateItem[] = [];
  const examples: Example[] = [];
  for (const { line, record } of records) {
    const fail = (problem: string): never => {
      throw new DataFileError(file, line, problem, o.field);
    };
    const { prompt, completion } = record;
    if ('messages' in record || 'conversations' in record) fail('this line is in a chat form but the file\'s first line is prompt/completion; a file must use one form');
    if (typeof prompt !== 'string') fail(prompt === undefined ? 'missing "prompt" (the prompt/completion form needs both)' : `"prompt" must be a string, got ${describeValue(prompt)}`);
    if (typeof completion !== 'string') fail(completion === undefined ? 'missing "completion" (the prompt/completion form needs both)' : `"completion" must be a string, got ${describeValue(completion)}`);
    if (completion === '') fail('empty "completion"');
    const refs = await readImages(record, fail);
    if (o.images) checkMarkers([prompt as string], refs, fail);
    const seq = new ImageSequence(tokenizer, o.images ?? null, set, line, refs, fail);
    seq.append(prompt as string, leading);
    checkPrompt(seq.ids, fail);
    const images = seq.images.length > 0 ? { images: seq.images } : {};
    items.push({ line, promptIds: seq.ids, answer: (completion as string).trim(), ...images });
    // The prompt fits seqLen, so a cut only ever shortens the completion and every image stays whole.
    const completionIds = [...tokenizer.encode(completion as string, { addSpecialTokens: false }), tokenizer.eosId];
    const inputIds = [...seq.ids, ...completionIds].slice(0, o.seqLen);
    const labels = [...seq.ids.map(() => IGNORE_INDEX), ...completionIds].slice(0, o.seqLen);
    examples.push({ inputIds, labels, ...images });
  }
  return { items, examples, images: set.images, imageLines: set.imageLines };
}
