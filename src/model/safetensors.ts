// The safetensors file format: strict parsing, deterministic writing, and float16/bfloat16 <-> float32 conversion.

import { ModelFileError, invalidArgument } from '../util/errors.js';

/** Tensor element types narrowtune reads and writes; anything else is rejected at load with the tensor named. */
export type Dtype = 'F32' | 'F16' | 'BF16';

export interface StoredTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Raw little-endian bytes as stored in the file; may alias the buffer the file was parsed from. */
  data: Uint8Array;
}

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = { F32: 4, F16: 2, BF16: 2 };

/** The u64 that prefixes every file with the JSON header's length. */
export const HEADER_LENGTH_BYTES = 8;
/** Same cap as the reference implementation: a header this large is garbage, not a model. */
export const MAX_HEADER_BYTES = 100_000_000;
/** The reference writer pads the header with spaces so the data buffer starts 8-byte aligned. */
const HEADER_ALIGNMENT = 8;
const SPACE = 0x20;
const METADATA_KEY = '__metadata__';
const DEFAULT_METADATA: Readonly<Record<string, string>> = { format: 'pt' };

export function isDtype(value: unknown): value is Dtype {
  return value === 'F32' || value === 'F16' || value === 'BF16';
}

/** Number of elements of a tensor with this shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function tensorByteLength(dtype: Dtype, shape: readonly number[]): number {
  return numel(shape) * DTYPE_BYTES[dtype];
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.join(',')}]`;
}

/** One tensor's header entry; offsets are relative to the start of the data buffer. */
export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Byte position of the data buffer in the file (8 + header length). */
  dataStart: number;
  entries: TensorEntry[];
  metadata: Record<string, string>;
}

function failure(file: string, problem: string): ModelFileError {
  return new ModelFileError(file, `not a valid safetensors file: ${problem}`);
}

/**
 * Validates the 8-byte header-length prefix against the file's total length and returns the JSON header's length.
 * `prefix` holds the file's first bytes (at least 8 when the file has them).
 */
export function readHeaderLength(prefix: Uint8Array, fileLength: number, file: string): number {
  if (fileLength < HEADER_LENGTH_BYTES || prefix.length < HEADER_LENGTH_BYTES) {
    throw failure(file, `file is ${fileLength} bytes, shorter than the ${HEADER_LENGTH_BYTES}-byte header length (truncated)`);
  }
  const headerLen = new DataView(prefix.buffer, prefix.byteOffset, HEADER_LENGTH_BYTES).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw failure(file, `header length ${headerLen} is absurd (more than ${MAX_HEADER_BYTES} bytes); the file is corrupt`);
  }
  const n = Number(headerLen);
  if (HEADER_LENGTH_BYTES + n > fileLength) {
    throw failure(file, `header length ${n} runs past the end of the file (${fileLength} bytes): truncated`);
  }
  return n;
}

/** Validates the JSON header (the `n` bytes after the prefix) against a file of `fileLength` bytes. */
export function parseHeaderJson(json: Uint8Array, fileLength: number, file: string): SafetensorsHeader {
  const fail = (problem: string): ModelFileError => failure(file, problem);
  const dataStart = HEADER_LENGTH_BYTES + json.length;
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    throw fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) throw fail('header is not a JSON object');

  const bufferLen = fileLength - dataStart;
  const entries: TensorEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw fail(`"${METADATA_KEY}" must be an object of strings`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const where = `tensor "${name}"`;
    if (!isPlainObject(entry)) throw fail(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (dtype === undefined) throw fail(`${where}: missing dtype`);
    if (shape === undefined) throw fail(`${where}: missing shape`);
    if (offsets === undefined) throw fail(`${where}: missing data_offsets`);
    if (typeof dtype !== 'string') throw fail(`${where}: dtype is not a string`);
    if (!isDtype(dtype)) {
      throw new ModelFileError(file, `${where} has dtype ${dtype}; narrowtune reads only F32, F16 and BF16 tensors`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw fail(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw fail(`${where}: data_offsets must be two non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw fail(`${where}: data_offsets [${begin},${end}] end before they begin`);
    if (end > bufferLen) {
      throw fail(`${where}: data_offsets [${begin},${end}] run past the ${bufferLen}-byte data buffer (truncated or offsets lie)`);
    }
    const expected = tensorByteLength(dtype, shape as number[]);
    if (end - begin !== expected) {
      throw fail(
        `${where}: shape/dtype mismatch: ${dtype} ${fmtShape(shape)} needs ${expected} bytes but data_offsets span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // Gaps and trailing bytes are harmless to a reader, so only overlaps (two tensors sharing bytes) are rejected.
  const ranges = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1];
    const cur = ranges[i];
    if (cur.begin < prev.end) {
      throw fail(
        `tensors "${prev.name}" [${prev.begin},${prev.end}] and "${cur.name}" [${cur.begin},${cur.end}] have overlapping data_offsets`,
      );
    }
  }
  return { dataStart, entries, metadata };
}

/** The validated header of a whole in-memory file (files too large for memory: readSafetensorsFile). */
export function parseSafetensorsHeader(bytes: Uint8Array, file: string): SafetensorsHeader {
  const n = readHeaderLength(bytes, bytes.length, file);
  return parseHeaderJson(bytes.subarray(HEADER_LENGTH_BYTES, HEADER_LENGTH_BYTES + n), bytes.length, file);
}

/** Parses and validates a whole in-memory safetensors file; returned `data` views alias `bytes`. */
export function parseSafetensors(bytes: Uint8Array, file: string): StoredTensor[] {
  const { dataStart, entries } = parseSafetensorsHeader(bytes, file);
  return entries.map(({ name, dtype, shape, begin, end }) => ({
    name,
    dtype,
    shape,
    data: bytes.subarray(dataStart + begin, dataStart + end),
  }));
}

/** Reads `__metadata__` from an in-memory file (an empty object when absent). */
export function readSafetensorsMetadata(bytes: Uint8Array, file: string): Record<string, string> {
  return parseSafetensorsHeader(bytes, file).metadata;
}

/**
 * The file's first bytes (length prefix + space-padded JSON header) for `tensors`, which are returned in file order
 * (sorted by name) so equal inputs give byte-identical files. The data follows as the tensors' bytes concatenated.
 */
export function serializeSafetensorsHeader(
  tensors: readonly StoredTensor[],
  metadata: Record<string, string> = { ...DEFAULT_METADATA },
): { header: Uint8Array; ordered: StoredTensor[]; dataLength: number } {
  const ordered = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const json: Record<string, unknown> = { [METADATA_KEY]: metadata };
  let offset = 0;
  for (let i = 0; i < ordered.length; i++) {
    const t = ordered[i];
    if (t.name === METADATA_KEY) throw invalidArgument('tensors', `"${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (i > 0 && ordered[i - 1].name === t.name) throw invalidArgument('tensors', `duplicate tensor name "${t.name}"`);
    if (!isDtype(t.dtype)) throw invalidArgument('tensors', `tensor "${t.name}" has unsupported dtype ${String(t.dtype)}`);
    if (!t.shape.every(isNonNegativeInteger)) {
      throw invalidArgument('tensors', `tensor "${t.name}" has invalid shape ${fmtShape(t.shape)}`);
    }
    const expected = tensorByteLength(t.dtype, t.shape);
    if (t.data.length !== expected) {
      throw invalidArgument(
        'tensors',
        `tensor "${t.name}": ${t.dtype} ${fmtShape(t.shape)} needs ${expected} bytes but has ${t.data.length}`,
      );
    }
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(text.length / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;
  const header = new Uint8Array(HEADER_LENGTH_BYTES + padded);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, HEADER_LENGTH_BYTES);
  header.fill(SPACE, HEADER_LENGTH_BYTES + text.length);
  return { header, ordered, dataLength: offset };
}

/** Serialises tensors into one in-memory file (limited to 4 GiB by typed arrays; see writeSafetensorsFile). */
export function serializeSafetensors(tensors: StoredTensor[], metadata?: Record<string, string>): Uint8Array {
  const { header, ordered, dataLength } = serializeSafetensorsHeader(tensors, metadata);
  const out = new Uint8Array(header.length + dataLength);
  out.set(header);
  let pos = header.length;
  for (const t of ordered) {
    out.set(t.data, pos);
    pos += t.data.length;
  }
  return out;
}

// ---- float conversion ----

// Typed arrays use host byte order; safetensors is little-endian, so big-endian hosts take the slow DataView path.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const F32_EXP_SHIFT = 23;
const F32_EXP_MASK = 0xff;
const F32_EXP_BIAS = 127;
const F32_MANT_MASK = 0x7fffff;
const F32_IMPLICIT_ONE = 0x800000;
const F32_INF_BITS = 0x7f800000;
const F16_EXP_SHIFT = 10;
const F16_EXP_MASK = 0x1f;
const F16_EXP_BIAS = 15;
const F16_EXP_MAX = 31;
const F16_MANT_MASK = 0x3ff;
const F16_INF = 0x7c00;
const F16_QUIET_BIT = 0x200;
/** f32 mantissa bits dropped when narrowing to f16's 10 mantissa bits. */
const F16_MANT_DROP = F32_EXP_SHIFT - F16_EXP_SHIFT;
/** Smallest f16 subnormal is 2^-24: the unit of the subnormal mantissa. */
const F16_SUBNORMAL_UNIT = 2 ** -24;
/** Below this biased f16 exponent the value is under half the smallest subnormal and rounds to zero. */
const F16_MIN_ROUNDABLE_EXP = -10;
const SIGN_SHIFT_16 = 16;
const F16_SIGN = 0x8000;
const BF16_QUIET_NAN = 0x7fc0;
const BF16_HALF_ULP_MINUS_ONE = 0x7fff;
const HALF_VALUES = 1 << 16;

let f16Table: Float32Array | null = null;

/** All 65536 half values as float32, built once; exact because every f16 is representable in f32. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(HALF_VALUES);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < HALF_VALUES; h++) {
    const sign = (h & F16_SIGN) << SIGN_SHIFT_16;
    const exp = (h >>> F16_EXP_SHIFT) & F16_EXP_MASK;
    const mant = h & F16_MANT_MASK;
    if (exp === 0) {
      table[h] = (sign ? -1 : 1) * mant * F16_SUBNORMAL_UNIT;
    } else if (exp === F16_EXP_MAX) {
      bits[h] = (sign | F32_INF_BITS | (mant << F16_MANT_DROP)) >>> 0; // keeps the NaN payload
    } else {
      bits[h] = (sign | ((exp - F16_EXP_BIAS + F32_EXP_BIAS) << F32_EXP_SHIFT) | (mant << F16_MANT_DROP)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** float32 bit pattern -> float16 bits, rounding to nearest even; overflow gives ±Inf, NaN stays NaN. */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> SIGN_SHIFT_16) & F16_SIGN;
  const exp = (x >>> F32_EXP_SHIFT) & F32_EXP_MASK;
  const mant = x & F32_MANT_MASK;
  if (exp === F32_EXP_MASK) return sign | F16_INF | (mant ? F16_QUIET_BIT | (mant >>> F16_MANT_DROP) : 0);
  const e = exp - F32_EXP_BIAS + F16_EXP_BIAS;
  if (e >= F16_EXP_MAX) return sign | F16_INF;
  if (e <= 0) {
    if (e < F16_MIN_ROUNDABLE_EXP) return sign;
    const m = mant | F32_IMPLICIT_ONE;
    const shift = F16_MANT_DROP + 1 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++; // a carry into bit 10 correctly yields the smallest normal
    return sign | h;
  }
  let h = (e << F16_EXP_SHIFT) | (mant >>> F16_MANT_DROP);
  const rem = mant & ((1 << F16_MANT_DROP) - 1);
  const half = 1 << (F16_MANT_DROP - 1);
  if (rem > half || (rem === half && h & 1)) h++; // a carry may ripple into the exponent, up to Inf: correct
  return sign | h;
}

/** float32 bit pattern -> bfloat16 bits, rounding to nearest even; NaN becomes the canonical quiet NaN. */
export function f32BitsToBf16(x: number): number {
  if ((x & F32_INF_BITS) === F32_INF_BITS && x & F32_MANT_MASK) return ((x >>> SIGN_SHIFT_16) & F16_SIGN) | BF16_QUIET_NAN;
  // With NaNs gone the sum stays below 2^32 (-Inf is the largest pattern left), so the shift cannot wrap.
  return ((x >>> 0) + BF16_HALF_ULP_MINUS_ONE + ((x >>> SIGN_SHIFT_16) & 1)) >>> SIGN_SHIFT_16;
}

function readU16(data: Uint8Array): Uint16Array {
  if (LITTLE_ENDIAN_HOST && data.byteOffset % DTYPE_BYTES.F16 === 0) {
    return new Uint16Array(data.buffer, data.byteOffset, data.length / DTYPE_BYTES.F16);
  }
  const out = new Uint16Array(data.length / DTYPE_BYTES.F16);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(i * DTYPE_BYTES.F16, true);
  return out;
}

/**
 * A read-only float32 view of an F32 tensor's bytes when they are aligned (no copy: for a 0.5B model
 * that is 1.9 GB less), else a decoded copy. Callers must not write into the result.
 */
export function viewFloat32(t: StoredTensor): Float32Array {
  if (t.dtype === 'F32' && LITTLE_ENDIAN_HOST && t.data.byteOffset % 4 === 0) {
    return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  }
  return toFloat32(t);
}

/** Decodes a tensor to a fresh Float32Array (a copy even for F32, so callers may mutate it). */
export function toFloat32(t: StoredTensor): Float32Array {
  const n = t.data.length / DTYPE_BYTES[t.dtype];
  if (!Number.isInteger(n)) {
    throw invalidArgument('tensor', `"${t.name}" has ${t.data.length} bytes, not a whole number of ${t.dtype} values`);
  }
  switch (t.dtype) {
    case 'F32': {
      // Copy through a fresh Uint8Array: a Node Buffer's slice() is a view into a shared pool, not a copy.
      if (LITTLE_ENDIAN_HOST) return new Float32Array(new Uint8Array(t.data).buffer);
      const out = new Float32Array(n);
      const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * DTYPE_BYTES.F32, true);
      return out;
    }
    case 'F16': {
      const table = halfTable();
      const src = readU16(t.data);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]];
      return out;
    }
    case 'BF16': {
      const src = readU16(t.data);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << SIGN_SHIFT_16;
      return out;
    }
    default:
      throw invalidArgument('tensor', `"${t.name}" has unsupported dtype ${String(t.dtype)}`);
  }
}

/** Encodes float32 values as little-endian bytes of `dtype` (round to nearest even when narrowing). */
export function fromFloat32(values: Float32Array, dtype: Dtype): Uint8Array {
  const n = values.length;
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN_HOST) return new Uint8Array(values.slice().buffer);
    const out = new Uint8Array(n * DTYPE_BYTES.F32);
    const view = new DataView(out.buffer);
    for (let i = 0; i < n; i++) view.setFloat32(i * DTYPE_BYTES.F32, values[i], true);
    return out;
  }
  if (dtype !== 'F16' && dtype !== 'BF16') throw invalidArgument('dtype', `unsupported dtype ${String(dtype)}`);
  const convert = dtype === 'F16' ? f32BitsToF16 : f32BitsToBf16;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const out = new Uint8Array(n * DTYPE_BYTES[dtype]);
  if (LITTLE_ENDIAN_HOST) {
    const dst = new Uint16Array(out.buffer);
    for (let i = 0; i < n; i++) dst[i] = convert(bits[i]);
  } else {
    const view = new DataView(out.buffer);
    for (let i = 0; i < n; i++) view.setUint16(i * DTYPE_BYTES[dtype], convert(bits[i]), true);
  }
  return out;
}
