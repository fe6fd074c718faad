// Image-text data files: LLaVA's conversations and chat messages with an images list, read into chat turns
// (for the chat template) and the images each `<image>` marker stands for, resolved safely on disk.
//
// LLaVA form, one JSON array (LLaVA's .json) or JSON Lines:
//   {"image": "a.png" | ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image>\nHow many?"},
//    {"from": "gpt", "value": "Three."}]}       from: human | gpt | system (also user | assistant)
// messages form:
//   {"images": ["a.png"], "messages": [{"role": "user", "content": "<image>\nHow many?"}, {"role": "assistant",
//    "content": "Three."}]}
//   content may instead be a list of parts, [{"type": "image"}, {"type": "text", "text": "How many?"}]: each image
//   part becomes a marker, followed by "\n" when text comes next (LLaVA's "<image>\n" layout).
// The k-th marker in reading order is the k-th image; there must be exactly as many markers as images. In the LLaVA
// form a turn's lone marker moves to the turn's start, as LLaVA-NeXT's training code moves it (leadingImageMarker);
// elsewhere markers stay where they are written.

import { realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { DataFileError, quote } from '../util/errors.js';
import { CHAT_ROLES, type ChatMessage, type ChatRole } from './chat.js';
import { describeValue, readDataText } from './dataset.js';
import { decodeImage, ImageError, readImageSize, type ImagePreprocessing, type RgbImage } from './image.js';
import { jsonRecords } from './json-records.js';

export const IMAGE_MARKER = '<image>';

export type ImageTextForm = 'llava' | 'messages';

export interface ImageRef {
  /** as the data file writes it */
  given: string;
  /** the file, symlinks resolved */
  path: string;
  /** stored size in pixels (from the header) */
  width: number;
  height: number;
}

/** Where a marker sits: `messages[message].content`, at UTF-16 offset `offset`. */
export interface ImageMarker {
  message: number;
  offset: number;
}

export interface ImageTextExample {
  /** the data file's line the example starts on */
  line: number;
  /** with the markers left in the text as IMAGE_MARKER */
  messages: ChatMessage[];
  /** images[k] is what markers[k] stands for */
  images: ImageRef[];
  markers: ImageMarker[];
}

export interface ImageTextData {
  /** how errors name the data file */
  name: string;
  field: string;
  form: ImageTextForm;
  examples: ImageTextExample[];
}

export interface LoadImageTextOptions {
  /** name used in error violations (default data) */
  field?: string;
  /** how error messages name the file (default: its path) */
  name?: string;
  /** directories images may also lie in besides the data file's own (the service's data roots) */
  roots?: readonly string[];
}

const FORM_KEYS: Record<ImageTextForm, string> = {
  llava: '{"image"?, "conversations": [{"from", "value"}, ...]}',
  messages: '{"images"?, "messages": [{"role", "content"}, ...]}',
};
const LLAVA_ROLES: Record<string, ChatRole> = { human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', system: 'system' };

/**
 * Reads an image-text file: every line's turns and images, each image's path checked (inside the data file's
 * directory or a root, after symlinks; no `..`) and its header read. Failures name the file and line.
 */
export async function loadImageTextFile(file: string, opts: LoadImageTextOptions = {}): Promise<ImageTextData> {
  const field = opts.field ?? 'data';
  const name = opts.name ?? file;
  const text = await readDataText(file, field, name);
  const baseDir = dirname(resolve(file));
  const allowed = await Promise.all([baseDir, ...(opts.roots ?? [])].map((d) => realpath(d)));
  const records = jsonRecords(text, (line, problem) => {
    throw new DataFileError(name, line, problem, field);
  });
  if (records.length === 0) throw new DataFileError(name, null, `no examples (empty file); expected ${Object.values(FORM_KEYS).join(' or ')}`, field);

  let form: ImageTextForm | null = null;
  let formLine = 0;
  const examples: ImageTextExample[] = [];
  for (const { line, value } of records) {
    const fail = (problem: string): never => {
      throw new DataFileError(name, line, problem, field);
    };
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`expected a JSON object, got ${describeValue(value)}`);
    const obj = value as Record<string, unknown>;
    const lineForm = detectForm(obj, fail);
    if (form === null) [form, formLine] = [lineForm, line];
    else if (lineForm !== form) fail(`this example is in the ${lineForm} form but line ${formLine} is in the ${form} form; a file must use one form`);

    const { messages, given } = lineForm === 'llava' ? llavaRecord(obj, fail) : messagesRecord(obj, fail);
    const markers = findMarkers(messages);
    if (markers.length !== given.length) {
      fail(`${markers.length} ${IMAGE_MARKER} marker${markers.length === 1 ? '' : 's'} but ${given.length} image${given.length === 1 ? '' : 's'}; each image needs one marker where it goes`);
    }
    const assistantMarker = markers.find((m) => messages[m.message].role === 'assistant');
    if (assistantMarker) fail(`${IMAGE_MARKER} in an assistant message (messages[${assistantMarker.message}]); images go in user or system turns`);
    if (!messages.some((m) => m.role === 'assistant')) fail('no assistant message (nothing to train on)');
    const images: ImageRef[] = [];
    for (const g of given) images.push(await resolveImage(g, allowed, fail));
    examples.push({ line, messages, images, markers });
  }
  return { name, field, form: form!, examples };
}

/**
 * Resolves image paths of `file` as loadImageTextFile does (relative to its directory, inside it or a root after
 * symlinks, no `..`), for other files that name images (evaluation sets).
 */
export async function imageResolver(file: string, roots: readonly string[] = []): Promise<(given: string, fail: (problem: string) => never) => Promise<ImageRef>> {
  const baseDir = dirname(resolve(file));
  const allowed = await Promise.all([baseDir, ...roots].map((d) => realpath(d)));
  return (given, fail) => resolveImage(given, allowed, fail);
}

/** Decodes an example's k-th image; a failure names the image and the data file's line. */
export async function decodeExampleImage(data: ImageTextData, example: ImageTextExample, k: number, alpha: ImagePreprocessing['alpha']): Promise<RgbImage> {
  const ref = example.images[k];
  try {
    return await decodeImage(ref.path, alpha);
  } catch (err) {
    if (err instanceof ImageError) throw new DataFileError(data.name, example.line, imageProblem(ref.given, ref.path, err.problem), data.field);
    throw err;
  }
}

function detectForm(obj: Record<string, unknown>, fail: (problem: string) => never): ImageTextForm {
  const llava = 'conversations' in obj;
  const messages = 'messages' in obj;
  if (llava && messages) fail(`ambiguous form: has keys of both ${FORM_KEYS.llava} and ${FORM_KEYS.messages}`);
  if (!llava && !messages) {
    const keys = Object.keys(obj).map((k) => JSON.stringify(k));
    fail(`unknown form (keys: ${keys.length ? keys.join(', ') : 'none'}); accepted forms: ${FORM_KEYS.llava}, ${FORM_KEYS.messages}`);
  }
  return llava ? 'llava' : 'messages';
}

/** An `image` (a path or list, when `single`) or `images` value as a list of paths; [] when absent. */
export function imageList(value: unknown, key: string, single: boolean, fail: (problem: string) => never): string[] {
  if (value === undefined) return [];
  const list = single && typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) fail(`"${key}" must be ${single ? 'a path or ' : ''}a list of paths, got ${describeValue(value)}`);
  return (list as unknown[]).map((p, k) => {
    if (typeof p !== 'string' || p === '') fail(`"${key}"${Array.isArray(value) ? `[${k}]` : ''} must be a non-empty path, got ${describeValue(p)}`);
    return p as string;
  });
}

function llavaRecord(obj: Record<string, unknown>, fail: (problem: string) => never): { messages: ChatMessage[]; given: string[] } {
  const turns = obj.conversations;
  if (!Array.isArray(turns) || turns.length === 0) fail(`"conversations" must be a non-empty array, got ${describeValue(turns)}`);
  const messages = (turns as unknown[]).map((t, k): ChatMessage => {
    const where = `conversations[${k}]`;
    if (typeof t !== 'object' || t === null || Array.isArray(t)) fail(`${where} must be an object, got ${describeValue(t)}`);
    const { from, value } = t as Record<string, unknown>;
    const role = typeof from === 'string' ? LLAVA_ROLES[from] : undefined;
    if (!role) fail(`${where}.from ${describeValue(from)} is not one of ${Object.keys(LLAVA_ROLES).join(', ')}`);
    if (typeof value !== 'string') fail(`${where}.value must be a string, got ${describeValue(value)}`);
    return { role: role!, content: leadingImageMarker(value as string) };
  });
  return { messages, given: imageList(obj.image, 'image', true, fail) };
}

/** What Python's str.strip() removes (str.isspace): JS trim() differs in \x1c-\x1f, \x85 and \ufeff. */
const PY_SPACE = '\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000';
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/**
 * LLaVA-NeXT's preprocess_multimodal (llava/train/train.py, which LMM_CL trains with) on one turn of the
 * conversations form: a turn holding exactly one marker that does not open it becomes the marker, "\n", and the
 * rest of the turn without the marker, stripped of surrounding whitespace. Turns with two or more markers, and
 * turns that start with one, are left as written. The messages form never passes through that function, and
 * transformers' processors keep markers in place, so it is not changed there.
 */
export function leadingImageMarker(value: string): string {
  if (value.split(IMAGE_MARKER).length !== 2 || value.startsWith(IMAGE_MARKER)) return value;
  return pyStrip(`${IMAGE_MARKER}\n${pyStrip(value.replace(IMAGE_MARKER, ''))}`);
}

function messagesRecord(obj: Record<string, unknown>, fail: (problem: string) => never): { messages: ChatMessage[]; given: string[] } {
  const raw = obj.messages;
  if (!Array.isArray(raw) || raw.length === 0) fail(`"messages" must be a non-empty array, got ${describeValue(raw)}`);
  const messages = (raw as unknown[]).map((m, k): ChatMessage => {
    const where = `messages[${k}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail(`${where} must be an object, got ${describeValue(m)}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || !CHAT_ROLES.includes(role as ChatRole)) fail(`${where}.role ${describeValue(role)} is not one of ${CHAT_ROLES.join(', ')}`);
    return { role: role as ChatRole, content: contentText(content, where, fail) };
  });
  return { messages, given: imageList(obj.images, 'images', false, fail) };
}

/** A message's content as text: a string as is, or its parts joined with an image part as the marker. */
function contentText(content: unknown, where: string, fail: (problem: string) => never): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) fail(`${where}.content must be a string or a list of parts, got ${describeValue(content)}`);
  let text = '';
  (content as unknown[]).forEach((part, k) => {
    const at = `${where}.content[${k}]`;
    const { type, text: partText } = (typeof part === 'object' && part !== null ? part : {}) as Record<string, unknown>;
    if (type === 'image') text += IMAGE_MARKER;
    else if (type === 'text' && typeof partText === 'string') text += (text.endsWith(IMAGE_MARKER) ? '\n' : '') + partText;
    else fail(`${at} must be {"type": "image"} or {"type": "text", "text": "..."}, got ${part !== null && typeof part === 'object' ? JSON.stringify(part).slice(0, 60) : describeValue(part)}`);
  });
  return text;
}

function findMarkers(messages: ChatMessage[]): ImageMarker[] {
  const markers: ImageMarker[] = [];
  messages.forEach((m, message) => {
    for (let offset = m.content.indexOf(IMAGE_MARKER); offset >= 0; offset = m.content.indexOf(IMAGE_MARKER, offset + IMAGE_MARKER.length)) {
      markers.push({ message, offset });
    }
  });
  return markers;
}

/** The image's real path, if it stays inside an allowed directory (allowed[0]: the data file's), and its size. */
async function resolveImage(given: string, allowed: string[], fail: (problem: string) => never): Promise<ImageRef> {
  if (given.includes('\0')) fail(`image ${quote(given)}: a path may not contain NUL`);
  if (given.split(/[\\/]/).includes('..')) fail(`image ${quote(given)}: ".." is not allowed in image paths`);
  // Without `..`, a relative path is inside the data file's directory as written.
  const joined = isAbsolute(given) ? resolve(given) : resolve(allowed[0], given);
  const within = (p: string) => allowed.some((root) => p === root || p.startsWith(root.endsWith(sep) ? root : root + sep));
  // Checked as written before the file system is asked (as the service checks every path), so that the answer for
  // a path outside does not tell whether a file exists there.
  const outside = (p: string) => fail(imageProblem(given, p, `outside the allowed directories (${[...new Set(allowed)].join(', ')})`));
  if (!within(joined)) outside(joined);
  let path: string;
  try {
    path = await realpath(joined);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(imageProblem(given, joined, code === 'ENOENT' ? 'no such file' : `cannot read: ${(err as Error).message}`));
  }
  if (!within(path)) outside(path);
  if (!(await stat(path)).isFile()) fail(imageProblem(given, path, 'not a file'));
  try {
    return { given, path, ...(await readImageSize(path)) };
  } catch (err) {
    if (err instanceof ImageError) return fail(imageProblem(given, path, err.problem));
    throw err;
  }
}

function imageProblem(given: string, path: string, problem: string): string {
  return `image ${quote(given)}${path === given ? '' : ` (${path})`}: ${problem}`;
}
