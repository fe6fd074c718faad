// Global setup: one directory per run where system-tools.ts keeps what it found, so each optional tool is
// probed once per run rather than once per test file (PyTorch takes ~2 s to import, the WebGPU probe ~3 s).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'narrowtune-tools-'));
  project.provide('systemToolsCache', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
