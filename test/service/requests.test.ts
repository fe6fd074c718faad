// The request parsers, without a server: typed commands out, or one INVALID_ARGUMENT with every violation
// under the request's own field paths; nothing a client sends costs unbounded time or memory.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequest } from '../../src/gen/google/rpc/error_details.js';
import {
  type DeepPartial,
  EvalDataset_Kind,
  type EvalDataset_Role,
  EvaluateRequest,
  StartTuneRequest,
  TuneJob_State,
} from '../../src/gen/narrowtune/v1/tuning_service.js';
import { parseEvaluate } from '../../src/service/evaluate-request.js';
import { MAX_FIELD_VIOLATIONS, statusFromError } from '../../src/service/grpc-errors.js';
import { realRoots } from '../../src/service/paths.js';
import { parseListTuneJobs, parseStreamMetrics, type RequestContext } from '../../src/service/requests.js';
import { parseStartTune } from '../../src/service/start-tune-request.js';
import type { JobRecord } from '../../src/store/job-store.js';
import { DEFAULTS, pathViolations, settingsViolations, validateOptions, type TuneOptions } from '../../src/trainer/options.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { repeatData, tempDir, TINY_LLAMA, tinyModel } from '../trainer/fixtures.js';

let dir: string;
let base: string;
let other: string;
let data: string;
let ctx: RequestContext;
const jobs: Record<string, Partial<JobRecord>> = {};

beforeAll(async () => {
  dir = realRoots([await tempDir('nt-req-')])[0];
  base = await tinyModel(dir);
  other = await tinyModel(dir, { ...TINY_LLAMA, hidden: 64 }, 'other');
  data = await repeatData(dir);
  jobs.done = { id: 'done', state: 'SUCCEEDED', outputPath: base };
  jobs.gone = { id: 'gone', state: 'SUCCEEDED', outputPath: join(dir, 'deleted') };
  jobs.busy = { id: 'busy', state: 'RUNNING', outputPath: null };
  ctx = { store: { getJob: async (id) => (jobs[id] as JobRecord | undefined) ?? null }, modelRoots: [dir], dataRoots: [dir], checkpointEvery: 7 };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const startTune = (r: DeepPartial<StartTuneRequest>) => parseStartTune(StartTuneRequest.fromPartial(r), ctx);
const evaluate = (r: DeepPartial<EvaluateRequest>) => parseEvaluate(EvaluateRequest.fromPartial(r), ctx);
const atPath = (value: string) => ({ source: { $case: 'path' as const, value } });
const atJob = (value: string) => ({ source: { $case: 'job' as const, value } });

/** The violations of a rejected parse, as `field: description` lines, after checking it is INVALID_ARGUMENT. */
async function violations(p: Promise<unknown>): Promise<{ field: string; description: string }[]> {
  const e = await p.then(
    () => {
      throw new Error('the request was accepted');
    },
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(NarrowtuneError);
  expect((e as NarrowtuneError).kind).toBe('invalid_argument');
  return (e as NarrowtuneError).violations;
}
const fields = async (p: Promise<unknown>) => (await violations(p)).map((v) => v.field).sort();

describe('parseStartTune', () => {
  it('returns the job to store: real paths, defaults, and the resolved preset in options and echo', async () => {
    const cmd = await startTune({ baseModel: atPath(base), trainingData: 'train.jsonl', hyperparameters: { steps: 3 } });
    expect(cmd.requestId).toBeNull();
    expect(cmd.spec.options).toMatchObject({ model: base, data, validationData: null, probeData: null, steps: 3, checkpointEvery: 7, lr: DEFAULTS.lr });
    expect(cmd.spec.options.policy).toEqual({ preset: 'mlp_gate_up', include: [], exclude: [] });
    expect(StartTuneRequest.fromJSON(cmd.spec.request).policy).toEqual({ preset: 'mlp_gate_up', include: [], exclude: [] });
  });

  it('keeps include patterns as they are, with no preset', async () => {
    const cmd = await startTune({ requestId: 'r1', baseModel: atJob('jobs/done'), trainingData: data, policy: { include: ['mlp'], exclude: ['down'] } });
    expect(cmd.requestId).toBe('r1');
    expect(cmd.spec.options.model).toBe(base);
    expect(cmd.spec.options.policy).toEqual({ preset: undefined, include: ['mlp'], exclude: ['down'] });
    expect(StartTuneRequest.fromJSON(cmd.spec.request).policy).toEqual({ preset: '', include: ['mlp'], exclude: ['down'] });
  });

  it('lists every violation at once, under request field paths', async () => {
    const v = await violations(
      startTune({
        requestId: 'x'.repeat(200),
        baseModel: atPath(base),
        validationData: '/etc/passwd',
        policy: { preset: 'everything' },
        hyperparameters: { learningRate: -1, batchSize: 0, steps: 2, epochs: 1, schedule: 'linear' },
        device: 'tpu',
        tokenClasses: [{ name: 'Bad Name', pattern: '(' }],
      }),
    );
    expect(v.map((x) => x.field).sort()).toEqual([
      'device',
      'hyperparameters.batch_size',
      'hyperparameters.learning_rate',
      'hyperparameters.schedule',
      'hyperparameters.steps',
      'policy.preset',
      'request_id',
      'token_classes',
      'token_classes[0].name',
      'token_classes[0].pattern',
      'training_data',
      'validation_data',
    ]);
    // The trainer's own wording, under the request's names.
    expect(v.find((x) => x.field === 'hyperparameters.batch_size')!.description).toBe('must be an integer in [1, 1024], got 0');
    expect(v.find((x) => x.field === 'token_classes')!.description).toBe('need probe data');
  });

  it('a request_id with a control character is refused (PostgreSQL text cannot hold NUL); other Unicode is kept', async () => {
    for (const requestId of ['a\u0000b', 'tab\there', 'line\n', 'del\u007f', 'c1\u0085']) {
      expect(await violations(startTune({ requestId, baseModel: atPath(base), trainingData: data })), JSON.stringify(requestId)).toEqual([
        { field: 'request_id', description: 'must not contain control characters' },
      ]);
    }
    expect((await startTune({ requestId: 'zoë-✓-日本 1', baseModel: atPath(base), trainingData: data })).requestId).toBe('zoë-✓-日本 1');
  });

  it('a bad optional path is reported once, not also as missing data', async () => {
    expect(await fields(startTune({ baseModel: atPath(base), trainingData: data, validationData: 'nope.jsonl', hyperparameters: { evalEvery: 2 } }))).toEqual([
      'validation_data',
    ]);
    expect(await fields(startTune({ baseModel: atPath(base), trainingData: data, hyperparameters: { evalEvery: 2 } }))).toEqual(['hyperparameters.eval_every']);
  });

  it('every problem with a model path is reported at base_model.path', async () => {
    await mkdir(join(dir, 'empty'), { recursive: true });
    await mkdir(join(dir, 'badjson'), { recursive: true });
    await writeFile(join(dir, 'badjson', 'config.json'), '{ nope');
    for (const path of ['/etc', join(dir, '..', 'x'), join(dir, 'missing'), join(dir, 'empty'), join(dir, 'badjson')]) {
      expect(await fields(startTune({ baseModel: atPath(path), trainingData: data })), path).toEqual(['base_model.path']);
    }
    expect(await fields(startTune({ trainingData: data }))).toEqual(['base_model']);
  });

  it('every problem with a job reference is reported at base_model.job', async () => {
    expect(await fields(startTune({ baseModel: atJob('jobs/../x'), trainingData: data }))).toEqual(['base_model.job']);
    expect(await fields(startTune({ baseModel: atJob('jobs/gone'), trainingData: data }))).toEqual(['base_model.job']);
    await expect(startTune({ baseModel: atJob('jobs/nosuch'), trainingData: data })).rejects.toMatchObject({
      kind: 'not_found',
      violations: [{ field: 'base_model.job', description: 'no such job' }],
    });
    await expect(startTune({ baseModel: atJob('jobs/busy'), trainingData: data })).rejects.toMatchObject({
      kind: 'failed_precondition',
      violations: [{ field: 'base_model.job', description: 'job is RUNNING, not SUCCEEDED' }],
    });
  });

  it('policy patterns: bad ones by index, too many as one violation, catastrophic backtracking in linear time', async () => {
    const v = await violations(startTune({ baseModel: atPath(base), trainingData: data, policy: { include: ['mlp', '('], exclude: ['nothing'] } }));
    expect(v.map((x) => x.field)).toEqual(['policy.include[1]', 'policy.exclude[0]']);
    expect(v[1].description).toMatch(/matches no tensor; valid tensor names: .*mlp\.down_proj\.weight/);

    const many = Array.from({ length: 10_000 }, (_, i) => `nope${i}(`);
    const t0 = performance.now();
    expect(await violations(startTune({ baseModel: atPath(base), trainingData: data, policy: { include: many } }))).toEqual([
      { field: 'policy', description: 'at most 64 include/exclude patterns, got 10000' },
    ]);
    // `^(.|.)*X$` backtracks 2^40 times on a 40-character name in JavaScript's engine; RE2 answers at once.
    const slow = await violations(startTune({ baseModel: atPath(base), trainingData: data, policy: { include: ['mlp'], exclude: ['^(.|.)*X$'] } }));
    expect(slow).toEqual([{ field: 'policy.exclude[0]', description: expect.stringMatching(/^"\^\(\.\|\.\)\*X\$" matches no tensor/) }]);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('a flood of token classes is one violation, not one per class', async () => {
    const classes = Array.from({ length: 10_000 }, () => ({ name: 'BAD', pattern: '(' }));
    const v = await violations(startTune({ baseModel: atPath(base), trainingData: data, probeData: data, tokenClasses: classes }));
    expect(v).toEqual([{ field: 'token_classes', description: 'at most 32 classes, got 10000' }]);
  });
});

describe('parseEvaluate', () => {
  it('returns evaluation options with defaults and real paths', async () => {
    const cmd = await evaluate({ model: atJob('jobs/done'), baseModel: atPath(base), datasets: [{ path: 'train.jsonl', kind: EvalDataset_Kind.GENERATE }] });
    expect(cmd).toEqual({
      model: base,
      base,
      datasets: [{ name: 'train.jsonl', path: data, kind: 'generate', role: null, maxNewTokens: 32, answerRegex: '' }],
      tokenClasses: [],
      batchSize: 8,
      seqLen: 1024,
      device: 'cpu',
      // Where a LLaVA model's images may lie: the caller's data roots.
      roots: [dir],
    });
  });

  it('lists every violation, with model paths at model.path / base_model.path and data at datasets[i].path', async () => {
    const v = await violations(
      evaluate({
        model: atPath(join(dir, 'missing')),
        baseModel: atPath('/etc'),
        datasets: [
          { path: 'nope.jsonl', kind: EvalDataset_Kind.GENERATE, maxNewTokens: 0, answerRegex: '(' },
          { path: '', kind: 9 as EvalDataset_Kind, role: 7 as EvalDataset_Role, maxNewTokens: 3 },
          { path: data, kind: EvalDataset_Kind.LOSS, answerRegex: 'x' },
        ],
        batchSize: 0,
        seqLen: 1,
        device: 'tpu',
      }),
    );
    expect(v.map((x) => x.field).sort()).toEqual([
      'base_model.path',
      'batch_size',
      'datasets[0].answer_regex',
      'datasets[0].max_new_tokens',
      'datasets[0].path',
      'datasets[1].kind',
      'datasets[1].path',
      'datasets[1].role',
      'datasets[2].answer_regex',
      'device',
      'model.path',
      'seq_len',
    ]);
  });

  it('a base of another architecture is reported at the base reference', async () => {
    const v = await violations(evaluate({ model: atPath(base), baseModel: atPath(other), datasets: [{ path: data }] }));
    expect(v).toEqual([{ field: 'base_model.path', description: expect.stringMatching(/the base must have the model's architecture/) }]);
    expect(await fields(evaluate({ model: atPath(other), baseModel: atJob('jobs/done'), datasets: [{ path: data }] }))).toEqual(['base_model.job']);
  });

  it('too many datasets: one violation, and only the first ones are checked', async () => {
    const datasets = Array.from({ length: 5000 }, () => ({ path: 'nope.jsonl' }));
    const v = await violations(evaluate({ model: atPath(base), datasets }));
    expect(v[0]).toEqual({ field: 'datasets', description: 'at most 32 datasets, got 5000' });
    expect(v.length).toBeLessThanOrEqual(MAX_FIELD_VIOLATIONS);
  });
});

describe('the job-reference requests', () => {
  it('StreamMetrics lists a bad name and a negative sequence together', async () => {
    expect(parseStreamMetrics({ name: 'jobs/abc', fromSequence: 4 })).toEqual({ id: 'abc', fromSequence: 4 });
    expect(await fields(Promise.resolve().then(() => parseStreamMetrics({ name: 'job/1', fromSequence: -1 })))).toEqual(['from_sequence', 'name']);
  });

  it('ListTuneJobs drops repeated states; a million bad ones make a bounded error', async () => {
    expect(parseListTuneJobs({ pageSize: 5, pageToken: '', states: [TuneJob_State.FAILED, TuneJob_State.FAILED], tenant: '' })).toEqual({
      pageSize: 5,
      pageToken: undefined,
      states: ['FAILED'],
    });
    let thrown: unknown;
    try {
      parseListTuneJobs({ pageSize: -1, pageToken: '', states: new Array(1_000_000).fill(99), tenant: '' });
    } catch (e) {
      thrown = e;
    }
    const e = thrown as NarrowtuneError;
    expect(e.violations).toHaveLength(MAX_FIELD_VIOLATIONS);
    expect(e.violations[0]).toEqual({ field: 'page_size', description: 'must not be negative' });
    expect(e.message).toMatch(/\(999969 more field violations not listed\)$/);
    const status = statusFromError(e);
    expect(status.message.length).toBeLessThan(5000);
    expect(BadRequest.decode(status.details[0].value).fieldViolations).toHaveLength(MAX_FIELD_VIOLATIONS);
  });
});

describe('options.ts: settings apart from paths', () => {
  const options: TuneOptions = { ...DEFAULTS, model: 'm', data: 'd', out: 'o' };

  it('settings checks name no path; the CLI validator reports both kinds', () => {
    const bad = { ...options, model: '', out: '', lr: 2, checkpointEvery: 5, evalEvery: 3 };
    expect(settingsViolations(bad, { validationData: false, probeData: false }).map((v) => v.field)).toEqual(['lr', 'eval_every']);
    expect(pathViolations(bad).map((v) => v.field)).toEqual(['model', 'out', 'checkpoint_dir']);
    expect(() => validateOptions(bad)).toThrow(/^model: is required\nout: is required\ncheckpoint_dir: is required with checkpoint_every\nlr: must be in \(0, 1\], got 2\neval_every: needs validation data$/);
    expect(settingsViolations(bad, { validationData: true, probeData: false }).map((v) => v.field)).toEqual(['lr']);
  });
});
