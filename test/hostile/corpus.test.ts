// Every case of the hostile-input corpus (corpus.ts) sent through a real server: StartTune and Evaluate with the
// corpus's data files and models, patterns and oversized fields. Each must get the right status code with a field
// violation naming what was wrong, in trailers that fit standard clients' 8 KiB metadata limit, quoting the
// client's input bounded and never the server's roots; afterwards health is SERVING and the CPU is idle again.
import { cp, mkdir, realpath, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeepPartial, EvalDataset_Kind, EvaluateRequest, type StartTuneRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { STATUS_DETAILS_KEY, decodeStatusDetails } from '../../src/service/grpc-errors.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { tempDir, tinyModel } from '../trainer/fixtures.js';
import { connect, type TestClient } from '../service/client.js';
import { dataCases, type FileCase, LONG, MODEL_FILES, type ModelPart, modelCases, OVERSIZED, patternCases } from './corpus.js';
import { waitForIdle } from './cpu.js';

/** Standard clients (C-core, Go, Java) refuse metadata beyond 8 KiB; ours must stay well inside, headers included. */
const METADATA_LIMIT = 8 * 1024;
const TRAILER_BUDGET = METADATA_LIMIT - 1024;
/** How much of one input value a message may quote (util/errors.ts quote(), with quotes and ellipsis). */
const QUOTED = 200;
const EVALUATE_BATCH = 8;

let dir: string;
let root: string;
let base: string;
let data: string;
let server: RunningServer;
let client: TestClient;
let health: grpc.Client & { check: (req: { service: string }, cb: (e: Error | null, r: { status: string }) => void) => void };

beforeAll(async () => {
  dir = await tempDir('nt-hostile-');
  root = await realpath(dir);
  base = await tinyModel(dir);
  data = join(dir, 'ok.jsonl');
  await writeFile(data, '{"prompt": "cat:", "completion": " cat"}\n{"prompt": "dog:", "completion": " dog"}\n');
  server = await startServer({
    host: '127.0.0.1',
    port: 0,
    auth: 'none',
    dataDir: join(dir, 'store'),
    modelRoots: [dir],
    dataRoots: [dir],
    rateLimits: { startTunePerMinute: 0, evaluatePerMinute: 0 },
  });
  client = connect(server.port);
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials) => typeof health } } };
  };
  health = new pkg.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  if (process.env.HOSTILE_TIMINGS) for (const [label, ms] of timings) process.stderr.write(`${ms.toFixed(0)} ms ${label}\n`);
  health?.close();
  client?.close();
  await server?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

interface Outcome {
  code: grpc.status;
  message: string;
  violations: { field: string; description: string }[];
}

/** The outcome of one call, after checking what every answer must satisfy: bounded, and silent about the roots. */
async function outcome(p: Promise<unknown>): Promise<Outcome> {
  try {
    await p;
    return { code: grpc.status.OK, message: '', violations: [] };
  } catch (e) {
    const err = e as grpc.ServiceError;
    const bin = err.metadata?.get(STATUS_DETAILS_KEY)[0] as Buffer | undefined;
    expect(encodeURI(err.details).length + Math.ceil((bin?.length ?? 0) / 3) * 4).toBeLessThan(TRAILER_BUDGET);
    const violations = decodeStatusDetails(err.metadata)?.badRequest?.fieldViolations.map(({ field, description }) => ({ field, description })) ?? [];
    for (const said of [err.details, ...violations.map((v) => v.description)]) expect(said).not.toContain(root);
    return { code: err.code, message: err.details, violations };
  }
}

async function expectRefused(p: Promise<unknown>, field: string | RegExp, label = ''): Promise<Outcome> {
  const t0 = performance.now();
  const o = await outcome(p);
  timings.push([label, performance.now() - t0]);
  expect(o.code, `${label}: ${o.message}`).toBe(grpc.status.INVALID_ARGUMENT);
  expect(o.violations.map((v) => v.field), label).toContainEqual(typeof field === 'string' ? field : expect.stringMatching(field));
  return o;
}
const timings: [string, number][] = [];

async function serving(): Promise<void> {
  const status = await new Promise<string>((ok, fail) =>
    health.check({ service: 'narrowtune.v1.TuningService' }, (e, r) => (e ? fail(e) : ok(r.status))),
  );
  expect(status).toBe('SERVING');
}

async function afterCategory(): Promise<void> {
  await serving();
  await waitForIdle();
}

/** Writes a case under the temporary root; returns its path relative to the root, as a client would send it. */
async function place(folder: string, c: FileCase, file = c.name.replace(/\//g, '_')): Promise<string> {
  const path = join(dir, folder, file);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, c.bytes);
  return join(folder, file);
}

/** A copy of the valid model with one file replaced by the case; relative to the root. */
async function modelWith(part: ModelPart, c: FileCase): Promise<string> {
  const rel = join('models', part, c.name.replace(/\//g, '_'));
  await cp(base, join(dir, rel), { recursive: true });
  await writeFile(join(dir, rel, MODEL_FILES[part]), c.bytes);
  return rel;
}

const atPath = (value: string) => ({ source: { $case: 'path' as const, value } });
const startTune = (r: DeepPartial<StartTuneRequest>) => client.startTune({ baseModel: atPath(base), trainingData: data, hyperparameters: { steps: 1, seqLen: 32 }, ...r });
const evaluate = (r: DeepPartial<EvaluateRequest>) =>
  client.evaluate(EvaluateRequest.fromPartial({ model: atPath(base), datasets: [{ path: data, kind: EvalDataset_Kind.LOSS }], seqLen: 32, device: '', ...r }));

describe('the hostile-input corpus', () => {
  it('malformed JSONL: StartTune and Evaluate name the file and line', async () => {
    const cases = dataCases();
    const paths: string[] = [];
    for (const c of cases) {
      const rel = await place('data', c);
      paths.push(rel);
      await expectRefused(startTune({ trainingData: rel }), 'training_data', `StartTune ${c.name}`);
    }
    // Evaluate reads every dataset and reports each bad one, so one call checks several files (as many as the
    // reply's size bound keeps violations for).
    for (let i = 0; i < paths.length; i += EVALUATE_BATCH) {
      const batch = paths.slice(i, i + EVALUATE_BATCH);
      const o = await expectRefused(evaluate({ datasets: batch.map((path) => ({ path, kind: EvalDataset_Kind.LOSS })) }), 'datasets[0].path', 'Evaluate');
      expect(o.violations.map((v) => v.field)).toEqual(batch.map((_, k) => `datasets[${k}].path`));
    }
    await afterCategory();
  }, 240_000);

  for (const part of Object.keys(MODEL_FILES) as ModelPart[]) {
    it(`broken ${MODEL_FILES[part]}: StartTune and Evaluate name the model`, async () => {
      for (const c of modelCases(part)) {
        const rel = await modelWith(part, c);
        await expectRefused(startTune({ baseModel: atPath(rel) }), 'base_model.path', `StartTune ${c.name}`);
        await expectRefused(evaluate({ model: atPath(rel) }), /^model/, `Evaluate ${c.name}`);
      }
      await afterCategory();
    }, 240_000);
  }

  it('regular expressions RE2 refuses: as policy patterns, token classes and answer_regex', async () => {
    for (const p of patternCases().refused) {
      await expectRefused(startTune({ policy: { preset: '', include: [p], exclude: [] } }), 'policy.include[0]', p);
      await expectRefused(startTune({ tokenClasses: [{ name: 'c', pattern: p }] }), 'token_classes[0].pattern', p);
      await expectRefused(evaluate({ datasets: [{ path: data, kind: EvalDataset_Kind.GENERATE, answerRegex: p }] }), 'datasets[0].answer_regex', p);
    }
    await afterCategory();
  }, 120_000);

  it('patterns that backtrack exponentially in JavaScript are matched in linear time', async () => {
    const { backtracking } = patternCases();
    const t0 = performance.now();
    for (const p of backtracking) {
      const o = await expectRefused(startTune({ policy: { preset: '', include: [p], exclude: [] } }), 'policy.include[0]', p);
      expect(o.violations[0]!.description).toMatch(/matches no tensor/);
    }
    expect(performance.now() - t0).toBeLessThan(10_000);
    // One evaluation extracts answers with each of them: it completes, instead of spinning a worker forever.
    const datasets = backtracking.map((answerRegex) => ({ path: data, kind: EvalDataset_Kind.GENERATE, maxNewTokens: 4, answerRegex }));
    expect((await outcome(evaluate({ datasets }))).code).toBe(grpc.status.OK);
    await afterCategory();
  }, 120_000);

  it(`oversized fields (${LONG} characters, 1 MiB) come back quoted at most ${QUOTED} characters`, async () => {
    const { path, jobName, requestId, pattern, tokenClassName, odd, mebibyte } = OVERSIZED;
    const unquoted = (o: Outcome, value: string) => {
      for (const said of [o.message, ...o.violations.map((v) => v.description)]) expect(said).not.toContain(value.slice(0, QUOTED + 1));
    };
    unquoted(await expectRefused(startTune({ baseModel: atPath(path) }), 'base_model.path'), path);
    unquoted(await expectRefused(startTune({ baseModel: atPath(`/${path}`) }), 'base_model.path'), path);
    unquoted(await expectRefused(startTune({ trainingData: path }), 'training_data'), path);
    unquoted(await expectRefused(startTune({ baseModel: { source: { $case: 'job', value: jobName } } }), 'base_model.job'), jobName);
    unquoted(await expectRefused(startTune({ requestId }), 'request_id'), requestId);
    unquoted(await expectRefused(startTune({ requestId: mebibyte }), 'request_id'), mebibyte);
    unquoted(await expectRefused(startTune({ policy: { preset: '', include: [pattern], exclude: [] } }), 'policy.include[0]'), pattern);
    unquoted(await expectRefused(startTune({ policy: { preset: mebibyte, include: [], exclude: [] } }), 'policy.preset'), mebibyte);
    unquoted(await expectRefused(startTune({ tokenClasses: [{ name: tokenClassName, pattern: 'x' }] }), 'token_classes[0].name'), tokenClassName);
    await expectRefused(startTune({ baseModel: atPath(odd), trainingData: odd }), 'base_model.path');
    unquoted(await expectRefused(evaluate({ datasets: [{ path, kind: EvalDataset_Kind.LOSS, name: mebibyte }] }), 'datasets[0].path'), path);
    unquoted(await expectRefused(client.getJob(jobName), 'name'), jobName);
    unquoted(await expectRefused(client.cancel(jobName), 'name'), jobName);
    unquoted(await expectRefused(client.getJob(mebibyte), 'name'), mebibyte);
    unquoted(await expectRefused(client.list(0, mebibyte), 'page_token'), mebibyte);
    unquoted(await expectRefused(client.stream(jobName), 'name'), jobName);
    await afterCategory();
  }, 120_000);
});
