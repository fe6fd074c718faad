// Property tests of every parser that reads client input: whatever arrives, the answer is a typed command or one
// NarrowtuneError of an expected kind whose violations and gRPC status stay within the bounds of grpc-errors.ts.
// Never another exception (a TypeError, a RangeError, a stack overflow) and never an unbounded reply.
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/dataset.js';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import { compileTokenClasses } from '../../src/eval/token-classes.js';
import { Status } from '../../src/gen/google/rpc/status.js';
import {
  CancelTuneJobRequest,
  type DeepPartial,
  EvaluateRequest,
  GetTuneJobRequest,
  ListTuneJobsRequest,
  StartTuneRequest,
  StreamMetricsRequest,
} from '../../src/gen/narrowtune/v1/tuning_service.js';
import { MAX_FIELD_VIOLATIONS, MAX_MESSAGE_WIRE_CHARS, statusFromError } from '../../src/service/grpc-errors.js';
import { parseEvaluate } from '../../src/service/evaluate-request.js';
import {
  checkTokenClasses,
  parseCancelTuneJob,
  parseGetTuneJob,
  parseJobName,
  parseListTuneJobs,
  parseStreamMetrics,
  type RequestContext,
} from '../../src/service/requests.js';
import { parseStartTune } from '../../src/service/start-tune-request.js';
import { Violations } from '../../src/service/violations.js';
import { decodePageToken, encodePageToken } from '../../src/store/page-token.js';
import type { ErrorKind } from '../../src/util/errors.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { compileUserRegex } from '../../src/util/user-regex.js';
import { tempDir, tinyModel } from '../trainer/fixtures.js';

/** Bytes of the google.rpc.Status in grpc-status-details-bin: with grpc-message, well inside 8 KiB once base64. */
const MAX_STATUS_BYTES = 4608;

/** Asserts that `e` is a bounded NarrowtuneError of one of `kinds`; rethrows anything else so fast-check shrinks it. */
function expectTyped(e: unknown, kinds: readonly ErrorKind[] = ['invalid_argument']): void {
  if (!(e instanceof NarrowtuneError) || !kinds.includes(e.kind)) throw e;
  expect(e.violations.length).toBeLessThanOrEqual(MAX_FIELD_VIOLATIONS);
  if (e.kind === 'invalid_argument') expect(e.violations.length).toBeGreaterThan(0);
  for (const v of e.violations) expect(typeof v.field === 'string' && typeof v.description === 'string').toBe(true);
  const status = statusFromError(e);
  expect(encodeURI(status.message).length).toBeLessThanOrEqual(MAX_MESSAGE_WIRE_CHARS);
  expect(Status.encode(status).finish().length).toBeLessThanOrEqual(MAX_STATUS_BYTES);
}

function typedOrThrows<T>(fn: () => T, kinds?: readonly ErrorKind[]): T | undefined {
  try {
    return fn();
  } catch (e) {
    expectTyped(e, kinds);
    return undefined;
  }
}

async function typedOrRejects<T>(p: Promise<T>, kinds?: readonly ErrorKind[]): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    expectTyped(e, kinds);
    return undefined;
  }
}

// Strings as clients send them: any UTF-16 unit (lone surrogates too), regular-expression syntax, and huge ones.
const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
const anyString = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: anyUnit }), fc.string({ unit: 'binary', minLength: 3000, maxLength: 5000 }));
const regexish = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'()[]{}*+?|\\.^$-,:=!<>PpkdswbQE0129aAmlp_'), maxLength: 40 }),
  anyString,
);
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const jobName = fc.oneof(anyString, fc.stringMatching(/^jobs\/[a-z2-7]{0,70}$/), anyString.map((s) => `jobs/${s}`));
const tokenClass = fc.record({ name: fc.oneof(anyString, fc.stringMatching(/^[a-z][a-z0-9_]{0,70}$/)), pattern: regexish });

let dir: string;
let modelRel: string;
let dataRel: string;
let ctx: RequestContext;
let tokenizer: TextTokenizer;

beforeAll(async () => {
  dir = await tempDir('nt-prop-');
  const model = await tinyModel(dir);
  modelRel = relative(dir, model);
  await writeFile(join(dir, 'ok.jsonl'), '{"prompt": "cat:", "completion": " cat"}\n');
  dataRel = 'ok.jsonl';
  ctx = { store: { getJob: async () => null }, modelRoots: [dir], dataRoots: [dir], checkpointEvery: 10 };
  tokenizer = await loadTokenizer(model);
}, 60_000);

describe('job-reference parsers', () => {
  it('parseJobName: an id of the job alphabet, or INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(jobName, (name) => {
        const id = typedOrThrows(() => parseJobName(name));
        if (id !== undefined) expect(id).toMatch(/^[a-z2-7]{1,64}$/);
      }),
      { numRuns: 500 },
    );
  });

  it('GetTuneJob, CancelTuneJob, StreamMetrics, ListTuneJobs', () => {
    const request = fc.record({ name: jobName, fromSequence: int32, pageSize: int32, pageToken: anyString, states: fc.array(int32, { maxLength: 50 }), tenant: anyString });
    fc.assert(
      fc.property(request, (r) => {
        typedOrThrows(() => parseGetTuneJob(GetTuneJobRequest.fromPartial({ name: r.name })));
        typedOrThrows(() => parseCancelTuneJob(CancelTuneJobRequest.fromPartial({ name: r.name })));
        const stream = typedOrThrows(() => parseStreamMetrics(StreamMetricsRequest.fromPartial({ name: r.name, fromSequence: r.fromSequence })));
        if (stream) expect(stream.fromSequence).toBeGreaterThanOrEqual(0);
        const list = typedOrThrows(() => parseListTuneJobs(ListTuneJobsRequest.fromPartial({ pageSize: r.pageSize, pageToken: r.pageToken, states: r.states, tenant: r.tenant })));
        if (list) expect(list.pageSize).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });

  it('page tokens: any string, any JSON behind base64url, or a real token for another filter', () => {
    const token = fc.oneof(
      anyString,
      fc.json().map((j) => Buffer.from(j).toString('base64url')),
      fc.record({ createTime: fc.integer(), queueOrder: fc.integer(), filter: fc.string() }).map(encodePageToken),
    );
    fc.assert(
      fc.property(token, fc.string(), (t, filter) => {
        const cursor = typedOrThrows(() => decodePageToken(t, filter));
        if (cursor) expect(cursor.filter).toBe(filter);
      }),
      { numRuns: 500 },
    );
  });
});

describe('regular expressions and token classes', () => {
  it('compileUserRegex: a pattern that matches any text without throwing, or INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(regexish, fc.array(anyString, { maxLength: 5 }), (source, texts) => {
        const re = typedOrThrows(() => compileUserRegex(source, 'pattern'));
        for (const t of re ? texts : []) {
          expect(typeof re!.test(t)).toBe('boolean');
          const m = re!.exec(t);
          if (m) expect(m.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('checkTokenClasses and compileTokenClasses: classes, or every problem as violations', () => {
    fc.assert(
      fc.property(fc.array(tokenClass, { maxLength: 40 }), (classes) => {
        const v = new Violations();
        checkTokenClasses(v, classes);
        typedOrThrows(() => v.throwIfAny());
        const compiled = typedOrThrows(() => compileTokenClasses(tokenizer, tokenizer.vocabSize, classes));
        if (compiled) expect(compiled.names).toHaveLength(classes.length + 1);
      }),
      { numRuns: 200 },
    );
  });
});

describe('data files', () => {
  // Lines as a client might write them: JSON of any shape, the three forms with wrong values, and raw text.
  const value = fc.oneof(fc.jsonValue(), anyString, fc.constant(null), fc.array(fc.integer({ min: -200, max: 100_000 })));
  const line = fc.oneof(
    fc.json(),
    fc.record({ prompt: value, completion: value }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
    fc.record({ input_ids: value, labels: value }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
    fc.record({ messages: fc.oneof(value, fc.array(fc.record({ role: fc.oneof(anyString, fc.constantFrom('user', 'assistant', 'system')), content: value }), { maxLength: 4 })) }).map((o) =>
      JSON.stringify(o),
    ),
    anyString,
  );
  const file = fc.array(line, { maxLength: 6 }).map((lines) => lines.join('\n'));
  let n = 0;

  it('loadDataset: examples, or INVALID_ARGUMENT naming the file and line', async () => {
    let loaded = 0;
    const okLine = fc.record({ prompt: fc.string({ minLength: 1 }), completion: fc.string({ minLength: 1 }) }).map((o) => JSON.stringify(o));
    const mostlyOk = fc.array(okLine, { minLength: 1, maxLength: 4 }).map((lines) => lines.join('\n'));
    await fc.assert(
      fc.asyncProperty(fc.oneof(file, mostlyOk), fc.integer({ min: 2, max: 64 }), async (text, seqLen) => {
        const path = join(dir, `prop-${n++}.jsonl`);
        await writeFile(path, text);
        const ds = await typedOrRejects(loadDataset(path, tokenizer, { seqLen, field: 'training_data', name: 'data.jsonl' }));
        if (ds) loaded++;
        if (ds) expect(ds.examples.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
    expect(loaded).toBeGreaterThan(0);
  });
});

describe('StartTune and Evaluate', () => {
  const modelRef = fc.oneof(
    fc.constant(undefined),
    fc.oneof(fc.constant(''), anyString).map((value) => ({ source: { $case: 'path' as const, value } })),
    jobName.map((value) => ({ source: { $case: 'job' as const, value } })),
  );
  const path = () => fc.oneof(fc.constant(''), anyString, fc.constant('../../etc/passwd'));
  const number = fc.oneof(int32, fc.double(), fc.constant(undefined));

  const validModel = { source: { $case: 'path' as const, value: '' } };

  it('parseStartTune: a job to store, or one error listing every violation', async () => {
    // Each field is often valid, so that some requests get through every check to the data check and a command.
    const often = <T, U>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<U>) => fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: other, weight: 1 });
    const request = fc.record({
      requestId: often(fc.constant(''), anyString),
      baseModel: often(fc.constant(validModel), modelRef),
      trainingData: often(fc.constant(dataRel), path()),
      validationData: often(fc.constant(''), path()),
      policy: often(
        fc.record({ preset: fc.constantFrom('', 'mlp', 'full'), include: fc.constant([]), exclude: fc.constant([]) }),
        fc.record({ preset: fc.oneof(anyString, fc.constant('')), include: fc.array(regexish, { maxLength: 70 }), exclude: fc.array(regexish, { maxLength: 3 }) }),
      ),
      hyperparameters: often(
        fc.record({ steps: fc.integer({ min: 1, max: 3 }), seqLen: fc.constant(32) }),
        fc.record({ steps: number, epochs: number, learningRate: number, batchSize: number, seqLen: number, warmupSteps: number, clipNorm: number, optimizer: anyString }, { requiredKeys: [] }),
      ),
      tokenClasses: often(fc.constant([]), fc.array(tokenClass, { maxLength: 34 })),
      device: often(fc.constant(''), anyString),
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        if (r.baseModel === validModel) r.baseModel = { source: { $case: 'path', value: modelRel } };
        const command = await typedOrRejects(parseStartTune(StartTuneRequest.fromPartial(r as DeepPartial<StartTuneRequest>), ctx), ['invalid_argument', 'not_found']);
        if (command) accepted++;
        if (command) expect(command.spec.options.policy).toBeDefined();
      }),
      { numRuns: 150 },
    );
    expect(accepted).toBeGreaterThan(0);
  }, 120_000);

  it('parseEvaluate: evaluation options, or one error listing every violation', async () => {
    const often = <T, U>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<U>) => fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: other, weight: 1 });
    const dataset = fc.record({
      path: often(fc.constant(dataRel), path()),
      kind: often(fc.constantFrom(1, 2, 3), int32),
      role: often(fc.constantFrom(0, 1, 2), int32),
      name: anyString,
      maxNewTokens: often(fc.constant(undefined), number),
      answerRegex: often(fc.constant(''), regexish),
    });
    const request = fc.record({
      model: often(fc.constant(validModel), modelRef),
      baseModel: often(fc.constant(undefined), modelRef),
      datasets: fc.array(dataset, { maxLength: 34 }),
      tokenClasses: often(fc.constant([]), fc.array(tokenClass, { maxLength: 3 })),
      batchSize: often(fc.constant(undefined), number),
      seqLen: often(fc.constant(undefined), number),
      device: often(fc.constant(''), anyString),
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        if (r.model === validModel) r.model = { source: { $case: 'path', value: modelRel } };
        const options = await typedOrRejects(parseEvaluate(EvaluateRequest.fromPartial(r as DeepPartial<EvaluateRequest>), ctx), ['invalid_argument', 'not_found']);
        if (options) accepted++;
        if (options) expect(options.datasets.length).toBeGreaterThan(0);
      }),
      { numRuns: 150 },
    );
    expect(accepted).toBeGreaterThan(0);
  }, 120_000);
});
