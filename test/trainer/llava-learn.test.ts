// A tiny LLaVA-OneVision learns to read synthetic images a person can read: the paper's PixmoCount (filled
// squares to count) and TimeClock (an analog clock's hour hand at 12, 3, 6 or 9) in miniature. The language model
// is tuned with mlp_gate_up on training images; CHOICE accuracy on held-out images (squares at other places, clock
// faces of other radii, hand widths and centres) goes from chance to above it. The drift probes, text prompts, run on
// the LLaVA model during the tune.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderChat } from '../../src/data/chat.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { evaluate, type EvaluateResult } from '../../src/eval/evaluate.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { readSafetensorsFile, readSafetensorsFileHeader, writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { DEFAULTS } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { Rng } from '../../src/util/rng.js';
import { tempDir } from './fixtures.js';

const SIZE = 32;
const PATCH_SCALE = 30;
const COUNT_QUESTION = '<image>\nHow many squares?';
const CLOCK_QUESTION = '<image>\nWhat hour does the clock show?';
const COUNTS = ['1', '2', '3', '4'];
const HOURS = ['12', '3', '6', '9'];

type Pixels = Uint8Array; // [SIZE, SIZE, 3], white background

const blank = (): Pixels => new Uint8Array(SIZE * SIZE * 3).fill(255);
function fillRect(p: Pixels, x0: number, y0: number, w: number, h: number, rgb: readonly number[]): void {
  for (let y = Math.max(0, y0); y < Math.min(SIZE, y0 + h); y++) {
    for (let x = Math.max(0, x0); x < Math.min(SIZE, x0 + w); x++) p.set(rgb, (y * SIZE + x) * 3);
  }
}
const png = (p: Pixels, file: string) => sharp(Buffer.from(p), { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(file);

/** `n` non-overlapping `side`-pixel squares at seeded places. */
function squares(n: number, side: number, rng: Rng): Pixels {
  const p = blank();
  const placed: [number, number][] = [];
  while (placed.length < n) {
    const [x, y] = [1 + rng.int(SIZE - side - 1), 1 + rng.int(SIZE - side - 1)];
    if (placed.some(([a, b]) => Math.abs(a - x) <= side + 1 && Math.abs(b - y) <= side + 1)) continue;
    placed.push([x, y]);
    fillRect(p, x, y, side, side, [200, 30, 30]);
  }
  return p;
}

/** A clock face (a grey ring) with a black hour hand from the centre towards `hour` (12, 3, 6, 9). */
function clock(hour: string, face: { radius: number; hand: number; width: number; dx: number; dy: number }): Pixels {
  const p = blank();
  const cx = SIZE / 2 + face.dx;
  const cy = SIZE / 2 + face.dy;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const r = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
      if (Math.abs(r - face.radius) < 1) p.set([120, 120, 120], (y * SIZE + x) * 3);
    }
  }
  const [ux, uy] = { '12': [0, -1], '3': [1, 0], '6': [0, 1], '9': [-1, 0] }[hour]!;
  const half = Math.floor(face.width / 2);
  const x0 = Math.round(cx) + Math.min(0, ux * face.hand) - (ux === 0 ? half : 0);
  const y0 = Math.round(cy) + Math.min(0, uy * face.hand) - (uy === 0 ? half : 0);
  fillRect(p, x0, y0, ux === 0 ? face.width : face.hand, uy === 0 ? face.width : face.hand, [0, 0, 0]);
  return p;
}

let dir: string;
let base: string;
let train: string;
let probe: string;
let countChoice: string;
let clockChoice: string;

/** Writes each image and returns the training conversations or CHOICE lines for it. */
async function makeSet(name: string, n: number, draw: (k: number) => { pixels: Pixels; answer: string }, line: (image: string, answer: string) => object): Promise<string[]> {
  const lines: string[] = [];
  for (let k = 0; k < n; k++) {
    const { pixels, answer } = draw(k);
    const image = `${name}-${k}.png`;
    await png(pixels, join(dir, image));
    lines.push(JSON.stringify(line(image, answer)));
  }
  return lines;
}

beforeAll(async () => {
  dir = await tempDir('nt-llava-learn-');
  base = join(dir, 'base');
  await initLlavaModel({ arch: 'llava-onevision', out: base, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 128, seed: 5 });
  // A trained tower's features carry the image; a random one's at init scale (0.02) vary by ~2% between these
  // images. Scaling its patch embedding makes them vary as much as they are large, standing in for training it.
  const weights = join(base, 'model.safetensors');
  const tensors = await readSafetensorsFile(weights);
  const patch = tensors.find((t) => t.name.endsWith('patch_embedding.weight'))!;
  new Float32Array(patch.data.buffer, patch.data.byteOffset, patch.data.byteLength / 4).forEach((x, i, a) => (a[i] = x * PATCH_SCALE));
  await writeSafetensorsFile(weights, tensors, (await readSafetensorsFileHeader(weights)).metadata);
  const tokenizer = await loadTokenizer(base);
  const rng = new Rng(11);
  const conversation = (question: string) => (image: string, answer: string) => ({
    image,
    conversations: [{ from: 'human', value: question }, { from: 'gpt', value: answer }],
  });
  // The CHOICE prompt is the conversation's user turn as the chat template renders it for the assistant's answer.
  const choice = (question: string, choices: string[]) => (image: string, answer: string) => ({
    image,
    prompt: renderChat(tokenizer, [{ role: 'user', content: question }], true),
    choices,
    answer,
  });
  // Training: squares of 5-8 pixels, clocks of radius 13-14 with 9-10 pixel hands, centred ±1 pixel.
  const trainFace = (k: number) => ({ radius: 13 + (k % 2), hand: 9 + ((k >> 1) % 2), width: 3, dx: (k % 3) - 1, dy: ((k >> 2) % 3) - 1 });
  const TRAIN_PER_CLASS = 16;
  const trainLines = [
    ...(await makeSet('count', 4 * TRAIN_PER_CLASS, (k) => ({ pixels: squares(1 + (k % 4), 5 + ((k >> 2) % 4), rng), answer: COUNTS[k % 4] }), conversation(COUNT_QUESTION))),
    ...(await makeSet('clock', 4 * TRAIN_PER_CLASS, (k) => ({ pixels: clock(HOURS[k % 4], trainFace(k >> 2)), answer: HOURS[k % 4] }), conversation(CLOCK_QUESTION))),
  ];
  train = join(dir, 'train.jsonl');
  await writeFile(train, `${trainLines.join('\n')}\n`);
  // Held out: squares at new places; clock faces of radius 10-12 with 8-pixel hands, 2 or 3 wide, shifted 1-2 pixels.
  const HELD_PER_CLASS = 10;
  countChoice = join(dir, 'count-choice.jsonl');
  const countLines = await makeSet('held-count', 4 * HELD_PER_CLASS, (k) => ({ pixels: squares(1 + (k % 4), 5 + ((k >> 2) % 4), rng), answer: COUNTS[k % 4] }), choice(COUNT_QUESTION, COUNTS));
  await writeFile(countChoice, `${countLines.join('\n')}\n`);
  clockChoice = join(dir, 'clock-choice.jsonl');
  const heldFace = (k: number) => ({ radius: 12 - (k >> 2), hand: 8, width: 2 + (k % 2), dx: k % 2 ? 2 : -2, dy: (k >> 1) % 2 ? 1 : -1 });
  const clockLines = await makeSet('held-clock', 4 * HELD_PER_CLASS, (k) => ({ pixels: clock(HOURS[k % 4], heldFace(k >> 2)), answer: HOURS[k % 4] }), choice(CLOCK_QUESTION, HOURS));
  await writeFile(clockChoice, `${clockLines.join('\n')}\n`);
  probe = join(dir, 'probe.jsonl');
  await writeFile(probe, ['1+1=2', '2+2=4', 'ten 10', 'six 6'].map((t) => JSON.stringify({ prompt: t.slice(0, -1), completion: t.slice(-1) })).join('\n') + '\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('a tiny LLaVA-OneVision learns to read synthetic images', () => {
  it('counting and the clock: held-out CHOICE accuracy rises from about chance; probes run on the LLaVA model', async () => {
    const out = join(dir, 'tuned');
    const probes: number[] = [];
    await tune(
      { ...DEFAULTS, model: base, data: train, out, policy: { preset: 'mlp_gate_up' }, lr: 3e-2, steps: 800, batchSize: 8, seqLen: 96, schedule: 'constant', warmupSteps: 0, probeData: probe, probeEvery: 400 },
      (e) => {
        if (e.type === 'probe') probes.push(e.heldoutLoss);
      },
    );
    // Drift probes are text prompts through the decoder alone: they ran, at steps 400 and 800, with finite figures.
    expect(probes.length).toBeGreaterThanOrEqual(2);
    expect(probes.every(Number.isFinite)).toBe(true);

    const datasets = [
      { name: 'count', path: countChoice, kind: 'choice' as const, role: 'target' as const, maxNewTokens: 1, answerRegex: '' },
      { name: 'clock', path: clockChoice, kind: 'choice' as const, role: 'target' as const, maxNewTokens: 1, answerRegex: '' },
    ];
    const result: EvaluateResult = await evaluate({ model: out, base, datasets, batchSize: 8, seqLen: 96, device: 'cpu' });
    const [count, clockScore] = result.datasets;
    expect(result.images).toEqual({ files: 80, visionRuns: 80 });
    // 40 held-out images per task, 4 balanced answers: chance is 0.25 (one binomial σ ≈ 0.07). Measured on a 2-core
    // machine: the untuned model 0.25 on both (it picks one answer); tuned, counting 0.5 and the clock 0.425.
    expect(count.base!.accuracy).toBeLessThanOrEqual(0.35);
    expect(clockScore.base!.accuracy).toBeLessThanOrEqual(0.35);
    expect(count.accuracy).toBeGreaterThanOrEqual(0.4);
    // The clock learns more weakly under mlp_gate_up within this budget (full with the embeddings reached 0.475).
    expect(clockScore.accuracy).toBeGreaterThanOrEqual(0.325);
    expect(result.deltaLearning!).toBeGreaterThan(0.1);
  }, 60_000);
});
