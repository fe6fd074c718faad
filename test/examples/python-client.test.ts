// The Python example client (examples/python) against a real narrowtune server in this process, over TLS with an
// API key as deployed: stubs from generate.sh, a tiny fine-tune streamed and evaluated, a bad request reported
// with its field violation, a call without a key refused; and a key sent to a plaintext server on loopback.

import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initModel } from '../../src/model/init-model.js';
import { startServer } from '../../src/service/server.js';
import { needs, PYTHON } from '../support/system-tools.js';
import { makeTestPki } from '../support/test-certificates.js';

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
function runClient(target: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ClientRun> {
  return new Promise((resolve) => {
    const { NARROWTUNE_API_KEY: _, ...inherited } = process.env;
    execFile(
      PYTHON,
      [CLIENT, '--target', target, ...args],
      { env: { ...inherited, PYTHONDONTWRITEBYTECODE: '1', ...env } },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe('examples/python client', needs('python-grpc'), () => {
  let dir: string;
  let model: string;
  let data: string;
  let target: string;
  let tls: string[];
  let key: string;
  let plainTarget: string;
  let plainKey: string;
  const shutdowns: (() => Promise<void>)[] = [];

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
    const pki = await makeTestPki(dir);
    const roots = { modelRoots: [models], dataRoots: [dataDir] };
    const server = await startServer({ port: 0, dataDir, ...roots, auth: 'api-key', tls: { certFile: pki.serverCert, keyFile: pki.serverKey } });
    shutdowns.push(() => server.shutdown());
    target = `127.0.0.1:${server.port}`;
    tls = ['--tls-ca', pki.caCert];
    key = (await server.store.keys.create({ tenant: 'python', role: 'member' })).secret;
    const plain = await startServer({ port: 0, dataDir: join(dir, 'plain'), ...roots, auth: 'api-key' });
    shutdowns.push(() => plain.shutdown());
    plainTarget = `127.0.0.1:${plain.port}`;
    plainKey = (await plain.store.keys.create({ tenant: 'python', role: 'member' })).secret;
  });

  afterAll(async () => {
    for (const shutdown of shutdowns) await shutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('tunes, prints one line per step, evaluates the job and exits 0', async () => {
    const run = await runClient(target, [
      ...tls,
      '--model', model,
      '--data', data,
      '--steps', String(STEPS),
      '--lr', '1e-2',
      '--seq-len', '32',
      '--request-id', 'python-example-1',
    ], { NARROWTUNE_API_KEY: key });
    expect(run.code, run.stderr).toBe(0);
    const steps = [...run.stdout.matchAll(/^step (\d+)\/(\d+) loss (\d+\.\d+)$/gm)];
    expect(steps.map((m) => Number(m[1]))).toEqual([1, 2, 3]);
    expect(steps.every((m) => Number(m[2]) === STEPS && Number(m[3]) > 0)).toBe(true);
    expect(run.stdout).toMatch(/^jobs\/\S+ SUCCEEDED: /m);
    expect(run.stdout).toMatch(new RegExp(`^eval training: loss \\d+\\.\\d+ token_accuracy [01]\\.\\d+ \\(\\d+ tokens, ${EXAMPLES} examples\\)$`, 'm'));
  });

  it('with LwF: prints both loss terms per step, then merges the job with its base (WiSE-FT)', async () => {
    const run = await runClient(target, [
      ...tls,
      '--model', model,
      '--data', data,
      '--steps', '2',
      '--lr', '1e-2',
      '--seq-len', '32',
      '--lwf-weight', '1',
      '--merge-alpha', '0.5',
      '--merge-out', 'merged',
    ], { NARROWTUNE_API_KEY: key });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^started jobs\/\S+ \(policy mlp_gate_up \+ lwf weight=1 T=2 teacher=base\)$/m);
    expect([...run.stdout.matchAll(/^step \d\/2 loss \d+\.\d+ \(ce \d+\.\d+ kl \d+\.\d+\)$/gm)]).toHaveLength(2);
    expect(run.stdout).toMatch(/^merged merged: \d+ of \d+ tensors at alpha 0\.5$/m);
  });

  it('reports a bad request: INVALID_ARGUMENT, the field violation, exit 1', async () => {
    const bad = ['--model', model, '--data', data, '--include', 'nope', '--steps', '1'];
    // Over TLS with the key as a flag, and in plaintext to loopback, where the key still travels.
    for (const run of [await runClient(target, [...tls, '--api-key', key, ...bad]), await runClient(plainTarget, ['--api-key', plainKey, ...bad])]) {
      expect(run.code, run.stdout + run.stderr).toBe(EXIT_RPC_ERROR);
      expect(run.stderr).toMatch(/^rpc error: INVALID_ARGUMENT: /m);
      // The violation comes from the decoded BadRequest, printed one per line under the error.
      expect(run.stderr).toMatch(/^ {2}policy\.include\[0\]: "nope" matches no tensor/m);
      expect(run.stdout).not.toMatch(/^started /m);
    }
  });

  it('without a key: UNAUTHENTICATED, exit 1', async () => {
    const run = await runClient(target, [...tls, '--model', model, '--data', data, '--steps', '1']);
    expect(run.code, run.stdout + run.stderr).toBe(EXIT_RPC_ERROR);
    expect(run.stderr).toMatch(/^rpc error: UNAUTHENTICATED: /m);
  });
});
