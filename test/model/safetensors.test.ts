// Tests for safetensors parsing/writing and float16/bfloat16 conversion.

import { describe, expect, it } from 'vitest';
import { ModelFileError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import {
  f32BitsToBf16,
  f32BitsToF16,
  fromFloat32,
  parseSafetensors,
  readSafetensorsMetadata,
  serializeSafetensors,
  toFloat32,
  type StoredTensor,
} from '../../src/model/safetensors.js';
import { MALFORMED_SAFETENSORS } from './helpers.js';

const FILE = 'shard-7.safetensors';

function f32Tensor(name: string, shape: number[], values: number[]): StoredTensor {
  return { name, dtype: 'F32', shape, data: fromFloat32(Float32Array.from(values), 'F32') };
}

function bitsOf(v: number): number {
  return new Uint32Array(Float32Array.of(v).buffer)[0];
}

function f16ToF32(h: number): number {
  return toFloat32({ name: 'h', dtype: 'F16', shape: [1], data: new Uint8Array(Uint16Array.of(h).buffer) })[0];
}

function bf16ToF32(h: number): number {
  return toFloat32({ name: 'h', dtype: 'BF16', shape: [1], data: new Uint8Array(Uint16Array.of(h).buffer) })[0];
}

function expectModelFileError(bytes: Uint8Array, problem: RegExp): void {
  let err: unknown;
  try {
    parseSafetensors(bytes, FILE);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelFileError);
  expect((err as Error).message).toContain(FILE);
  expect((err as Error).message).toMatch(problem);
}

describe('serializeSafetensors / parseSafetensors', () => {
  it('round-trips tensors of every dtype, including scalars and empty tensors', () => {
    const tensors: StoredTensor[] = [
      f32Tensor('z.last', [2, 2], [1, 2, 3, 4]),
      { name: 'a.half', dtype: 'F16', shape: [3], data: fromFloat32(Float32Array.of(1, -2, 0.5), 'F16') },
      { name: 'm.bf', dtype: 'BF16', shape: [1, 2], data: fromFloat32(Float32Array.of(3, 4), 'BF16') },
      f32Tensor('scalar', [], [7]),
      f32Tensor('empty', [0, 5], []),
    ];
    const bytes = serializeSafetensors(tensors);
    const parsed = parseSafetensors(bytes, FILE);
    expect(parsed.map((t) => t.name)).toEqual(['a.half', 'empty', 'm.bf', 'scalar', 'z.last']);
    const byName = new Map(parsed.map((t) => [t.name, t]));
    for (const t of tensors) {
      const p = byName.get(t.name)!;
      expect(p.dtype).toBe(t.dtype);
      expect(p.shape).toEqual(t.shape);
      expect([...p.data]).toEqual([...t.data]);
    }
    expect([...toFloat32(byName.get('a.half')!)]).toEqual([1, -2, 0.5]);
    expect([...toFloat32(byName.get('scalar')!)]).toEqual([7]);
    expect(readSafetensorsMetadata(bytes, FILE)).toEqual({ format: 'pt' });
  });

  it('writes the reference layout: metadata first, sorted names, space-padded 8-byte-aligned header', () => {
    const bytes = serializeSafetensors([f32Tensor('b', [1], [2]), f32Tensor('a', [2], [0, 1])], { format: 'pt', note: 'x' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(header.trimEnd()).toBe(
      '{"__metadata__":{"format":"pt","note":"x"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
        '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
    );
    expect(/^ *$/.test(header.slice(header.trimEnd().length))).toBe(true);
    expect(bytes.length).toBe(8 + n + 12);
  });

  it('is deterministic regardless of input order', () => {
    const a = [f32Tensor('x', [1], [1]), f32Tensor('y', [1], [2])];
    expect(serializeSafetensors(a)).toEqual(serializeSafetensors([...a].reverse()));
  });

  it('returns views into the input that are sliced exactly', () => {
    const bytes = serializeSafetensors([f32Tensor('a', [2], [1, 2]), f32Tensor('b', [3], [3, 4, 5])]);
    const [a, b] = parseSafetensors(bytes, FILE);
    expect(a.data.buffer).toBe(bytes.buffer);
    expect([...toFloat32(a)]).toEqual([1, 2]);
    expect([...toFloat32(b)]).toEqual([3, 4, 5]);
  });

  it('rejects duplicate names and data of the wrong length when writing', () => {
    expect(() => serializeSafetensors([f32Tensor('a', [1], [1]), f32Tensor('a', [1], [2])])).toThrow(/duplicate/);
    expect(() => serializeSafetensors([{ name: 'a', dtype: 'F32', shape: [2], data: new Uint8Array(4) }])).toThrow(/needs 8 bytes/);
  });
});

describe('parseSafetensors rejects malformed files with ModelFileError naming file and problem', () => {
  it.each(MALFORMED_SAFETENSORS)('$what', ({ bytes, problem }) => expectModelFileError(bytes, problem));

  it('never crashes with anything but ModelFileError on random corruption or truncation', () => {
    const rng = new Rng(1234, 0);
    const valid = serializeSafetensors([f32Tensor('a', [3], [1, 2, 3]), f32Tensor('b.c', [2, 2], [1, 2, 3, 4])]);
    for (let trial = 0; trial < 2000; trial++) {
      const bytes = valid.slice(0, trial % 3 === 0 ? rng.int(valid.length + 1) : valid.length);
      for (let k = rng.int(4); k > 0 && bytes.length > 0; k--) bytes[rng.int(bytes.length)] = rng.int(256);
      try {
        parseSafetensors(bytes, FILE);
      } catch (e) {
        expect(e).toBeInstanceOf(ModelFileError);
      }
    }
  });
});

describe('float16', () => {
  it('encodes known bit patterns with round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [0.1, 0x2e66],
      [65504, 0x7bff], // largest finite
      [65519, 0x7bff], // just below the rounding midpoint to Inf
      [65520, 0x7c00], // midpoint: rounds to even, which is Inf
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // exact half of it: ties to even (zero)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // 1.5 subnormal units: tie rounds to even (2)
      [2 ** -14 - 2 ** -25, 0x0400], // largest subnormal + half unit: ties up to the smallest normal
      [1 + 2 ** -11, 0x3c00], // tie between 1 and next: even is 1
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even is 0x3c02
      [-0, 0x8000],
      [1e-10, 0x0000],
    ];
    for (const [v, h] of cases) expect(f32BitsToF16(bitsOf(v)), `${v}`).toBe(h);
    expect(f32BitsToF16(bitsOf(NaN)) & 0x7c00).toBe(0x7c00);
    expect(f32BitsToF16(bitsOf(NaN)) & 0x3ff).not.toBe(0);
    expect(f32BitsToF16(0x7f800001) & 0x3ff).not.toBe(0); // a NaN whose payload is only in dropped bits stays NaN
  });

  it('decodes known bit patterns exactly', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x7c00)).toBe(Infinity);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(f16ToF32(0x7e00)).toBeNaN();
  });

  it('round-trips every non-NaN half value', () => {
    const all = new Uint16Array(1 << 16).map((_, i) => i);
    const f32 = toFloat32({ name: 'all', dtype: 'F16', shape: [all.length], data: new Uint8Array(all.buffer) });
    const back = new Uint16Array(fromFloat32(f32, 'F16').buffer);
    for (let h = 0; h < all.length; h++) {
      if (Number.isNaN(f32[h])) expect(Number.isNaN(f16ToF32(back[h]))).toBe(true);
      else if (back[h] !== h) expect.fail(`0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    }
  });

  it('rounds random floats to the nearest half (ties to even)', () => {
    const rng = new Rng(99, 0);
    for (let i = 0; i < 5000; i++) {
      const v = Math.fround((rng.next() - 0.5) * 2 ** (rng.int(50) - 30));
      const h = f32BitsToF16(bitsOf(v));
      const got = f16ToF32(h);
      if (!Number.isFinite(got)) {
        expect(Math.abs(v)).toBeGreaterThanOrEqual(65520);
        continue;
      }
      for (const n of [h - 1, h + 1]) {
        if ((n & 0x7fff) >= 0x7c00 || n < 0 || (n ^ h) & 0x8000) continue;
        const other = f16ToF32(n);
        const d = Math.abs(v - got) - Math.abs(v - other);
        expect(d <= 0, `${v} -> ${got}, but ${other} is closer`).toBe(true);
        if (d === 0) expect(h & 1).toBe(0);
      }
    }
  });
});

describe('bfloat16', () => {
  it('encodes known bit patterns with round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [0x3f800000, 0x3f80], // 1
      [0x3f808000, 0x3f80], // tie: even stays
      [0x3f818000, 0x3f82], // tie: odd rounds up
      [0x3f808001, 0x3f81], // above the tie
      [0x7f7fffff, 0x7f80], // max float rounds to Inf
      [0x7f800000, 0x7f80],
      [0xff800000, 0xff80],
      [0x00000001, 0x0000], // tiny subnormal
      [0x80000000, 0x8000],
      [0x7fc00000, 0x7fc0],
      [0x7f800001, 0x7fc0], // signalling NaN stays NaN
      [0xffc00001, 0xffc0],
    ];
    for (const [bits, h] of cases) expect(f32BitsToBf16(bits), bits.toString(16)).toBe(h);
  });

  it('round-trips every bf16 value and decodes exactly', () => {
    const all = new Uint16Array(1 << 16).map((_, i) => i);
    const f32 = toFloat32({ name: 'all', dtype: 'BF16', shape: [all.length], data: new Uint8Array(all.buffer) });
    expect(f32[0x3f80]).toBe(1);
    expect(f32[0xc000]).toBe(-2);
    const back = new Uint16Array(fromFloat32(f32, 'BF16').buffer);
    for (let h = 0; h < all.length; h++) {
      if (Number.isNaN(f32[h])) expect(Number.isNaN(bf16ToF32(back[h]))).toBe(true);
      else if (back[h] !== h) expect.fail(`0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    }
  });
});

describe('toFloat32 / fromFloat32', () => {
  it('F32 is a bit-exact copy, also from unaligned views', () => {
    const values = Float32Array.of(1.5, -0, NaN, Infinity, 3.4e38, 1e-45);
    const bytes = fromFloat32(values, 'F32');
    expect([...bytes]).toEqual([...new Uint8Array(values.buffer)]);
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes, 1);
    const out = toFloat32({ name: 'u', dtype: 'F32', shape: [6], data: padded.subarray(1) });
    expect([...new Uint8Array(out.buffer)]).toEqual([...bytes]);
  });

  it('reads F16/BF16 from odd byte offsets', () => {
    const half = fromFloat32(Float32Array.of(1, 2, -3), 'F16');
    const padded = new Uint8Array(half.length + 1);
    padded.set(half, 1);
    expect([...toFloat32({ name: 'u', dtype: 'F16', shape: [3], data: padded.subarray(1) })]).toEqual([1, 2, -3]);
    const bf = fromFloat32(Float32Array.of(1, 2, -3), 'BF16');
    padded.set(bf, 1);
    expect([...toFloat32({ name: 'u', dtype: 'BF16', shape: [3], data: padded.subarray(1) })]).toEqual([1, 2, -3]);
  });

  it('decodes tensors that are views into a pooled Node Buffer', () => {
    const file = Buffer.from(serializeSafetensors([f32Tensor('a', [2], [1, 2]), f32Tensor('b', [3], [3, 4, 5])]));
    const [, b] = parseSafetensors(file, FILE);
    expect([...toFloat32(b)]).toEqual([3, 4, 5]);
    const pooled = Buffer.from(fromFloat32(Float32Array.of(6, 7), 'F32')); // small Buffers share one pool
    expect([...toFloat32({ name: 'p', dtype: 'F32', shape: [2], data: pooled })]).toEqual([6, 7]);
  });

  it('returns a copy the caller may mutate', () => {
    const t = f32Tensor('a', [2], [1, 2]);
    toFloat32(t)[0] = 99;
    expect([...toFloat32(t)]).toEqual([1, 2]);
  });
});
