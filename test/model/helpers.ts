// Test helpers for the model module: hand-built (and malformed) safetensors bytes and throwaway directories.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { fromFloat32, serializeSafetensors } from '../../src/model/safetensors.js';

/** A safetensors file from an arbitrary header object (or raw header text) and data buffer, with no validation. */
export function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0), headerLenOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

export interface MalformedSafetensors {
  what: string;
  bytes: Uint8Array;
  /** What the error message must match (it must also name the file). */
  problem: RegExp;
}

const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

function notUtf8(): Uint8Array {
  const bytes = rawSafetensors('{"a":1}');
  bytes[9] = 0xff;
  return bytes;
}

function truncatedCopy(): Uint8Array {
  const bytes = serializeSafetensors([{ name: 'a', dtype: 'F32', shape: [4], data: fromFloat32(Float32Array.of(1, 2, 3, 4), 'F32') }]);
  return bytes.subarray(0, bytes.length - 1);
}

/** One file per way a safetensors file can be broken; every reader (in memory, from disk, header only) must reject each. */
export const MALFORMED_SAFETENSORS: readonly MalformedSafetensors[] = [
  { what: 'file shorter than the header length', bytes: new Uint8Array(5), problem: /5 bytes.*truncated/ },
  {
    what: 'header length beyond the end of the file',
    bytes: rawSafetensors({}, new Uint8Array(0), 1000n),
    problem: /header length 1000 runs past the end.*truncated/,
  },
  { what: 'absurd header length', bytes: rawSafetensors({}, new Uint8Array(0), 1n << 62n), problem: /absurd/ },
  { what: 'header that is not JSON', bytes: rawSafetensors('{"a": [1,'), problem: /not valid JSON/ },
  { what: 'header that is not UTF-8', bytes: notUtf8(), problem: /not valid JSON/ },
  { what: 'header that is not an object', bytes: rawSafetensors('[1,2]'), problem: /not a JSON object/ },
  { what: 'entry missing dtype', bytes: rawSafetensors({ a: { shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), problem: /"a": missing dtype/ },
  { what: 'entry missing shape', bytes: rawSafetensors({ a: { dtype: 'F32', data_offsets: [0, 8] } }, new Uint8Array(8)), problem: /missing shape/ },
  { what: 'entry missing data_offsets', bytes: rawSafetensors({ a: { dtype: 'F32', shape: [2] } }, new Uint8Array(8)), problem: /missing data_offsets/ },
  {
    what: 'negative shape',
    bytes: rawSafetensors({ a: { ...ok, shape: [-2] } }, new Uint8Array(8)),
    problem: /shape must be .*non-negative integers/,
  },
  { what: 'fractional shape', bytes: rawSafetensors({ a: { ...ok, shape: [1.5] } }, new Uint8Array(8)), problem: /shape must be/ },
  { what: 'offsets that are not integers', bytes: rawSafetensors({ a: { ...ok, data_offsets: [0, 'x'] } }, new Uint8Array(8)), problem: /data_offsets must be/ },
  { what: 'offsets that end before they begin', bytes: rawSafetensors({ a: { ...ok, data_offsets: [8, 0] } }, new Uint8Array(8)), problem: /end before they begin/ },
  { what: 'offsets beyond the data buffer', bytes: rawSafetensors({ a: ok }, new Uint8Array(4)), problem: /truncated or offsets lie/ },
  {
    what: 'byte length that does not match shape and dtype',
    bytes: rawSafetensors({ a: { ...ok, shape: [3] } }, new Uint8Array(8)),
    problem: /shape\/dtype mismatch.*needs 12 bytes/,
  },
  {
    what: 'overlapping tensors',
    bytes: rawSafetensors({ a: { ...ok, data_offsets: [0, 8] }, b: { ...ok, data_offsets: [4, 12] } }, new Uint8Array(12)),
    problem: /"a" \[0,8\] and "b" \[4,12\] have overlapping/,
  },
  {
    what: 'dtypes that cannot be converted to float32, naming the tensor',
    bytes: rawSafetensors({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
    problem: /"ids" has dtype I64/,
  },
  { what: 'a truncated copy of a valid file', bytes: truncatedCopy(), problem: /truncated or offsets lie/ },
];

/** Creates temp dirs that are removed after each test. */
export function useTempDirs(): () => Promise<string> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  return async () => {
    const d = await mkdtemp(join(tmpdir(), 'narrowtune-model-'));
    dirs.push(d);
    return d;
  };
}
