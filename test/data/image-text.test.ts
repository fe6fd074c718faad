// Image-text data files: both forms (LLaVA conversations as a JSON array or JSON Lines, messages with an images
// list), markers matched to images, paths that must stay inside the allowed directories, and errors that name
// the image and the data file's line.
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatSegments } from '../../src/data/chat.js';
import { decodeExampleImage, IMAGE_MARKER, leadingImageMarker, loadImageTextFile } from '../../src/data/image-text.js';
import { DataFileError } from '../../src/util/errors.js';

let root: string;
let data: string; // the data files' directory
let outside: string; // a sibling directory, not allowed unless passed as a root
let fileNo = 0;

async function png(file: string, width: number, height: number): Promise<void> {
  await sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .png()
    .toFile(file);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nt-image-text-'));
  data = join(root, 'data');
  outside = join(root, 'outside');
  await mkdir(join(data, 'img'), { recursive: true });
  await mkdir(outside);
  await png(join(data, 'img', 'three.png'), 30, 20);
  await png(join(data, 'img', 'clock.png'), 16, 16);
  await png(join(outside, 'secret.png'), 8, 8);
  await symlink(join(outside, 'secret.png'), join(data, 'img', 'escape.png'));
  await symlink(join(data, 'img', 'clock.png'), join(data, 'img', 'alias.png'));
  await writeFile(join(data, 'img', 'text.png'), 'not an image');
  const whole = await readFile(join(data, 'img', 'three.png'));
  await writeFile(join(data, 'img', 'cut.png'), whole.subarray(0, whole.length - 30));
});
afterAll(async () => rm(root, { recursive: true, force: true }));

async function write(text: string, ext = 'jsonl'): Promise<string> {
  const file = join(data, `d${fileNo++}.${ext}`);
  await writeFile(file, text);
  return file;
}
const jsonl = (...records: object[]) => write(records.map((r) => JSON.stringify(r)).join('\n'));
const llava = (image: unknown, human = '<image>\nHow many squares?') => ({
  ...(image === undefined ? {} : { image }),
  conversations: [
    { from: 'human', value: human },
    { from: 'gpt', value: 'Three.' },
  ],
});

async function failure(file: string, roots?: string[]): Promise<string> {
  const err = await loadImageTextFile(file, { roots }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(DataFileError);
  return (err as Error).message;
}

describe('LLaVA form', () => {
  it('reads a JSON array, each example with the line it starts on', async () => {
    const file = await write(
      JSON.stringify([llava('img/three.png'), llava(['img/three.png', 'img/clock.png'], 'Compare <image> and <image>.')], null, 2),
      'json',
    );
    const { form, examples } = await loadImageTextFile(file);
    expect(form).toBe('llava');
    expect(examples.map((e) => e.line)).toEqual([2, 15]);
    expect(examples[0].messages).toEqual([
      { role: 'user', content: '<image>\nHow many squares?' },
      { role: 'assistant', content: 'Three.' },
    ]);
    expect(examples[0].images).toEqual([{ given: 'img/three.png', path: join(data, 'img', 'three.png'), width: 30, height: 20 }]);
    expect(examples[1].markers).toEqual([
      { message: 0, offset: 8 },
      { message: 0, offset: 20 },
    ]);
    expect(examples[1].images.map((i) => [i.width, i.height])).toEqual([
      [30, 20],
      [16, 16],
    ]);
  });

  it('reads JSON Lines, text-only examples and system turns; the turns render with the chat template', async () => {
    const file = await jsonl(llava('img/three.png'), { conversations: [{ from: 'system', value: 'Be brief.' }, ...llava(undefined, 'Hi').conversations] });
    const { examples } = await loadImageTextFile(file);
    expect(examples.map((e) => [e.line, e.images.length, e.messages[0].role])).toEqual([
      [1, 1, 'user'],
      [2, 0, 'system'],
    ]);
    const segments = chatSegments({ chatTemplate: null, specialTokens: { eos_token: '</s>' } }, examples[0].messages);
    expect(segments).toEqual([
      { text: `user: ${IMAGE_MARKER}\nHow many squares?\nassistant: `, train: false },
      { text: 'Three.</s>\n', train: true },
    ]);
  });
});

describe("a turn's lone marker moves to the turn's start, as LLaVA-NeXT's preprocess_multimodal moves it", () => {
  it('the marker, a newline, then the rest stripped as Python strips; two markers or a leading one stay', () => {
    expect(leadingImageMarker('How many squares? <image>')).toBe('<image>\nHow many squares?');
    expect(leadingImageMarker('  Count them:\n<image>\n  ')).toBe('<image>\nCount them:');
    expect(leadingImageMarker('Look <image> here')).toBe('<image>\nLook  here');
    expect(leadingImageMarker(' <image> ')).toBe('<image>');
    // Python's str.strip() removes \x1c-\x1f and \x85 but not \ufeff, unlike String.prototype.trim().
    expect(leadingImageMarker('\x1fQ\x85 <image>\ufeff')).toBe('<image>\nQ\x85 \ufeff');
    expect(leadingImageMarker('\x1c\x85Q <image>')).toBe('<image>\nQ');
    for (const kept of ['<image>  lead ', 'A <image> and <image>', 'no marker ', ' <image>x<image>']) expect(leadingImageMarker(kept)).toBe(kept);
  });

  it('applies to every turn of the LLaVA form, and not to the messages form', async () => {
    const two = {
      image: ['img/three.png', 'img/clock.png'],
      conversations: [
        { from: 'human', value: 'How many squares? <image>' },
        { from: 'gpt', value: 'Three.' },
        { from: 'human', value: 'And the time?\n<image>' },
        { from: 'gpt', value: 'Noon.' },
      ],
    };
    const { examples } = await loadImageTextFile(await jsonl(two));
    expect(examples[0].messages.map((m) => m.content)).toEqual(['<image>\nHow many squares?', 'Three.', '<image>\nAnd the time?', 'Noon.']);
    expect(examples[0].markers).toEqual([
      { message: 0, offset: 0 },
      { message: 2, offset: 0 },
    ]);
    const messages = await loadImageTextFile(await jsonl({ images: ['img/three.png'], messages: [{ role: 'user', content: 'Count: <image>' }, { role: 'assistant', content: '3' }] }));
    expect(messages.examples[0].messages[0].content).toBe('Count: <image>');
  });
});

describe('messages form', () => {
  it('takes markers in text or image parts, a part followed by text getting a newline', async () => {
    const file = await jsonl(
      {
        images: ['img/clock.png'],
        messages: [
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What time is it?' }] },
          { role: 'assistant', content: [{ type: 'text', text: 'Ten past three.' }] },
        ],
      },
      { images: ['img/three.png'], messages: [{ role: 'user', content: 'Count: <image>' }, { role: 'assistant', content: '3' }] },
    );
    const { form, examples } = await loadImageTextFile(file);
    expect(form).toBe('messages');
    expect(examples[0].messages[0].content).toBe('<image>\nWhat time is it?');
    expect(examples[0].messages[1].content).toBe('Ten past three.');
    expect(examples[1].markers).toEqual([{ message: 0, offset: 7 }]);
  });
});

describe('errors name the file, the line and the image', () => {
  it('markers and images must match, and stay out of assistant turns', async () => {
    expect(await failure(await jsonl(llava(undefined, 'Hi'), llava(['img/three.png'], 'A <image> and <image>')))).toMatch(
      /d\d+\.jsonl:2: 2 <image> markers but 1 image; each image needs one marker where it goes$/,
    );
    expect(await failure(await jsonl(llava('img/three.png', 'no marker')))).toMatch(/:1: 0 <image> markers but 1 image/);
    const inAnswer = { image: 'img/three.png', conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: '<image>' }] };
    expect(await failure(await jsonl(inAnswer))).toMatch(/:1: <image> in an assistant message \(messages\[1\]\)/);
  });

  it('missing, undecodable and non-PNG/JPEG images', async () => {
    expect(await failure(await jsonl(llava(undefined, 'Hi'), llava('img/nope.png')))).toBe(
      `${data}/d${fileNo - 1}.jsonl:2: image "img/nope.png" (${join(data, 'img', 'nope.png')}): no such file`,
    );
    expect(await failure(await jsonl(llava('img/text.png')))).toMatch(/:1: image "img\/text.png" \(.*text\.png\): cannot decode/);
    // A truncated body passes the header check and fails when decoded, still naming the line.
    const file = await write(`\n${JSON.stringify(llava('img/cut.png'))}`);
    const loaded = await loadImageTextFile(file);
    const err = await decodeExampleImage(loaded, loaded.examples[0], 0, 'white').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataFileError);
    expect((err as Error).message).toMatch(new RegExp(`${file}:2: image "img/cut.png" \\(.*cut\\.png\\): cannot decode`));
  });

  it('paths stay inside the data directory or a given root: no "..", no escaping absolute paths or symlinks', async () => {
    expect(await failure(await jsonl(llava('../outside/secret.png')))).toMatch(/:1: image "..\/outside\/secret.png": ".." is not allowed in image paths/);
    expect(await failure(await jsonl(llava('img/../img/three.png')))).toMatch(/".." is not allowed/);
    expect(await failure(await jsonl(llava(join(outside, 'secret.png'))))).toMatch(/outside the allowed directories/);
    expect(await failure(await jsonl(llava('img/escape.png')))).toMatch(
      new RegExp(`:1: image "img/escape.png" \\(${join(outside, 'secret.png')}\\): outside the allowed directories \\(${data}\\)`),
    );
    // Inside after resolving: an absolute path into the data directory, a symlink within it, a root given.
    const ok = await jsonl(llava(join(data, 'img', 'three.png')), llava('img/alias.png'), llava('img/escape.png'));
    const { examples } = await loadImageTextFile(ok, { roots: [outside] });
    expect(examples.map((e) => e.images[0].path)).toEqual([join(data, 'img', 'three.png'), join(data, 'img', 'clock.png'), join(outside, 'secret.png')]);
  });

  it('malformed records', async () => {
    expect(await failure(await jsonl(llava('img/three.png'), { images: [], messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }] }))).toMatch(
      /:2: this example is in the messages form but line 1 is in the llava form; a file must use one form/,
    );
    expect(await failure(await jsonl({ conversations: [{ from: 'robot', value: 'x' }] }))).toMatch(/:1: conversations\[0\].from string "robot" is not one of human, user, gpt/);
    expect(await failure(await jsonl({ image: 3, conversations: [] }))).toMatch(/"conversations" must be a non-empty array/);
    expect(await failure(await jsonl(llava(['img/three.png', '']))))
      .toMatch(/"image"\[1\] must be a non-empty path, got string ""/);
    expect(await failure(await jsonl({ messages: [{ role: 'user', content: [{ type: 'video' }] }] }))).toMatch(
      /messages\[0\].content\[0\] must be \{"type": "image"\} or \{"type": "text", "text": "..."\}/,
    );
    expect(await failure(await jsonl({ conversations: [{ from: 'human', value: 'hi' }] }))).toMatch(/no assistant message/);
    expect(await failure(await write('[{"conversations": []},', 'json'))).toMatch(/d\d+\.json: the file starts with "\[", so it is read as one JSON array, and that is invalid JSON/);
    expect(await failure(await write(''))).toMatch(/no examples \(empty file\)/);
  });
});
