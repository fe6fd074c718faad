// One image's features in the on-disk cache: `NTFEAT01`, a u32 header length, a JSON header (key, dtype, element
// count, byte order, sha256 of the data), zero padding to 8 bytes, then the floats as computed. A file is used only
// when every one of these checks out; anything else (truncated, edited, another key or dtype) reads as a miss.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import type { FloatArray } from '../runtime/session.js';

const MAGIC = Buffer.from('NTFEAT01', 'latin1');
const ALIGN = 8;

export type FeatureDtype = 'float32' | 'float64';

interface Header {
  key: string;
  dtype: FeatureDtype;
  length: number;
  endian: 'LE' | 'BE';
  sha256: string;
}

/** The cache file of `key` (a sha256 hex digest) in `dir`. */
export function featureFile(dir: string, key: string): string {
  return join(dir, `${key}.features`);
}

const bytesOf = (a: FloatArray) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Writes `data` as `key`'s file: to a temporary name, then renamed, so a reader never sees a partial file. */
export async function writeFeatureFile(dir: string, key: string, data: FloatArray): Promise<void> {
  const header: Header = {
    key,
    dtype: data instanceof Float64Array ? 'float64' : 'float32',
    length: data.length,
    endian: endianness(),
    sha256: createHash('sha256').update(bytesOf(data)).digest('hex'),
  };
  const json = Buffer.from(JSON.stringify(header));
  const head = MAGIC.length + 4 + json.length;
  const prefix = Buffer.alloc(Math.ceil(head / ALIGN) * ALIGN);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(json.length, MAGIC.length);
  json.copy(prefix, MAGIC.length + 4);
  await mkdir(dir, { recursive: true });
  const file = featureFile(dir, key);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, [prefix, bytesOf(data)]);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * `key`'s features from `dir`, or null when there is no file or it does not check out. Synchronous: the train and
 * score steps fill a micro-batch's image inputs from it. `checksum: false` skips hashing the data (about as long as
 * reading it): for a file this run has already verified, when magic, header and size still match.
 */
export function readFeatureFile(dir: string, key: string, dtype: FeatureDtype, checksum = true): FloatArray | null {
  let buf: Buffer;
  try {
    buf = readFileSync(featureFile(dir, key));
  } catch {
    return null;
  }
  if (buf.length < MAGIC.length + 4 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const jsonLength = buf.readUInt32LE(MAGIC.length);
  const offset = Math.ceil((MAGIC.length + 4 + jsonLength) / ALIGN) * ALIGN;
  let h: Partial<Header>;
  try {
    h = JSON.parse(buf.subarray(MAGIC.length + 4, MAGIC.length + 4 + jsonLength).toString('utf8')) as Partial<Header>;
  } catch {
    return null;
  }
  const Type = dtype === 'float64' ? Float64Array : Float32Array;
  if (h.key !== key || h.dtype !== dtype || h.endian !== endianness() || !Number.isSafeInteger(h.length)) return null;
  if (buf.length !== offset + h.length! * Type.BYTES_PER_ELEMENT) return null;
  const body = buf.subarray(offset);
  if (checksum && createHash('sha256').update(body).digest('hex') !== h.sha256) return null;
  // A view when aligned (large files own their buffer); small reads may sit unaligned in Node's pool.
  if (body.byteOffset % Type.BYTES_PER_ELEMENT === 0) return new Type(body.buffer as ArrayBuffer, body.byteOffset, h.length);
  const out = new Type(h.length!);
  new Uint8Array(out.buffer).set(body);
  return out;
}
