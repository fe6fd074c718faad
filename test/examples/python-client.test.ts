// The Python example client (examples/python) against a real narrowtune server in this process: stubs from
// generate.sh, a tiny fine-tune streamed and evaluated, and a bad request reported with its field violation.

import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initModel } from '../../src/model/init-model.js';
import { startServer } from '../../src/service/server.js';
import { needs, PYTHON } from '../support/system-tools.js';

const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/python/', import.meta.url));
const GENERATE = join(EXAMPLE_DIR, 'generate.sh');
const CLIENT = join(EXAMPLE_DIR, 'client.py');
const STEPS = 3;
const EXAMPLES = 8;
const EXIT_RPC_ERROR = 1;
const WORDS = ['cat', 'dog', 'sun', 'red', 'one', 'sky', 'map', 'ice'];

interface ClientRun {
  code: number;
  stdout: string;
  stderr: string;
}

// Asynchronous on purpose: the server shares this event loop, so a synchronous child would deadlock it.
function runClient(target: string, args: string[]): Promise<ClientRun> {
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [CLIENT, '--target', target, ...args],
      { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe('examples/python client', needs('python-grpc'), () => {
  let dir: string;
  let model: string;
  let data: string;
  let target: string;
  let shutdown: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    execFileSync('bash', [GENERATE], { stdio: ['ignore', 'pipe', 'pipe'] });
    dir = await mkdtemp(join(tmpdir(), 'narrowtune-pyclient-'));
    const models = join(dir, 'models');
    const dataDir = join(dir, 'data');
    await mkdir(dataDir, { recursive: true });
    model = (await initModel({ arch: 'qwen2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, out: join(models, 'tiny') })).dir;
    data = join(dataDir, 'train.jsonl');
    const lines = WORDS.slice(0, EXAMPLES).map((w) => JSON.stringify({ prompt: `${w}:`, completion: ` ${w} ${w} ${w}` }));
    await writeFile(data, `${lines.join('\n')}\n`);
    const server = await startServer({ port: 0, dataDir, modelRoots: [models], dataRoots: [dataDir] });
    shutdown = () => server.shutdown();
    target = `127.0.0.1:${server.port}`;
  });

  afterAll(async () => {
    await shutdown?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('tunes, prints one line per step, evaluates the job and exits 0', async () => {
    const run = await runClient(target, [
      '--model', model,
      '--data', data,
      '--steps', String(STEPS),
      '--lr', '1e-2',
      '--seq-len', '32',
      '--request-id', 'python-example-1',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const steps = [...run.stdout.matchAll(/^step (\d+)\/(\d+) loss (\d+\.\d+)$/gm)];
    expect(steps.map((m) => Number(m[1]))).toEqual([1, 2, 3]);
    expect(steps.every((m) => Number(m[2]) === STEPS && Number(m[3]) > 0)).toBe(true);
    expect(run.stdout).toMatch(/^jobs\/\S+ SUCCEEDED: /m);
    expect(run.stdout).toMatch(new RegExp(`^eval training: loss \\d+\\.\\d+ token_accuracy [01]\\.\\d+ \\(\\d+ tokens, ${EXAMPLES} examples\\)$`, 'm'));
  });

  it('reports a bad request: INVALID_ARGUMENT, the field violation, exit 1', async () => {
    const run = await runClient(target, ['--model', model, '--data', data, '--include', 'nope', '--steps', '1']);
    expect(run.code, run.stdout + run.stderr).toBe(EXIT_RPC_ERROR);
    expect(run.stderr).toMatch(/^rpc error: INVALID_ARGUMENT: /m);
    // The violation comes from the decoded BadRequest, printed one per line under the error.
    expect(run.stderr).toMatch(/^ {2}policy\.include\[0\]: "nope" matches no tensor/m);
    expect(run.stdout).not.toMatch(/^started /m);
  });
});
