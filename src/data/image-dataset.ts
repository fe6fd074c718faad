// Image-text training files (image-text.ts's two forms) as labeled examples for a LLaVA-style model: the chat
// template renders the turns, and each `<image>` marker becomes as many image-token positions as the image takes
// in the sequence (its count from the image's size alone), trained on nowhere. The images' features fill those
// positions at train and evaluation time (src/eval/image-features.ts).
//
// Tokens are those of LLaVA's training code: the text between markers is tokenised piece by piece, as
// tokenizer_image_token splits a prompt at "<image>"; the image positions hold `imageTokenId`.

import { ChatTemplateError, chatSegments } from './chat.js';
import { IGNORE_INDEX, leadingSpecialIds, readDataText, trainableTokens, type Dataset, type Example, type ExampleImage } from './dataset.js';
import { IMAGE_MARKER, loadImageTextFile, type ImageRef, type ImageTextData } from './image-text.js';
import { jsonRecords } from './json-records.js';
import type { TextTokenizer } from './tokenizer.js';
import { DataFileError } from '../util/errors.js';

export interface ImageDataset extends Dataset {
  /** Distinct image files (by resolved path), in first-use order; ExampleImage.image indexes this. */
  images: ImageRef[];
  /** The file as read, for errors that name an image's line. */
  source: ImageTextData;
  /** per image: the data file line of the first example that uses it */
  imageLines: number[];
}

export interface LoadImageDatasetOptions {
  seqLen: number;
  /** The id the image positions hold (the checkpoint's image_token_index, or the pad id where it has none). */
  imageTokenId: number;
  /** Positions an image takes in the sequence (from its stored size). */
  tokensFor(image: ImageRef): number;
  field?: string;
  name?: string;
  /** Directories images may also lie in besides the data file's own. */
  roots?: readonly string[];
}

/**
 * Reads an image-text file into examples. Examples longer than seqLen are cut as text examples are, unless the
 * cut would split an image's positions: then the example fails, naming its line and the length it needs.
 */
export async function loadImageDataset(file: string, tokenizer: TextTokenizer, opts: LoadImageDatasetOptions): Promise<ImageDataset> {
  const field = opts.field ?? 'data';
  const name = opts.name ?? file;
  const source = await loadImageTextFile(file, { field, name, roots: opts.roots });
  const leading = leadingSpecialIds(tokenizer);
  const images: ImageRef[] = [];
  const imageLines: number[] = [];
  const indexOf = new Map<string, number>();
  const examples: Example[] = [];
  let truncated = 0;
  let trainTokens = 0;
  for (const ex of source.examples) {
    const fail = (problem: string): never => {
      throw new DataFileError(name, ex.line, problem, field);
    };
    let segments;
    try {
      segments = chatSegments(tokenizer, ex.messages);
    } catch (err) {
      if (err instanceof ChatTemplateError) fail(err.message);
      throw err;
    }
    const inputIds: number[] = [];
    const labels: number[] = [];
    const placed: ExampleImage[] = [];
    const push = (ids: number[], train: boolean) => {
      for (const id of ids) {
        inputIds.push(id);
        labels.push(train ? id : IGNORE_INDEX);
      }
    };
    segments.forEach((segment, k) => {
      segment.text.split(IMAGE_MARKER).forEach((piece, j) => {
        if (j > 0) {
          const ref = ex.images[placed.length];
          if (ref === undefined) fail(`the chat template's rendering has more ${IMAGE_MARKER} markers than the example has images`);
          let image = indexOf.get(ref.path);
          if (image === undefined) {
            image = images.push(ref) - 1;
            imageLines.push(ex.line);
            indexOf.set(ref.path, image);
          }
          const count = opts.tokensFor(ref);
          placed.push({ start: inputIds.length, count, image });
          for (let i = 0; i < count; i++) {
            inputIds.push(opts.imageTokenId);
            labels.push(IGNORE_INDEX);
          }
        }
        let ids = piece === '' ? [] : tokenizer.encode(piece, { addSpecialTokens: false });
        // As the text loader: the post-processor's leading specials, unless the template already wrote them.
        if (k === 0 && j === 0 && !leading.every((id, i) => ids[i] === id)) ids = [...leading, ...ids];
        push(ids, segment.train);
      });
    });
    if (placed.length !== ex.images.length) fail(`the chat template's rendering dropped ${ex.images.length - placed.length} ${IMAGE_MARKER} marker(s)`);

    let example: Example = { inputIds, labels, images: placed };
    if (inputIds.length > opts.seqLen) {
      const split = placed.find((p) => p.start < opts.seqLen && p.start + p.count > opts.seqLen);
      if (split) {
        fail(`--seq-len ${opts.seqLen} would cut image ${placed.indexOf(split) + 1}'s ${split.count} positions (they end at ${split.start + split.count}); raise --seq-len to at least ${inputIds.length}`);
      }
      example = { inputIds: inputIds.slice(0, opts.seqLen), labels: labels.slice(0, opts.seqLen), images: placed.filter((p) => p.start < opts.seqLen) };
      truncated++;
    }
    const trainable = trainableTokens(example);
    if (trainable === 0) fail(example.inputIds.length < inputIds.length ? `no assistant tokens left after truncation to --seq-len ${opts.seqLen}` : 'no trainable tokens');
    trainTokens += trainable;
    examples.push(example);
  }
  return { examples, form: source.form === 'llava' ? 'llava_conversations' : 'chat_images', truncated, trainTokens, images, source, imageLines };
}

/**
 * Whether a data file is image-text: LLaVA conversations, or messages with images (an "images" list or image
 * parts). Text files (and unreadable ones, left to the loader to report) are not.
 */
export async function isImageTextFile(file: string, field = 'data', name = file): Promise<boolean> {
  let text: string;
  try {
    text = await readDataText(file, field, name);
  } catch {
    return false;
  }
  let records;
  try {
    records = jsonRecords(text, () => {
      throw new Error('syntax');
    });
  } catch {
    return false;
  }
  return records.some(({ value }) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
    const o = value as Record<string, unknown>;
    if ('conversations' in o || 'image' in o || 'images' in o) return true;
    return Array.isArray(o.messages) && o.messages.some((m) => Array.isArray((m as { content?: unknown } | null)?.content));
  });
}
