// Tests for reading and writing safetensors files tensor by tensor.

import { createHash } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelFileError } from '../../src/util/errors.js';
import { hashSafetensorsFile, readSafetensorsFile, readSafetensorsFileHeader, writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { fromFloat32, serializeSafetensors, toFloat32, type StoredTensor } from '../../src/model/safetensors.js';
import { MALFORMED_SAFETENSORS, rawSafetensors, useTempDirs } from './helpers.js';

const tempDir = useTempDirs();

const tensors: StoredTensor[] = [
  { name: 'b', dtype: 'F32', shape: [3], data: fromFloat32(Float32Array.of(1, 2, 3), 'F32') },
  { name: 'a', dtype: 'BF16', shape: [2, 2], data: fromFloat32(Float32Array.of(-1, 0.5, 4, 8), 'BF16') },
  { name: 'c', dtype: 'F16', shape: [0], data: new Uint8Array(0) },
];

async function readError(path: string): Promise<Error> {
  const e = await readSafetensorsFile(path).catch((err: unknown) => err);
  expect(e).toBeInstanceOf(ModelFileError);
  expect((e as Error).message).toContain(path);
  return e as Error;
}

describe('writeSafetensorsFile / readSafetensorsFile', () => {
  it('writes the same bytes as serializeSafetensors and reads them back, in tiny chunks', async () => {
    const path = join(await tempDir(), 'm.safetensors');
    await writeSafetensorsFile(path, tensors, undefined, { chunkBytes: 3 });
    expect(new Uint8Array(await readFile(path))).toEqual(serializeSafetensors(tensors));
    const back = await readSafetensorsFile(path, { chunkBytes: 5 });
    expect(back.map((t) => t.name)).toEqual(['a', 'b', 'c']);
    expect([...toFloat32(back[0])]).toEqual([-1, 0.5, 4, 8]);
    expect([...toFloat32(back[1])]).toEqual([1, 2, 3]);
    for (const t of back) expect(t.data.byteOffset).toBe(0);
  });

  it('hashes each tensor from disk in bounded chunks, as a whole-tensor sha256 would', async () => {
    const path = join(await tempDir(), 'h.safetensors');
    await writeSafetensorsFile(path, tensors);
    const whole = new Map(tensors.map((t) => [t.name, createHash('sha256').update(t.data).digest('hex')]));
    for (const chunkBytes of [1, 3, 7, 1 << 20]) expect(await hashSafetensorsFile(path, { chunkBytes })).toEqual(whole);
    await truncate(path, (await readFile(path)).length - 2);
    await expect(hashSafetensorsFile(path)).rejects.toThrow(ModelFileError);
  });

  it('validates before creating the file', async () => {
    const path = join(await tempDir(), 'bad.safetensors');
    await expect(writeSafetensorsFile(path, [{ ...tensors[0], shape: [4] }])).rejects.toThrow(/needs 16 bytes/);
    await expect(readFile(path)).rejects.toThrow(/ENOENT/);
  });

  it('reports malformed and missing files with the path', async () => {
    const dir = await tempDir();
    expect((await readError(join(dir, 'none.safetensors'))).message).toMatch(/file not found/);
    const empty = join(dir, 'empty.safetensors');
    await writeFile(empty, new Uint8Array(0));
    expect((await readError(empty)).message).toMatch(/0 bytes.*truncated/);
    const truncated = join(dir, 'truncated.safetensors');
    const whole = serializeSafetensors(tensors);
    await writeFile(truncated, whole.subarray(0, whole.length - 2));
    expect((await readError(truncated)).message).toMatch(/truncated or offsets lie/);
    const lying = join(dir, 'lying.safetensors');
    await writeFile(lying, rawSafetensors({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4), 10_000n));
    expect((await readError(lying)).message).toMatch(/header length 10000 runs past the end/);
  });
});

describe('readSafetensorsFileHeader', () => {
  it('describes the same tensors as readSafetensorsFile', async () => {
    const path = join(await tempDir(), 'm.safetensors');
    await writeSafetensorsFile(path, tensors);
    const header = await readSafetensorsFileHeader(path, { chunkBytes: 3 });
    const full = await readSafetensorsFile(path);
    expect(header.entries.map(({ name, dtype, shape }) => ({ name, dtype, shape }))).toEqual(
      full.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    );
    expect(header.metadata).toEqual({ format: 'pt' });
  });

  it('rejects every malformed file with the same error as readSafetensorsFile', async () => {
    const dir = await tempDir();
    const cases = [{ what: 'missing', bytes: null, problem: /file not found/ }, ...MALFORMED_SAFETENSORS];
    for (const [i, { what, bytes, problem }] of cases.entries()) {
      const path = join(dir, `bad-${i}.safetensors`);
      if (bytes) await writeFile(path, bytes);
      const full = await readError(path);
      expect(full.message, what).toMatch(problem);
      const header = await readSafetensorsFileHeader(path).catch((err: unknown) => err);
      expect(header, what).toBeInstanceOf(ModelFileError);
      expect((header as Error).message, what).toBe(full.message);
    }
  });
});
