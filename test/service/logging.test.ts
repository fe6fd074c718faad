// The server's structured log: one line per RPC (method, code, latency, caller), job lifecycle lines, start and
// stop; never a credential or a request body.
import { Writable } from 'node:stream';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartTuneRequest, TuningServiceClient } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { createLogger } from '../../src/util/log.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { waitFor } from './client.js';

type Line = Record<string, unknown> & { msg: string; level: number };

let dir: string;
let base: string;
let data: string;
let server: RunningServer;
let client: TuningServiceClient;
let text = '';
const lines = (): Line[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    text += chunk.toString();
    done();
  },
});

let secret: string;
let keyId: string;
const REQUEST_ID = 'request-id-that-must-not-be-logged';

beforeAll(async () => {
  dir = await tempDir('nt-log-');
  base = await tinyModel(dir, TINY_QWEN2);
  data = await repeatData(dir);
  server = await startServer({ port: 0, dataDir: join(dir, 'data'), modelRoots: [dir], dataRoots: [dir], auth: 'api-key', logger: createLogger('info', sink) });
  const created = await server.store.keys.create({ tenant: 'acme', role: 'member' });
  secret = created.secret;
  keyId = created.key.id;
  client = new TuningServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await server?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

const auth = (value: string) => {
  const m = new grpc.Metadata();
  m.set('authorization', value);
  return m;
};
const call = <T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void) =>
  new Promise<{ error: grpc.ServiceError | null; value: T }>((ok) => fn((error, value) => ok({ error, value })));

describe('logs', () => {
  it('one line per RPC with method, code, latency and caller; job lifecycle lines; never the secret or the body', async () => {
    const start = StartTuneRequest.fromPartial({
      requestId: REQUEST_ID,
      baseModel: { source: { $case: 'path', value: base } },
      trainingData: data,
      hyperparameters: { steps: 4, batchSize: 4, seqLen: 32, checkpointEvery: 2 },
    });
    const started = await call<{ job?: { name: string } }>((cb) => client.startTune(start, auth(`Bearer ${secret}`), cb));
    expect(started.error).toBeNull();
    const name = started.value.job!.name;
    const id = name.slice('jobs/'.length);
    const wrong = await call((cb) => client.getTuneJob({ name }, auth('Bearer nt_aaaaaaaaaaaa_wrong-secret-wrong-secret-wrong-secret-wro'), cb));
    expect(wrong.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    await new Promise<void>((resolve, reject) => {
      const s = client.streamMetrics({ name, fromSequence: 0 }, auth(`Bearer ${secret}`));
      s.on('data', () => {});
      s.on('end', resolve);
      s.on('error', reject);
    });
    await waitFor(async () => lines().some((l) => l.msg === 'job finished'));

    const rpcs = lines().filter((l) => 'rpc' in l);
    const caller = { key: keyId, tenant: 'acme', transport: 'grpc' };
    expect(rpcs.find((l) => l.rpc === 'StartTune')).toMatchObject({ code: 'OK', level: 30, ...caller, ms: expect.any(Number) });
    expect(rpcs.find((l) => l.rpc === 'GetTuneJob')).toMatchObject({ code: 'UNAUTHENTICATED', level: 40, key: null, tenant: null, msg: 'rpc refused' });
    expect(rpcs.find((l) => l.rpc === 'StreamMetrics')).toMatchObject({ code: 'OK', ...caller, sent: expect.any(Number) });
    expect((rpcs.find((l) => l.rpc === 'StreamMetrics')!.sent as number) > 4).toBe(true);

    const job = lines().filter((l) => l.job === id);
    // Step 4's weights are the final model, not a step checkpoint.
    expect(job.map((l) => l.msg)).toEqual(['job created', 'job started', 'job training', 'job checkpoint', 'job finished']);
    expect(job[0]).toMatchObject({ tenant: 'acme', key: keyId });
    expect(job[3]).toMatchObject({ step: 2 });
    expect(job.at(-1)).toMatchObject({ state: 'SUCCEEDED', step: 4 });

    expect(lines()[0]).toMatchObject({ msg: 'server started', port: server.port, tls: false, auth: 'api-key' });
    expect(text).not.toContain(secret);
    expect(text).not.toContain('wrong-secret');
    expect(text).not.toMatch(/bearer/i);
    expect(text).not.toContain(REQUEST_ID);
  });

  it('cancel names who asked', async () => {
    const start = StartTuneRequest.fromPartial({ baseModel: { source: { $case: 'path', value: base } }, trainingData: data, hyperparameters: { steps: 100_000, batchSize: 4, seqLen: 32 } });
    const { value } = await call<{ job?: { name: string } }>((cb) => client.startTune(start, auth(`Bearer ${secret}`), cb));
    const id = value.job!.name.slice('jobs/'.length);
    await waitFor(async () => lines().some((l) => l.job === id && l.msg === 'job training'));
    await call((cb) => client.cancelTuneJob({ name: value.job!.name }, auth(`Bearer ${secret}`), cb));
    await waitFor(async () => lines().some((l) => l.job === id && l.msg === 'job finished'));
    const job = lines().filter((l) => l.job === id);
    expect(job.find((l) => l.msg === 'job cancel requested')).toMatchObject({ by: keyId, tenant: 'acme', state: 'RUNNING' });
    expect(job.find((l) => l.msg === 'job stopping')).toMatchObject({ reason: 'cancel' });
    expect(job.at(-1)).toMatchObject({ msg: 'job finished', state: 'CANCELLED' });
  });
});
