// Safetensors files on disk, read and written tensor by tensor: shards routinely exceed what fs.readFile (2 GiB)
// or a single typed array (4 GiB) can hold, while single tensors stay far below that.

import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { ModelFileError } from '../util/errors.js';
import {
  HEADER_LENGTH_BYTES,
  parseHeaderJson,
  readHeaderLength,
  serializeSafetensorsHeader,
  type SafetensorsHeader,
  type StoredTensor,
} from './safetensors.js';

/** Bytes per read/write call; below the 2 GiB a single fs call may transfer. */
export const IO_CHUNK_BYTES = 1 << 30;

export interface SafetensorsIoOptions {
  /** Override the per-call transfer size (tests use tiny chunks to exercise the loops). */
  chunkBytes?: number;
}

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** Fills `buf` from `position`; a short file (changed or truncated under us) is an error, not a partial tensor. */
async function readFully(fh: FileHandle, buf: Uint8Array, position: number, file: string, chunk: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, Math.min(chunk, buf.length - done), position + done);
    if (bytesRead === 0) {
      throw new ModelFileError(file, `ended after ${position + done} bytes while reading tensor data (truncated while reading?)`);
    }
    done += bytesRead;
  }
}

async function writeFully(fh: FileHandle, buf: Uint8Array, chunk: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, Math.min(chunk, buf.length - done));
    done += bytesWritten;
  }
}

/**
 * Opens a safetensors file, reads and validates only its 8-byte length prefix and JSON header (against the file's
 * real size), and hands the open handle and header to `use`; the handle is closed afterwards.
 */
async function withValidatedHeader<T>(
  path: string,
  chunk: number,
  use: (fh: FileHandle, header: SafetensorsHeader) => Promise<T>,
): Promise<T> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (isNotFound(e)) throw new ModelFileError(path, 'file not found');
    throw new ModelFileError(path, `cannot be read (${(e as Error).message})`, { cause: e });
  }
  try {
    const size = (await fh.stat()).size;
    const prefix = new Uint8Array(Math.min(size, HEADER_LENGTH_BYTES));
    await readFully(fh, prefix, 0, path, chunk);
    const n = readHeaderLength(prefix, size, path);
    const json = new Uint8Array(n);
    await readFully(fh, json, HEADER_LENGTH_BYTES, path, chunk);
    return await use(fh, parseHeaderJson(json, size, path));
  } finally {
    await fh.close();
  }
}

/** Validates a safetensors file's header without reading any tensor data (cheap even for multi-GB files). */
export async function readSafetensorsFileHeader(path: string, opts: SafetensorsIoOptions = {}): Promise<SafetensorsHeader> {
  return withValidatedHeader(path, opts.chunkBytes ?? IO_CHUNK_BYTES, async (_fh, header) => header);
}

/** Reads and validates a safetensors file; each tensor gets its own (aligned) buffer. */
export async function readSafetensorsFile(path: string, opts: SafetensorsIoOptions = {}): Promise<StoredTensor[]> {
  const chunk = opts.chunkBytes ?? IO_CHUNK_BYTES;
  return withValidatedHeader(path, chunk, async (fh, { dataStart, entries }) => {
    const tensors: StoredTensor[] = [];
    for (const { name, dtype, shape, begin, end } of entries) {
      const data = new Uint8Array(end - begin);
      await readFully(fh, data, dataStart + begin, path, chunk);
      tensors.push({ name, dtype, shape, data });
    }
    return tensors;
  });
}

/** Bytes hashed per read in hashSafetensorsFile: one reused buffer bounds its memory whatever the tensor sizes. */
const HASH_CHUNK_BYTES = 64 << 20;

/**
 * sha256 of each tensor's bytes, keyed by the name in the file, read in bounded chunks: proving a written
 * checkpoint's tensors must not need a second copy of the model in memory.
 */
export async function hashSafetensorsFile(path: string, opts: SafetensorsIoOptions = {}): Promise<Map<string, string>> {
  const chunk = Math.min(opts.chunkBytes ?? IO_CHUNK_BYTES, HASH_CHUNK_BYTES);
  return withValidatedHeader(path, chunk, async (fh, { dataStart, entries }) => {
    const buf = new Uint8Array(Math.min(chunk, Math.max(1, ...entries.map((e) => e.end - e.begin))));
    const hashes = new Map<string, string>();
    for (const { name, begin, end } of entries) {
      const h = createHash('sha256');
      for (let at = begin; at < end; at += buf.length) {
        const view = buf.subarray(0, Math.min(buf.length, end - at));
        await readFully(fh, view, dataStart + at, path, chunk);
        h.update(view);
      }
      hashes.set(name, h.digest('hex'));
    }
    return hashes;
  });
}

/** Writes tensors as one safetensors file (same bytes as serializeSafetensors) and fsyncs it. */
export async function writeSafetensorsFile(
  path: string,
  tensors: readonly StoredTensor[],
  metadata?: Record<string, string>,
  opts: SafetensorsIoOptions = {},
): Promise<void> {
  const chunk = opts.chunkBytes ?? IO_CHUNK_BYTES;
  // Validate everything before creating the file.
  const { header, ordered } = serializeSafetensorsHeader(tensors, metadata);
  const fh = await open(path, 'w');
  try {
    await writeFully(fh, header, chunk);
    for (const t of ordered) await writeFully(fh, t.data, chunk);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
