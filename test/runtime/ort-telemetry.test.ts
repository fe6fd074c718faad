// onnxruntime's telemetry module would leave an empty mat-debug-<pid>.log and a .ses file in $TMPDIR of every
// process that makes a session (a service litters its host with one per job): a job process and the CLI, whose
// sessions live in a worker thread, leave nothing of it in the TMPDIR they were given.
import { execFile } from 'node:child_process';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/trainer/options.js';
import { tuneInProcess } from '../../src/trainer/run-in-process.js';
import { repeatData, tempDir, tinyModel } from '../trainer/fixtures.js';

const BIN = new URL('../../bin/narrowtune.js', import.meta.url).pathname;
const ORT_LITTER = /^(mat-debug-\d+\.log|\.ses)$/;

let dir: string;
let model: string;
let data: string;
beforeAll(async () => {
  dir = await tempDir('nt-ort-tmp-');
  model = await tinyModel(dir);
  data = await repeatData(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function freshTmp(name: string): Promise<string> {
  const tmp = join(dir, name);
  await mkdir(tmp);
  return tmp;
}

const ortFiles = async (tmp: string) => (await readdir(tmp)).filter((f) => ORT_LITTER.test(f));

/** `narrowtune tune` for two steps with TMPDIR=tmp and ORT_DISABLE_TELEMETRY unset. */
async function cliTune(tmp: string, out: string): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
  delete env.ORT_DISABLE_TELEMETRY;
  await promisify(execFile)(process.execPath, [BIN, 'tune', '--model', model, '--data', data, '--out', join(dir, out), '--steps', '2'], { env });
}

it('a job process leaves nothing of onnxruntime in its parent\'s TMPDIR', async () => {
  const tmp = await freshTmp('job');
  const before = { TMPDIR: process.env.TMPDIR, ORT_DISABLE_TELEMETRY: process.env.ORT_DISABLE_TELEMETRY };
  process.env.TMPDIR = tmp; // the child inherits it, as a job process inherits the service's
  delete process.env.ORT_DISABLE_TELEMETRY; // the child must turn telemetry off itself (vitest.config.ts sets it)
  try {
    const job = tuneInProcess({ ...DEFAULTS, model, data, out: join(dir, 'job-out'), steps: 2 }, () => {});
    await job.done;
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  expect(await ortFiles(tmp)).toEqual([]);
});

// No positive control (telemetry on → litter): with telemetry on, onnxruntime wrote the file in every run here
// but none in one CI run, so something outside the TMPDIR decides it.
it('the CLI, which trains in a worker thread, leaves nothing either', async () => {
  const quiet = await freshTmp('cli');
  await cliTune(quiet, 'cli-out');
  expect(await ortFiles(quiet)).toEqual([]);
});
