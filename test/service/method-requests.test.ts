// Issue 14's request fields, without a server: StartTune's adapter and LwF term (values, defaults, violations under
// the request's field paths, the teacher resolved like any model), the job's method summary, and MergeModels.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeepPartial, MergeModelsRequest, StartTuneRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { requireRole } from '../../src/service/access.js';
import { parseMergeModels } from '../../src/service/merge-request.js';
import { methodToProto } from '../../src/service/messages.js';
import { realRoots } from '../../src/service/paths.js';
import type { RequestContext } from '../../src/service/requests.js';
import { parseStartTune } from '../../src/service/start-tune-request.js';
import type { JobRecord } from '../../src/store/job-store.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { repeatData, tempDir, TINY_LLAMA, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

let dir: string;
let base: string;
let teacher: string;
let other: string;
let ctx: RequestContext;
const jobs: Record<string, Partial<JobRecord>> = {};

beforeAll(async () => {
  dir = realRoots([await tempDir('nt-m14-')])[0];
  base = await tinyModel(dir);
  teacher = await tinyModel(dir, { ...TINY_QWEN2, seed: 9 }, 'teacher');
  other = await tinyModel(dir, { ...TINY_LLAMA, hidden: 64 }, 'other');
  await repeatData(dir);
  jobs.done = { id: 'done', state: 'SUCCEEDED', outputPath: teacher };
  jobs.busy = { id: 'busy', state: 'RUNNING', outputPath: null };
  ctx = { store: { getJob: async (id) => (jobs[id] as JobRecord | undefined) ?? null }, modelRoots: [dir], dataRoots: [dir], checkpointEvery: 7 };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const atPath = (value: string) => ({ source: { $case: 'path' as const, value } });
const atJob = (value: string) => ({ source: { $case: 'job' as const, value } });
const startTune = (r: DeepPartial<StartTuneRequest>) => parseStartTune(StartTuneRequest.fromPartial({ baseModel: atPath(base), trainingData: 'train.jsonl', ...r }), ctx);
const merge = (r: DeepPartial<MergeModelsRequest>) => parseMergeModels(MergeModelsRequest.fromPartial(r), ctx);

async function violations(p: Promise<unknown>): Promise<{ field: string; description: string }[]> {
  const e = await p.then(
    () => {
      throw new Error('the request was accepted');
    },
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(NarrowtuneError);
  expect((e as NarrowtuneError).kind).toBe('invalid_argument');
  return (e as NarrowtuneError).violations;
}
const fields = async (p: Promise<unknown>) => (await violations(p)).map((v) => v.field).sort();

describe('StartTune: lwf', () => {
  it('defaults the temperature and the teacher (the base model); the echo keeps what was sent', async () => {
    const cmd = await startTune({ lwf: { weight: 1 } });
    expect(cmd.spec.options.lwf).toEqual({ weight: 1, temperature: 2, teacher: null });
    expect(StartTuneRequest.fromJSON(cmd.spec.request).lwf).toEqual({ weight: 1, temperature: undefined, teacher: undefined });
    expect((await startTune({})).spec.options.lwf).toBeNull();
  });

  it('resolves the teacher like any model: a path inside the roots, or a SUCCEEDED job', async () => {
    expect((await startTune({ lwf: { weight: 0.5, temperature: 4, teacher: atPath('teacher') } })).spec.options.lwf).toEqual({ weight: 0.5, temperature: 4, teacher });
    expect((await startTune({ lwf: { weight: 0.5, teacher: atJob('jobs/done') } })).spec.options.lwf?.teacher).toBe(teacher);
  });

  it('lists bad values, a teacher outside the roots or of another architecture, under lwf.*', async () => {
    expect(await fields(startTune({ lwf: { weight: 0, temperature: -1, teacher: atPath('/etc') } }))).toEqual(['lwf.teacher.path', 'lwf.temperature', 'lwf.weight']);
    const v = await violations(startTune({ lwf: { weight: 1, teacher: atPath('other') } }));
    expect(v).toEqual([{ field: 'lwf.teacher.path', description: expect.stringMatching(/has arch "llama" where the model has "qwen2"; the teacher must have the base model's architecture/) }]);
    await expect(startTune({ lwf: { weight: 1, teacher: atJob('jobs/busy') } })).rejects.toMatchObject({ kind: 'failed_precondition', violations: [{ field: 'lwf.teacher.job' }] });
  });
});

describe('StartTune: adapter', () => {
  it('fills in PEFT defaults and keeps merge_adapter', async () => {
    const cmd = await startTune({ adapter: { targets: ['mlp\\.up_proj'], mergeAdapter: true } });
    expect(cmd.spec.options.lora).toEqual({ rank: 8, alpha: 8, dropout: 0, targets: ['mlp\\.up_proj'] });
    expect(cmd.spec.options.mergeAdapter).toBe(true);
    expect((await startTune({ adapter: { rank: 4, alpha: 16, dropout: 0.1 } })).spec.options.lora).toEqual({ rank: 4, alpha: 16, dropout: 0.1, targets: [] });
  });

  it('lists bad values and targets that match nothing under adapter.*', async () => {
    expect(await fields(startTune({ adapter: { rank: 0, alpha: -1, dropout: 1, targets: ['up_proj', '('] } }))).toEqual([
      'adapter.alpha',
      'adapter.dropout',
      'adapter.rank',
      'adapter.targets[1]',
    ]);
    const v = await violations(startTune({ adapter: { targets: ['up_proj', 'nothing_here'] } }));
    expect(v).toEqual([{ field: 'adapter.targets[1]', description: expect.stringMatching(/"nothing_here" matches no projection weight/) }]);
  });

  it('an adapter on a policy that trains no projection needs targets', async () => {
    expect(await fields(startTune({ policy: { include: ['norm'] }, adapter: {} }))).toEqual(['adapter.targets']);
  });
});

describe("the job's method", () => {
  it('summarises what trains and what the loss adds', async () => {
    const plain = await startTune({});
    expect(methodToProto(plain.spec.options)).toEqual({ kind: 'policy', policy: 'mlp_gate_up', adapter: undefined, lwf: undefined, summary: 'policy mlp_gate_up' });
    const both = await startTune({ adapter: { rank: 4, alpha: 8 }, lwf: { weight: 1, teacher: atPath('teacher') } });
    const method = methodToProto(both.spec.options, StartTuneRequest.fromJSON(both.spec.request));
    expect(method).toMatchObject({ kind: 'lora', adapter: { rank: 4, alpha: 8 }, lwf: { weight: 1, temperature: 2, teacher: atPath('teacher') } });
    // The teacher as the request named it: never the server's path.
    expect(method.summary).toBe('lora r=4 alpha=8 on mlp_gate_up + lwf weight=1 T=2 teacher=teacher');
    expect(methodToProto({ policy: { include: ['x'] } }).summary).toBe('policy custom');
  });
});

describe('MergeModels request', () => {
  it('needs the member role: it writes a model', () => {
    const caller = (role: 'reader' | 'member') => ({ keyId: 'k1', tenant: 't', role, modelRoots: [], dataRoots: [] });
    expect(() => requireRole(caller('reader'), 'MergeModels')).toThrow('MergeModels needs the member or admin role; API key k1 is a reader');
    expect(() => requireRole(caller('member'), 'MergeModels')).not.toThrow();
  });

  it('returns real paths and alpha', async () => {
    expect(await merge({ baseModel: atPath('base'), tunedModel: atJob('jobs/done'), alpha: 0.4, outputPath: 'merged' })).toEqual({
      base,
      tuned: teacher,
      alpha: 0.4,
      out: join(dir, 'merged'),
    });
  });

  it('lists every violation: models, architecture, alpha, output', async () => {
    expect(await fields(merge({ alpha: 2 }))).toEqual(['alpha', 'base_model', 'output_path', 'tuned_model']);
    expect(await fields(merge({ baseModel: atPath('base'), tunedModel: atPath('other'), alpha: Number.NaN, outputPath: '/elsewhere' }))).toEqual([
      'alpha',
      'output_path',
      'tuned_model.path',
    ]);
    expect(await violations(merge({ baseModel: atPath('base'), tunedModel: atPath('teacher'), alpha: 0.5, outputPath: 'teacher' }))).toEqual([
      { field: 'output_path', description: 'must not be base_model or tuned_model' },
    ]);
  });
});
