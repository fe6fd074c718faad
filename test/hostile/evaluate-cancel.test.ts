// A slow Evaluate whose client cancels, or whose deadline passes, stops: its worker thread is terminated and the
// process goes back to idle, instead of scoring for minutes for nobody.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EvalDataset_Kind, EvaluateRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { liveEvaluationWorkers } from '../../src/eval/run-in-worker.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { tempDir, tinyModel } from '../trainer/fixtures.js';
import { connect, type TestClient, waitFor } from '../service/client.js';
import { waitForIdle } from './cpu.js';

let dir: string;
let server: RunningServer;
let client: TestClient;
let slow: EvaluateRequest;

beforeAll(async () => {
  dir = await tempDir('nt-cancel-');
  const base = await tinyModel(dir);
  // 2,000 prompts × 1,000 greedy tokens: minutes of decoding on the tiny model.
  const lines = Array.from({ length: 2_000 }, (_, i) => JSON.stringify({ prompt: `count ${i}:`, completion: ' 1 2 3' }));
  const data = join(dir, 'long.jsonl');
  await writeFile(data, `${lines.join('\n')}\n`);
  slow = EvaluateRequest.fromPartial({
    model: { source: { $case: 'path', value: base } },
    datasets: [{ path: data, kind: EvalDataset_Kind.GENERATE, maxNewTokens: 1_000 }],
    seqLen: 1_024,
    device: '',
  });
  server = await startServer({ host: '127.0.0.1', port: 0, auth: 'none', dataDir: join(dir, 'data'), modelRoots: [dir], dataRoots: [dir] });
  client = connect(server.port);
});
afterAll(async () => {
  client?.close();
  await server?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

/** Starts the slow evaluation; resolves with its status code once the call ends. */
function evaluate(options: grpc.CallOptions): { code: Promise<grpc.status>; call: grpc.ClientUnaryCall } {
  let call!: grpc.ClientUnaryCall;
  const code = new Promise<grpc.status>((resolve) => {
    call = client.raw.evaluate(slow, new grpc.Metadata(), options, (e) => resolve(e ? e.code : grpc.status.OK));
  });
  return { code, call };
}

describe('a slow Evaluate', () => {
  it('cancelled by the client frees its worker and the CPU', async () => {
    const { code, call } = evaluate({});
    await waitFor(async () => liveEvaluationWorkers() === 1, 10_000);
    // Past the worker's start-up (which loads the model), into decoding.
    await new Promise((r) => setTimeout(r, 1_000));
    call.cancel();
    expect(await code).toBe(grpc.status.CANCELLED);
    await waitFor(async () => liveEvaluationWorkers() === 0, 5_000);
    await waitForIdle();
  });

  it('past its deadline gets DEADLINE_EXCEEDED, and frees its worker and the CPU', async () => {
    const { code } = evaluate({ deadline: Date.now() + 1_500 });
    await waitFor(async () => liveEvaluationWorkers() === 1, 10_000);
    expect(await code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(async () => liveEvaluationWorkers() === 0, 5_000);
    await waitForIdle();
  });
});
