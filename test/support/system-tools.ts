// The optional system tools some tests need (PyTorch, gRPC for Python, Chromium, a Vulkan device, PostgreSQL), how to
// tell whether this machine has them, and the Debian packages that bring them (.ci/debian-packages).
// Tests declare what they need with `needs(...)`; without a tool its tests are skipped and the run ends with
// one line per tool (skip-summary.ts), except under NARROWTUNE_REQUIRE_ALL_TOOLS=1 (.ci/run), where a missing
// tool fails them.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';

export const TOOL_NAMES = ['torch', 'python-grpc', 'chromium', 'vulkan', 'postgres'] as const;
export type Tool = (typeof TOOL_NAMES)[number];

export const REQUIRE_ALL_TOOLS = 'NARROWTUNE_REQUIRE_ALL_TOOLS';
export const PYTHON = '/usr/bin/python3';
export const CHROMIUM = '/usr/bin/chromium';
/** Debian installs each PostgreSQL major version's server under here (postgresql-NN). */
export const POSTGRES_ROOT = '/usr/lib/postgresql';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROBE_TIMEOUT_MS = 120_000;

interface ToolInfo {
  label: string;
  /** What is wrong, or null when the tool works. */
  missing(): string | null;
  /** Said after the apt-get line. */
  note?: string;
}

export const TOOLS: Record<Tool, ToolInfo> = {
  torch: {
    label: 'PyTorch (float64 reference)',
    missing: () => fails(PYTHON, ['-c', 'import torch, numpy, PIL']),
  },
  'python-grpc': {
    label: 'gRPC for Python and protoc (examples/python)',
    missing: () => fails(PYTHON, ['-c', 'import grpc, google.protobuf']) ?? notOnPath('protoc') ?? notOnPath('grpc_python_plugin'),
  },
  chromium: {
    label: 'Chromium (demo report, dashboard)',
    missing: () => notExecutable(CHROMIUM),
  },
  vulkan: {
    label: 'a Vulkan device for WebGPU',
    missing: () => fails(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./webgpu-probe.ts', import.meta.url))]),
    note: 'on bookworm from bookworm-backports, as .ci/run does; or a GPU with its driver',
  },
  postgres: {
    label: 'PostgreSQL (the shared job store)',
    missing: () => (postgresBin() ? null : `no ${POSTGRES_ROOT}/*/bin/postgres`),
  },
};

/** The bin directory of the newest PostgreSQL server installed here (test/support/postgres.ts runs it), or null. */
export function postgresBin(): string | null {
  let versions: number[];
  try {
    versions = readdirSync(POSTGRES_ROOT).map(Number).filter(Number.isInteger);
  } catch {
    return null;
  }
  const bins = versions.sort((a, b) => b - a).map((v) => join(POSTGRES_ROOT, String(v), 'bin'));
  // A version directory may hold only the client tools.
  return bins.find((bin) => notExecutable(join(bin, 'postgres')) === null && notExecutable(join(bin, 'initdb')) === null) ?? null;
}

/** `apt-get install …` for a tool, from .ci/debian-packages. */
export function aptLine(tool: Tool): string {
  const line = readFileSync(join(ROOT, '.ci/debian-packages'), 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find(([tag]) => tag === tool);
  if (!line) throw new Error(`.ci/debian-packages has no line for ${tool}`);
  return `apt-get install --no-install-recommends ${line.slice(1).join(' ')}`;
}

declare module 'vitest' {
  interface ProvidedContext {
    /** Where detections are kept for the run (tool-cache.ts), so each tool is probed once, not once per file. */
    systemToolsCache: string;
  }
  interface TaskMeta {
    /** The tools a test needs that this machine lacks, with what is wrong. */
    missingTools?: Partial<Record<Tool, string>>;
  }
}

const known = new Map<Tool, string | null>();

/** What is wrong with a tool here, or null when it works. */
export function toolMissing(tool: Tool): string | null {
  if (known.has(tool)) return known.get(tool)!;
  const cacheDir = inject('systemToolsCache');
  const file = cacheDir ? join(cacheDir, `${tool}.json`) : null;
  let missing: string | null;
  try {
    missing = (JSON.parse(readFileSync(file!, 'utf8')) as { missing: string | null }).missing;
  } catch {
    missing = TOOLS[tool].missing();
    if (file) {
      mkdirSync(cacheDir, { recursive: true });
      writeFileSync(file, JSON.stringify({ missing }));
    }
  }
  known.set(tool, missing);
  return missing;
}

/**
 * Test or suite options for something that needs these tools: `describe('…', needs('torch'), () => …)`.
 * Skipped where one is missing; under NARROWTUNE_REQUIRE_ALL_TOOLS=1 that fails the file instead.
 */
export function needs(...tools: Tool[]): { tags: Tool[]; skip?: true; meta: { missingTools: Partial<Record<Tool, string>> } } {
  const missingTools: Partial<Record<Tool, string>> = {};
  for (const t of tools) {
    const why = toolMissing(t);
    if (why !== null) missingTools[t] = why;
  }
  const lacking = Object.keys(missingTools) as Tool[];
  if (lacking.length > 0 && process.env[REQUIRE_ALL_TOOLS] === '1') {
    const lines = lacking.map((t) => `${TOOLS[t].label}: ${missingTools[t]}; ${aptLine(t)}`);
    throw new Error(`${REQUIRE_ALL_TOOLS}=1 and this machine lacks what these tests need:\n${lines.join('\n')}`);
  }
  // `skip: false` on a suite would un-skip the runIf/skipIf tests inside it (vitest lets a suite's skip override them).
  return { tags: tools, ...(lacking.length > 0 && { skip: true as const }), meta: { missingTools } };
}

/** null when the command exits 0; else its last line of error output. */
function fails(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: PROBE_TIMEOUT_MS, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error) return `${cmd}: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : r.error.message}`;
  if (r.status === 0) return null;
  return r.stderr.trim().split('\n').at(-1) || `${cmd} exited with ${r.status ?? r.signal}`;
}

function notExecutable(path: string): string | null {
  try {
    accessSync(path, constants.X_OK);
    return null;
  } catch {
    return `no ${path}`;
  }
}

function notOnPath(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return dirs.some((d) => notExecutable(join(d, name)) === null) ? null : `${name} is not on PATH`;
}
