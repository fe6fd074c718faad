// What the proto promises, held to: StartTune answers PENDING, CancelTuneJob answers the cancel it recorded, job
// ids use the documented alphabet, and data is checked before a job is accepted (or as its first phase).
import { cp, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { FULL_CHECK_BYTES } from '../../src/service/data-check.js';
import { failure, type TestClient, waitFor } from './client.js';
import { startTinyServer, stopTinyServer, type TinyServer } from './tiny-server.js';

let served: TinyServer | undefined;
let dir: string;
let base: string;
let data: string;
let client: TestClient;
beforeAll(async () => {
  served = await startTinyServer('nt-contracts-', { maxConcurrentJobs: 1 });
  ({ dir, base, data, client } = served);
});
afterAll(() => stopTinyServer(served));

const model = () => ({ source: { $case: 'path' as const, value: base } });
const long = { steps: 100_000, batchSize: 4, seqLen: 32 };

describe('job states in replies', () => {
  it('StartTune answers PENDING although an idle runner starts the job at once; ids are 12 of [a-z2-7]', async () => {
    const job = await client.startTune({ baseModel: model(), trainingData: data, hyperparameters: long });
    expect(job.state).toBe(TuneJob_State.PENDING);
    expect(job.name).toMatch(/^jobs\/[a-z2-7]{12}$/);
    await waitFor(async () => (await client.getJob(job.name)).state === TuneJob_State.RUNNING);

    // Queued behind it (one job at a time): cancelled at once.
    const queued = await client.startTune({ baseModel: model(), trainingData: data, hyperparameters: long });
    const q = await client.cancel(queued.name);
    expect(q.state).toBe(TuneJob_State.CANCELLED);
    expect(q.cancelTime).toBeInstanceOf(Date);

    // Running: the reply says RUNNING with the cancel recorded; the job comes to rest CANCELLED.
    const r = await client.cancel(job.name);
    expect(r.state).toBe(TuneJob_State.RUNNING);
    expect(r.cancelTime).toBeInstanceOf(Date);
    await waitFor(async () => (await client.getJob(job.name)).state === TuneJob_State.CANCELLED);
    expect((await failure(client.cancel(job.name))).code).toBe(grpc.status.FAILED_PRECONDITION);
  });
});

describe('data checked before a job is accepted', () => {
  it('a malformed line in each file: INVALID_ARGUMENT naming the field, the path as sent and the line', async () => {
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, '{"prompt":"a","completion":"b"}\n{"prompt":"a","completion":"b"\n');
    const probe = join(dir, 'probe.jsonl');
    await writeFile(probe, '{"prompt":"a","completion":"b"}\n{"prompt":"a","completion":"b"}\n{"messages":[]}\n');
    const f = await failure(client.startTune({ baseModel: model(), trainingData: 'bad.jsonl', validationData: data, probeData: probe, hyperparameters: { steps: 2 } }));
    expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(f.violations).toEqual([
      { field: 'training_data', description: expect.stringMatching(/^bad\.jsonl:2: invalid JSON/) },
      { field: 'probe_data', description: expect.stringMatching(/probe\.jsonl:3: this line is in the chat form but line 1 is in the prompt_completion form; a file must use one form$/) },
    ]);
  });

  it("checks with the job's seq_len and vocabulary", async () => {
    const longPrompt = join(dir, 'long-prompt.jsonl');
    await writeFile(longPrompt, `${JSON.stringify({ prompt: 'x'.repeat(100), completion: 'y' })}\n`);
    const f = await failure(client.startTune({ baseModel: model(), trainingData: longPrompt, hyperparameters: { steps: 2, seqLen: 16 } }));
    expect(f.violations).toEqual([{ field: 'training_data', description: expect.stringMatching(/long-prompt\.jsonl:1: no completion tokens left after truncation to --seq-len 16$/) }]);

    const outOfVocab = join(dir, 'out-of-vocab.jsonl');
    await writeFile(outOfVocab, `${JSON.stringify({ input_ids: [1, 2, 999_999] })}\n`);
    const g = await failure(client.startTune({ baseModel: model(), trainingData: outOfVocab, hyperparameters: { steps: 2 } }));
    expect(g.violations[0]).toMatchObject({ field: 'training_data', description: expect.stringMatching(/:1: input_ids\[2\] = 999999 is not a token id/) });
  });

  it('a model without a tokenizer is refused under base_model.path', async () => {
    const bare = join(dir, 'bare');
    await cp(base, bare, { recursive: true });
    await unlink(join(bare, 'tokenizer.json'));
    const f = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: bare } }, trainingData: data, hyperparameters: { steps: 2 } }));
    expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(f.violations).toEqual([{ field: 'base_model.path', description: expect.stringMatching(/tokenizer\.json/) }]);
  });

  it('past the size checked at StartTune, the job reads its data first and fails with the file and line', async () => {
    const big = join(dir, 'big.jsonl');
    const line = `${JSON.stringify({ prompt: 'cat:', completion: ' cat cat cat' })}\n`;
    const filler = line.repeat(Math.ceil(FULL_CHECK_BYTES / line.length));
    await writeFile(big, `${line}{"prompt": 3, "completion": "x"}\n${filler}`);
    const job = await client.startTune({ baseModel: model(), trainingData: big, hyperparameters: { steps: 2, batchSize: 4, seqLen: 32 } });
    expect(job.state).toBe(TuneJob_State.PENDING);
    const failed = await waitFor(async () => {
      const j = await client.getJob(job.name);
      return j.state === TuneJob_State.FAILED ? j : null;
    });
    expect(failed.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(failed.error?.message).toMatch(/big\.jsonl:2: "prompt" must be a string, got number 3$/);
    expect(failed.progress?.step).toBe(0);
  });
});
