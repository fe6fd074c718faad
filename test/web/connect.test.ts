// TuningService on the web port, from outside the browser: connect-node's Connect and gRPC-Web clients over
// HTTP/1.1 and HTTP/2 call every RPC (StreamMetrics follows a tiny job to its end and matches the gRPC port
// byte for byte); plain JSON POSTs as curl sends them; error details; API keys; CORS; TLS; shutdown; and the
// requests no client should send. The RPCs and live streams also run on PostgreSQL, over one transport.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequestSchema, QuotaFailureSchema, RetryInfoSchema } from '../../src/gen/es/google/rpc/error_details_pb.js';
import {
  StreamMetricsResponseSchema,
  TuneJob_State,
  TuningService,
  StartTuneRequestSchema,
  type StreamMetricsResponse as EsEvent,
} from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';
import { StreamMetricsResponse } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import type { JobStore } from '../../src/store/job-store.js';
import { describeStores, serverDatabase, storeFactories } from '../store/stores.js';
import { makeTestPki } from '../support/test-certificates.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { connect as grpcConnect, type TestClient, waitFor } from '../service/client.js';

const SERVICE_PATH = '/narrowtune.v1.TuningService';
const ALLOWED_ORIGIN = 'http://dash.example';
const TINY_STEPS = 6;
const HAS_CURL = (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, 'curl')));

type Api = Client<typeof TuningService>;

const TRANSPORTS: [string, (baseUrl: string) => Transport][] = [
  ['Connect JSON over HTTP/1.1', (baseUrl) => createConnectTransport({ baseUrl, httpVersion: '1.1' })],
  ['Connect binary over HTTP/2', (baseUrl) => createConnectTransport({ baseUrl, httpVersion: '2', useBinaryFormat: true })],
  ['gRPC-Web over HTTP/1.1', (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: '1.1' })],
  ['gRPC-Web JSON over HTTP/2', (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: '2', useBinaryFormat: false })],
];

const factories = storeFactories();
let dir: string;
let base: string;
let data: string;
let server: RunningServer;
let grpc: TestClient;
let tinyJob: string;
const tinyRequest = (requestId = 'web-tiny', steps = TINY_STEPS): MessageInitShape<typeof StartTuneRequestSchema> => ({
  requestId,
  baseModel: { source: { case: 'path', value: base } },
  trainingData: data,
  hyperparameters: { steps, learningRate: 1e-2, batchSize: 4, seqLen: 32 },
});
/** The tiny job's whole stream as the gRPC port sends it, encoded: what every web transport must match. */
let grpcStream: Promise<Uint8Array[]>;

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error('expected the call to fail');
}

async function collect(stream: AsyncIterable<EsEvent>): Promise<EsEvent[]> {
  const events: EsEvent[] = [];
  for await (const e of stream) events.push(e);
  return events;
}

/** Counts the store's live subscriptions: one per StreamMetrics follower. */
function countFollowers(store: JobStore): { open: () => number; restore: () => void } {
  const original = store.subscribe;
  let open = 0;
  store.subscribe = (...args: Parameters<JobStore['subscribe']>) => {
    open++;
    const unsubscribe = original.apply(store, args);
    return () => {
      open--;
      unsubscribe();
    };
  };
  return { open: () => open, restore: () => void (store.subscribe = original) };
}

const postJson = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.webUrl}${SERVICE_PATH}/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describeStores(factories, (f) => {
  // Transports and the store are independent: PostgreSQL runs one transport; Evaluate, which the store does not touch,
  // and the web port's own concerns run on SQLite only.
  const transports = f.name === 'sqlite' ? TRANSPORTS : TRANSPORTS.slice(0, 1);

  beforeAll(async () => {
    dir = await tempDir('nt-web-');
    base = await tinyModel(dir, TINY_QWEN2);
    data = await repeatData(dir);
    server = await startServer({ port: 0, dataDir: join(dir, 'data'), ...(await serverDatabase(f)), modelRoots: [dir], dataRoots: [dir], checkpointEvery: 4, maxConcurrentJobs: 2, web: { port: 0, corsOrigins: [ALLOWED_ORIGIN] } });
    grpc = grpcConnect(server.port);
    const api = createClient(TuningService, TRANSPORTS[0]![1](server.webUrl!));
    tinyJob = (await api.startTune(tinyRequest())).job!.name;
    grpcStream = grpc.stream(tinyJob).then((events) => events.map((e) => StreamMetricsResponse.encode(e).finish()));
  });
  afterAll(async () => {
    grpc?.close();
    await server?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  describe.each(transports)('%s', (_name, transport) => {
    let api: Api;
    beforeAll(() => {
      api = createClient(TuningService, transport(server.webUrl!));
    });

    it('StartTune with the same request_id answers the same job', async () => {
      const { job } = await api.startTune(tinyRequest());
      expect(job?.name).toBe(tinyJob);
    });

    it('StreamMetrics follows the tiny job to its end: the events the gRPC port sends, byte for byte', async () => {
      const events = await collect(api.streamMetrics({ name: tinyJob }));
      expect(events[0]?.event.case).toBe('started');
      expect(events.at(-1)?.event.case).toBe('finished');
      expect(events.filter((e) => e.event.case === 'step')).toHaveLength(TINY_STEPS);
      const encoded = events.map((e) => Buffer.from(toBinary(StreamMetricsResponseSchema, e)));
      expect(encoded).toEqual((await grpcStream).map((b) => Buffer.from(b)));
      // A reconnecting reader gets exactly the rest.
      const rest = await collect(api.streamMetrics({ name: tinyJob, fromSequence: 3n }));
      expect(rest.map((e) => e.sequence)).toEqual(events.slice(3).map((e) => e.sequence));
    });

    it('GetTuneJob, ListTuneJobs', async () => {
      const { job } = await api.getTuneJob({ name: tinyJob });
      expect(job).toMatchObject({ name: tinyJob, state: TuneJob_State.SUCCEEDED, progress: { step: TINY_STEPS, totalSteps: TINY_STEPS } });
      expect(job?.createTime?.seconds).toBeGreaterThan(0n);
      const { jobs } = await api.listTuneJobs({ states: [TuneJob_State.SUCCEEDED], pageSize: 100 });
      expect(jobs.map((j) => j.name)).toContain(tinyJob);
    });

    it('CancelTuneJob on a finished job: FAILED_PRECONDITION', async () => {
      const e = await failure(api.cancelTuneJob({ name: tinyJob }));
      expect(e.code).toBe(Code.FailedPrecondition);
      expect(e.rawMessage).toMatch(/already SUCCEEDED/);
    });

    it.runIf(f.name === 'sqlite')('Evaluate the tuned model against its base', async () => {
      const res = await api.evaluate({ model: { source: { case: 'job', value: tinyJob } }, baseModel: { source: { case: 'path', value: base } }, datasets: [{ path: data }] });
      expect(res.results).toHaveLength(1);
      expect(res.results[0]!.loss).toBeGreaterThan(0);
      expect(res.results[0]!.base?.loss).toBeGreaterThan(0);
    });

    it('a bad StartTune: INVALID_ARGUMENT with BadRequest field violations', async () => {
      const e = await failure(api.startTune({}));
      expect(e.code).toBe(Code.InvalidArgument);
      const [badRequest] = e.findDetails(BadRequestSchema);
      expect(badRequest?.fieldViolations.map((v) => v.field).sort()).toEqual(['base_model', 'training_data']);
    });
  });

  describe('a live job', () => {
    let liveJob: string;
    beforeAll(async () => {
      const api = createClient(TuningService, TRANSPORTS[0]![1](server.webUrl!));
      const { job } = await api.startTune(tinyRequest('web-live', 100_000));
      liveJob = job!.name;
      // Training, so the runner's own subscription (made when it claims the job) is not counted as a follower.
      await waitFor(async () => (await grpc.getJob(liveJob)).progress!.step > 0);
    });

    it.each(transports)('a client leaving the stream (%s) stops the store follower', async (_name, transport) => {
      const api = createClient(TuningService, transport(server.webUrl!));
      const followers = countFollowers(server.store);
      try {
        const leave = new AbortController();
        let seen = 0;
        const reading = (async () => {
          for await (const e of api.streamMetrics({ name: liveJob }, { signal: leave.signal })) if (e.event.case === 'step') seen++;
        })().catch((e: unknown) => ConnectError.from(e));
        await waitFor(async () => seen >= 2);
        expect(followers.open()).toBe(1);
        leave.abort();
        expect(((await reading) as ConnectError).code).toBe(Code.Canceled);
        // Usually ~100 ms; a loaded machine once took over 5 s over gRPC-Web on HTTP/1.1 (the server learns of the
        // client's leaving from the socket's close). The job runs 100 000 steps, so a follower that leaks still fails.
        await waitFor(async () => followers.open() === 0, 15_000);
      } finally {
        followers.restore();
      }
    });

    it('CancelTuneJob stops it; its stream ends with the finished event', async () => {
      const api = createClient(TuningService, TRANSPORTS[2]![1](server.webUrl!));
      const events = collect(api.streamMetrics({ name: liveJob }));
      const { job } = await api.cancelTuneJob({ name: liveJob });
      expect(job?.name).toBe(liveJob);
      const last = (await events).at(-1);
      expect(last?.event.case === 'finished' && last.event.value.state).toBe(TuneJob_State.CANCELLED);
    });
  });

  if (f.name === 'sqlite') {
    describe('JSON over plain HTTP (curl)', () => {
      it('GetTuneJob answers the proto3 JSON of the job', async () => {
        const res = await postJson('GetTuneJob', { name: tinyJob });
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('application/json');
        const body = (await res.json()) as { job: { name: string; state: string; progress: unknown; createTime: string } };
        expect(body.job).toMatchObject({ name: tinyJob, state: 'SUCCEEDED', progress: { step: TINY_STEPS, totalSteps: TINY_STEPS } });
        expect(new Date(body.job.createTime).getTime()).toBeGreaterThan(0);
      });

      it.skipIf(!HAS_CURL)('the README command works with curl itself', async () => {
        const { stdout } = await promisify(execFile)('curl', ['-sS', '-H', 'content-type: application/json', '-d', JSON.stringify({ name: tinyJob }), `${server.webUrl}${SERVICE_PATH}/GetTuneJob`]);
        expect(JSON.parse(stdout).job.name).toBe(tinyJob);
      });

      it('errors carry the code, the message and the field violations (readable in `debug`)', async () => {
        const res = await postJson('StartTune', {});
        expect(res.status).toBe(400);
        const body = (await res.json()) as { code: string; message: string; details: { type: string; value: string; debug: { fieldViolations: { field: string }[] } }[] };
        expect(body.code).toBe('invalid_argument');
        expect(body.message).toMatch(/base_model/);
        expect(body.details[0]!.type).toBe('google.rpc.BadRequest');
        expect(body.details[0]!.debug.fieldViolations.map((v) => v.field).sort()).toEqual(['base_model', 'training_data']);
      });

      it('unknown jobs: not_found (HTTP 404)', async () => {
        const res = await postJson('GetTuneJob', { name: 'jobs/aaaaaaaaaaaa' });
        expect(res.status).toBe(404);
        expect(((await res.json()) as { code: string }).code).toBe('not_found');
      });
    });

    describe('what no client should send', () => {
      it('a request over 4 MiB: resource_exhausted', async () => {
        const res = await postJson('StartTune', { trainingData: 'x'.repeat(5 * 1024 * 1024) });
        expect(((await res.json()) as { code: string }).code).toBe('resource_exhausted');
      });

      it('malformed JSON, an unknown field type, a wrong content type, an unknown method', async () => {
        const bad = await fetch(`${server.webUrl}${SERVICE_PATH}/GetTuneJob`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":' });
        expect(((await bad.json()) as { code: string }).code).toBe('invalid_argument');
        const wrongType = await postJson('GetTuneJob', { name: 7 });
        expect(((await wrongType.json()) as { code: string }).code).toBe('invalid_argument');
        const text = await fetch(`${server.webUrl}${SERVICE_PATH}/GetTuneJob`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
        expect(text.status).toBe(415);
        expect((await postJson('DeleteEverything', {})).status).toBe(404);
      });

      it('garbage on the socket gets a 400 and a closed connection; the port keeps answering', async () => {
        const reply = await new Promise<string>((resolve, reject) => {
          const socket = netConnect(new URL(server.webUrl!).port as unknown as number, '127.0.0.1');
          let got = '';
          socket.on('data', (d) => (got += d.toString()));
          socket.on('close', () => resolve(got));
          socket.on('error', reject);
          socket.write('\x00\x01garbage\r\n\r\n');
        });
        expect(reply).toMatch(/^HTTP\/1\.1 400/);
        // A connection that starts like HTTP/2 and breaks off.
        await new Promise<void>((resolve) => {
          const socket = netConnect(Number(new URL(server.webUrl!).port), '127.0.0.1', () => socket.end('PRI * HTTP/2.0\r\n'));
          socket.on('close', () => resolve());
          socket.on('error', () => resolve());
        });
        expect((await postJson('GetTuneJob', { name: tinyJob })).status).toBe(200);
      });

      it('paths outside the dashboard folder are not served', async () => {
        for (const path of ['/..%2f..%2fpackage.json', '/%2e%2e/%2e%2e/package.json', '/%00']) {
          const res = await fetch(`${server.webUrl}${path}`);
          expect(res.status, path).toBeGreaterThanOrEqual(400);
          expect(await res.text()).not.toContain('"name": "narrowtune"');
        }
      });
    });

    describe('CORS', () => {
      const preflight = (origin: string) =>
        fetch(`${server.webUrl}${SERVICE_PATH}/ListTuneJobs`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization,connect-protocol-version' },
        });

      it('a configured origin may call, with authorization among the allowed headers', async () => {
        const res = await preflight(ALLOWED_ORIGIN);
        expect(res.status).toBe(204);
        expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
        expect(res.headers.get('access-control-allow-methods')).toContain('POST');
        expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
        const call = await postJson('ListTuneJobs', {}, { origin: ALLOWED_ORIGIN });
        expect(call.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
        expect(call.headers.get('access-control-expose-headers')?.toLowerCase()).toContain('grpc-status');
      });

      it('any other origin may not', async () => {
        const res = await preflight('http://evil.example');
        expect(res.status).toBe(403);
        expect(res.headers.get('access-control-allow-origin')).toBeNull();
        const call = await postJson('ListTuneJobs', {}, { origin: 'http://evil.example' });
        expect(call.headers.get('access-control-allow-origin')).toBeNull();
      });
    });

    describe('with API keys', () => {
      let keyed: RunningServer;
      let secret: string;
      beforeAll(async () => {
        // No job trains here: a pending job is all that authentication and shutdown need.
        keyed = await startServer({
          port: 0,
          dataDir: join(dir, 'keyed'),
          auth: 'api-key',
          modelRoots: [dir],
          dataRoots: [dir],
          maxConcurrentJobs: 0,
          rateLimits: { startTunePerMinute: 1 },
          web: { port: 0 },
        });
        secret = (await keyed.store.keys.create({ tenant: 'acme', role: 'member' })).secret;
      });
      afterAll(() => keyed?.shutdown());

      it.each(TRANSPORTS)('%s: no key or a wrong one is UNAUTHENTICATED; the key works', async (_name, transport) => {
        const api = createClient(TuningService, transport(keyed.webUrl!));
        expect((await failure(api.listTuneJobs({}))).code).toBe(Code.Unauthenticated);
        const wrong = await failure(api.listTuneJobs({}, { headers: { authorization: 'Bearer nt_wrong_key' } }));
        expect(wrong.code).toBe(Code.Unauthenticated);
        const streamed = await failure(collect(api.streamMetrics({ name: 'jobs/aaaaaaaaaaaa' })));
        expect(streamed.code).toBe(Code.Unauthenticated);
        const { jobs } = await api.listTuneJobs({}, { headers: { authorization: `Bearer ${secret}` } });
        expect(jobs).toEqual([]);
      });

      it('over the rate limit: RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo', async () => {
        const headers = { authorization: `Bearer ${(await keyed.store.keys.create({ tenant: 'rated', role: 'member' })).secret}` };
        const api = createClient(TuningService, TRANSPORTS[3]![1](keyed.webUrl!));
        await api.startTune(tinyRequest('rated-1'), { headers });
        const e = await failure(api.startTune(tinyRequest('rated-2'), { headers }));
        expect(e.code).toBe(Code.ResourceExhausted);
        expect(e.findDetails(QuotaFailureSchema)[0]?.violations.length).toBeGreaterThan(0);
        const delay = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
        expect(Number(delay?.seconds) * 1000 + (delay?.nanos ?? 0) / 1e6).toBeGreaterThan(0);
      });

      it('CORS is off without --cors-origin', async () => {
        const res = await fetch(`${keyed.webUrl}${SERVICE_PATH}/ListTuneJobs`, { method: 'OPTIONS', headers: { origin: ALLOWED_ORIGIN, 'access-control-request-method': 'POST' } });
        expect(res.headers.get('access-control-allow-origin')).toBeNull();
      });

      it('shutdown ends open streams cleanly and closes the port', async () => {
        const headers = { authorization: `Bearer ${secret}` };
        const api = createClient(TuningService, TRANSPORTS[1]![1](keyed.webUrl!));
        const { job } = await api.startTune(tinyRequest('web-pending'), { headers });
        expect(job?.state).toBe(TuneJob_State.PENDING);
        const followers = countFollowers(keyed.store);
        const streams = TRANSPORTS.map(([, t]) => collect(createClient(TuningService, t(keyed.webUrl!)).streamMetrics({ name: job!.name }, { headers })));
        await waitFor(async () => followers.open() === TRANSPORTS.length);
        await keyed.shutdown();
        for (const events of await Promise.all(streams)) expect(events).toEqual([]);
        await expect(fetch(`${keyed.webUrl}/`)).rejects.toThrow();
      });
    });

    describe('with TLS', () => {
      it('HTTPS: HTTP/2 and HTTP/1.1 on the same port, with the gRPC port\'s certificate', async () => {
        const pki = await makeTestPki(dir, 'web');
        const tls = await startServer({ port: 0, dataDir: join(dir, 'tls'), maxConcurrentJobs: 0, tls: { certFile: pki.serverCert, keyFile: pki.serverKey }, web: { port: 0 } });
        try {
          expect(tls.webUrl).toMatch(/^https:/);
          const ca = await readFile(pki.caCert);
          for (const t of [
            createConnectTransport({ baseUrl: tls.webUrl!, httpVersion: '2', nodeOptions: { ca } }),
            createConnectTransport({ baseUrl: tls.webUrl!, httpVersion: '1.1', nodeOptions: { ca } }),
            createGrpcWebTransport({ baseUrl: tls.webUrl!, httpVersion: '2', nodeOptions: { ca } }),
          ]) {
            expect((await createClient(TuningService, t).listTuneJobs({})).jobs).toEqual([]);
          }
          // Plaintext to the TLS port fails rather than being answered in clear.
          await expect(createClient(TuningService, createConnectTransport({ baseUrl: tls.webUrl!.replace('https', 'http'), httpVersion: '1.1' })).listTuneJobs({})).rejects.toThrow();
        } finally {
          await tls.shutdown();
        }
      });
    });
  }
});
