// Per-key rate limits on StartTune and Evaluate: the token bucket on a fake clock, then over a real connection
// (RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo in the status details).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EvaluateRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { decodeStatusDetails } from '../../src/service/grpc-errors.js';
import { RateLimiter } from '../../src/service/rate-limit.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { tempDir } from '../trainer/fixtures.js';
import { connect, type TestClient } from './client.js';

function refusal(fn: () => void): NarrowtuneError {
  try {
    fn();
  } catch (e) {
    return e as NarrowtuneError;
  }
  throw new Error('expected a refusal');
}

describe('RateLimiter', () => {
  it('allows a burst of the per-minute limit, then one call per 60/N seconds, per key and method', () => {
    let now = 0;
    const limiter = new RateLimiter({ startTunePerMinute: 3, evaluatePerMinute: 0 }, () => now);
    for (let i = 0; i < 3; i++) limiter.take('StartTune', 'k1');
    const e = refusal(() => limiter.take('StartTune', 'k1'));
    expect(e.kind).toBe('resource_exhausted');
    expect(e.details).toEqual({
      quotaViolations: [{ subject: 'key:k1', description: 'StartTune rate limit of 3 per minute per key reached (--rate-limit-start)' }],
      retryDelayMs: 20_000,
    });
    // Another key, and Evaluate (limit 0: off), are not affected.
    limiter.take('StartTune', 'k2');
    for (let i = 0; i < 100; i++) limiter.take('Evaluate', 'k1');
    now = 19_000;
    expect(refusal(() => limiter.take('StartTune', 'k1')).details.retryDelayMs).toBe(1_000);
    now = 20_000;
    limiter.take('StartTune', 'k1');
    expect(() => limiter.take('StartTune', 'k1')).toThrow(NarrowtuneError);
  });

  it('gives callers without a key one shared bucket', () => {
    const limiter = new RateLimiter({ startTunePerMinute: 0, evaluatePerMinute: 1 }, () => 0);
    limiter.take('Evaluate', null);
    expect(refusal(() => limiter.take('Evaluate', null)).details.quotaViolations![0]!.subject).toBe('anonymous');
  });

  it('forgets buckets that have refilled, so new keys cannot grow memory without end', () => {
    let now = 0;
    const limiter = new RateLimiter({ startTunePerMinute: 5, evaluatePerMinute: 5 }, () => now);
    for (let i = 0; i < 1000; i++) limiter.take('StartTune', `key${i}`);
    now = 60_000;
    // The 1,024th call sweeps: the 1,000 buckets untouched for a minute go, the 24 new ones stay.
    for (let i = 0; i < 24; i++) limiter.take('Evaluate', `late${i}`);
    expect(limiter.size).toBe(24);
  });
});

describe('over a real connection', () => {
  let dir: string;
  let server: RunningServer;
  let client: TestClient;

  beforeAll(async () => {
    dir = await tempDir('nt-rate-');
    server = await startServer({
      host: '127.0.0.1',
      port: 0,
      auth: 'none',
      dataDir: join(dir, 'data'),
      modelRoots: [dir],
      dataRoots: [dir],
      rateLimits: { startTunePerMinute: 2, evaluatePerMinute: 1 },
    });
    client = connect(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  async function code(p: Promise<unknown>): Promise<{ code: grpc.status; message: string; details: ReturnType<typeof decodeStatusDetails> }> {
    try {
      await p;
    } catch (e) {
      const err = e as grpc.ServiceError;
      return { code: err.code, message: err.details, details: decodeStatusDetails(err.metadata) };
    }
    throw new Error('expected the call to fail');
  }

  it('StartTune past the limit is RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo; invalid calls count too', async () => {
    // Refused for their content, but they made the server look: they use the allowance.
    expect((await code(client.startTune({}))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await code(client.startTune({}))).code).toBe(grpc.status.INVALID_ARGUMENT);
    const over = await code(client.startTune({}));
    expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(over.message).toMatch(/^StartTune rate limit of 2 per minute per key reached \(--rate-limit-start\); retry in \d+ s$/);
    expect(over.details!.quotaFailure!.violations).toEqual([{ subject: 'anonymous', description: expect.stringContaining('StartTune rate limit') }]);
    expect(over.details!.retryDelayMs).toBeGreaterThan(25_000);
    expect(over.details!.retryDelayMs).toBeLessThanOrEqual(30_000);
  });

  it('Evaluate has its own limit', async () => {
    expect((await code(client.evaluate(EvaluateRequest.fromPartial({})))).code).toBe(grpc.status.INVALID_ARGUMENT);
    const over = await code(client.evaluate(EvaluateRequest.fromPartial({})));
    expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(over.details!.quotaFailure!.violations[0]!.description).toMatch(/^Evaluate rate limit of 1 per minute/);
  });
});
