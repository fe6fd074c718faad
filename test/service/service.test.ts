// TuningService over a real gRPC connection on loopback, with the server in this process: the job lifecycle,
// request ids and listing on each store; request checks, evaluation and health on SQLite only.
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, truncate, cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EvaluateRequest, TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { FULL_CHECK_BYTES } from '../../src/service/data-check.js';
import type { RunningServer } from '../../src/service/server.js';
import { describeStores, serverDatabase, storeFactories } from '../store/stores.js';
import { failure, type TestClient, waitFor } from './client.js';
import { startTinyServer, stopTinyServer, type TinyServer } from './tiny-server.js';

const factories = storeFactories();
let served: TinyServer | undefined;
let dir: string;
let base: string;
let data: string;
let server: RunningServer;
let client: TestClient;
describeStores(factories, (f) => {
  beforeAll(async () => {
    served = await startTinyServer('nt-svc-', { checkpointEvery: 5, maxConcurrentJobs: 2, ...(await serverDatabase(f)) });
    ({ dir, base, data, server, client } = served);
  });
  afterAll(() => stopTinyServer(served));

  const hp = (steps: number) => ({ steps, learningRate: 1e-2, batchSize: 4, seqLen: 32 });

  describe('StartTune and StreamMetrics', () => {
    it('runs a job to completion and streams every step', async () => {
      const job = await client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: data, hyperparameters: hp(12) });
      expect(job.name).toMatch(/^jobs\/[a-z2-7]+$/);
      expect([TuneJob_State.PENDING, TuneJob_State.RUNNING]).toContain(job.state);

      const events = await client.stream(job.name);
      expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
      const kinds = events.map((e) => e.event?.$case);
      expect(kinds[0]).toBe('started');
      expect(kinds.at(-1)).toBe('finished');
      const steps = events.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value] : []));
      expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      expect(steps.every((s) => s.loss > 0 && s.tokensPerSecond > 0 && s.totalSteps === 12)).toBe(true);
      expect(kinds.filter((k) => k === 'checkpoint')).toHaveLength(2); // steps 5 and 10

      const done = await client.getJob(job.name);
      expect(done.state).toBe(TuneJob_State.SUCCEEDED);
      expect(done.progress).toEqual({ step: 12, totalSteps: 12 });
      expect(done.trainableTensors).toEqual([
        'model.layers.0.mlp.gate_proj.weight',
        'model.layers.0.mlp.up_proj.weight',
        'model.layers.1.mlp.gate_proj.weight',
        'model.layers.1.mlp.up_proj.weight',
      ]);
      const receipt = JSON.parse(await readFile(join(done.outputPath, 'narrowtune.json'), 'utf8'));
      expect(receipt.frozen_unchanged).toBe(true);
      expect(done.checkpoints.at(-1)).toMatchObject({ final: true, step: 12, path: done.outputPath });
      // The request sent no policy; the echo names the preset the job trained with.
      expect(done.request?.policy).toEqual({ preset: 'mlp_gate_up', include: [], exclude: [] });

      // A dashboard reconnecting after event 7 receives exactly the rest.
      const rest = await client.stream(job.name, 7);
      expect(rest.map((e) => e.sequence)).toEqual(events.slice(7).map((e) => e.sequence));
      expect(rest).toEqual(events.slice(7));
    });

    it('the same request_id makes one job', async () => {
      const req = { requestId: 'idem-1', baseModel: { source: { $case: 'path' as const, value: base } }, trainingData: data, hyperparameters: hp(2) };
      const [a, b] = await Promise.all([client.startTune(req), client.startTune(req)]);
      const c = await client.startTune(req);
      expect(b.name).toBe(a.name);
      expect(c.name).toBe(a.name);
      const all = await client.list(1000);
      expect(all.jobs.filter((j) => j.request?.requestId === 'idem-1')).toHaveLength(1);
      await client.stream(a.name);
    });

    it('cancels a running job promptly and keeps its last checkpoint', async () => {
      const job = await client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: data, hyperparameters: { ...hp(100000), checkpointEvery: 3 } });
      let cancelledAt = 0;
      const events = await client.stream(job.name, 0, (e) => {
        if (e.event?.$case === 'step' && e.event.value.step === 4 && !cancelledAt) {
          cancelledAt = Date.now();
          void client.cancel(job.name);
        }
      });
      const finished = events.at(-1)!;
      expect(finished.event?.$case).toBe('finished');
      expect(Date.now() - cancelledAt).toBeLessThan(10_000);
      const final = await client.getJob(job.name);
      expect(final.state).toBe(TuneJob_State.CANCELLED);
      expect(final.checkpoints.length).toBeGreaterThan(0);
      const again = await failure(client.cancel(job.name));
      expect(again.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(again.message).toMatch(/already CANCELLED/);
    });
  });

  // Request checks, training and evaluation, which no store changes: once, on SQLite.
  if (f.name === 'sqlite') {
    describe('bad requests', () => {
      it('missing fields: INVALID_ARGUMENT listing every violation', async () => {
        const f = await failure(client.startTune({}));
        expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(f.violations.map((v) => v.field).sort()).toEqual(['base_model', 'training_data']);
      });

      it('unknown policy, bad hyper-parameters and a pattern that matches nothing', async () => {
        const f = await failure(
          client.startTune({
            baseModel: { source: { $case: 'path', value: base } },
            trainingData: data,
            policy: { preset: 'everything', include: [], exclude: ['nope'] },
            hyperparameters: { learningRate: -1, batchSize: 0 },
          }),
        );
        expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
        const fields = f.violations.map((v) => v.field);
        expect(fields).toEqual(expect.arrayContaining(['policy.preset', 'policy.exclude[0]', 'hyperparameters.learning_rate', 'hyperparameters.batch_size']));
        expect(f.violations.find((v) => v.field === 'policy.exclude[0]')!.description).toMatch(/valid tensor names: .*mlp\.down_proj\.weight/);
        expect(f.violations.find((v) => v.field === 'policy.preset')!.description).toMatch(/presets: full, mlp, mlp_gate_up, sa_proj, sa_proj_gate_up/);
      });

      it('ten thousand bad fields get a bounded reply, and the server keeps serving', async () => {
        const include = Array.from({ length: 10_000 }, (_, i) => `(bad${i}`);
        const tokenClasses = Array.from({ length: 10_000 }, (_, i) => ({ name: `C${i}`, pattern: '(' }));
        const f = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: data, probeData: data, policy: { include }, tokenClasses }));
        expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(f.violations).toEqual([
          { field: 'token_classes', description: 'at most 32 classes, got 10000' },
          { field: 'policy', description: 'at most 64 include/exclude patterns, got 10000' },
        ]);
        const names = Array.from({ length: 100_000 }, () => 'x'.repeat(30));
        const g = await failure(client.getJob(names.join('/')));
        expect(g.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(g.message.length).toBeLessThan(5000);
        expect((await failure(client.getJob('jobs/aaaaaaaaaaaa'))).code).toBe(grpc.status.NOT_FOUND);
      });

      it('paths outside the roots, through .. or a symlink', async () => {
        const outside = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: '/etc' } }, trainingData: `${dir}/../../etc/passwd` }));
        expect(outside.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(outside.violations.map((v) => v.field).sort()).toEqual(['base_model.path', 'training_data']);
        execFileSync('ln', ['-s', '/etc', join(dir, 'escape')]);
        const link = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: join(dir, 'escape') } }, trainingData: data }));
        expect(link.violations[0]).toMatchObject({ field: 'base_model.path' });
        expect(link.violations[0].description).toMatch(/symbolic link/);
      });

      it('a malformed model file names the file and the problem; the server keeps serving', async () => {
        const broken = join(dir, 'broken');
        await cp(base, broken, { recursive: true });
        await truncate(join(broken, 'model.safetensors'), 1000);
        const f = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: broken } }, trainingData: data }));
        expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(f.violations[0].field).toBe('base_model.path');
        expect(f.violations[0].description).toMatch(/broken\/model\.safetensors: .*truncated/);

        await mkdir(join(dir, 'badjson'), { recursive: true });
        await writeFile(join(dir, 'badjson', 'config.json'), '{ nope');
        const g = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: join(dir, 'badjson') } }, trainingData: data }));
        expect(g.violations[0].description).toMatch(/config\.json/);
        expect((await client.list()).jobs.length).toBeGreaterThan(0);
      });

      it('bad data is refused at StartTune with the file and line; past the size checked there, the job fails with them', async () => {
        const bad = join(dir, 'bad.jsonl');
        await writeFile(bad, '{"prompt":"a","completion":"b"}\n{"prompt": 3}\n');
        const f = await failure(client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: bad, hyperparameters: hp(2) }));
        expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(f.violations).toEqual([{ field: 'training_data', description: expect.stringMatching(/bad\.jsonl:2: /) }]);

        await writeFile(bad, '{"prompt":"a","completion":"b"}\n{"prompt": 3}\n' + '{"prompt":"a","completion":"b"}\n'.repeat(FULL_CHECK_BYTES / 16));
        const job = await client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: bad, hyperparameters: hp(2) });
        await client.stream(job.name);
        const failed = await client.getJob(job.name);
        expect(failed.state).toBe(TuneJob_State.FAILED);
        expect(failed.error?.message).toMatch(/bad\.jsonl:2: /);
      });
    });

    describe('Evaluate, health and listing', () => {
      it('evaluates a finished job against its base model', async () => {
        const job = await client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: data, hyperparameters: hp(20), policy: { preset: '', include: ['.'], exclude: [] } });
        await client.stream(job.name);
        const ds = [{ name: 'train', path: data }];
        const tuned = await client.evaluate(EvaluateRequest.fromPartial({ model: { source: { $case: 'job', value: job.name } }, datasets: ds, device: '' }));
        const before = await client.evaluate(EvaluateRequest.fromPartial({ model: { source: { $case: 'path', value: base } }, datasets: ds, device: '' }));
        expect(tuned.results[0].name).toBe('train');
        expect(tuned.results[0].examples).toBe(16);
        expect(tuned.results[0].loss).toBeLessThan(before.results[0].loss);
        expect(tuned.results[0].tokenAccuracy).toBeGreaterThan(before.results[0].tokenAccuracy);
        const notDone = await failure(client.evaluate(EvaluateRequest.fromPartial({ model: { source: { $case: 'job', value: 'jobs/aaaaaaaaaaaa' } }, datasets: ds, device: '' })));
        expect(notDone.code).toBe(grpc.status.NOT_FOUND);
      });

      it('health answers within milliseconds while a job trains', async () => {
        const job = await client.startTune({ baseModel: { source: { $case: 'path', value: base } }, trainingData: data, hyperparameters: { ...hp(100000), batchSize: 8 } });
        await waitFor(async () => (await client.getJob(job.name)).progress!.step > 2);
        const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, { enums: String })) as unknown as {
          grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials) => grpc.Client & { check: Function } } } };
        };
        const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
        const times: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t0 = performance.now();
          const r = await new Promise<{ status?: string }>((ok, fail) =>
            health.check({ service: 'narrowtune.v1.TuningService' }, (e: Error | null, res: { status: string }) => (e ? fail(e) : ok(res))),
          );
          times.push(performance.now() - t0);
          expect(r.status).toBe('SERVING');
        }
        health.close();
        await client.cancel(job.name);
        times.sort((a, b) => a - b);
        expect(times[10]).toBeLessThan(50);
      });
    });
  }

  describe('jobs in the store', () => {
    it('unknown job: NOT_FOUND; malformed name: INVALID_ARGUMENT', async () => {
      expect((await failure(client.getJob('jobs/aaaaaaaaaaaa'))).code).toBe(grpc.status.NOT_FOUND);
      expect((await failure(client.getJob('jobs/../x'))).code).toBe(grpc.status.INVALID_ARGUMENT);
      expect((await failure(client.stream('jobs/aaaaaaaaaaaa'))).code).toBe(grpc.status.NOT_FOUND);
      expect((await failure(client.list(0, 'garbage'))).code).toBe(grpc.status.INVALID_ARGUMENT);
    });

    it('a request_id that PostgreSQL could not store is refused on either store', async () => {
      const f = await failure(client.startTune({ requestId: 'a\u0000b', baseModel: { source: { $case: 'path', value: base } }, trainingData: data, hyperparameters: hp(2) }));
      expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(f.violations).toEqual([{ field: 'request_id', description: 'must not contain control characters' }]);
    });

    it('lists jobs in pages, newest first, and filters by state', async () => {
      const active = [TuneJob_State.PENDING, TuneJob_State.RUNNING];
      // Every job at rest, so that no state changes between the calls compared.
      const all = await waitFor(async () => {
        const list = await client.list(1000);
        return list.jobs.every((j) => !active.includes(j.state)) && list;
      });
      const created = all.jobs.map((j) => j.createTime!.getTime());
      expect(created).toEqual([...created].sort((a, b) => b - a));
      const seen: string[] = [];
      let token = '';
      do {
        const page = await client.list(2, token);
        expect(page.jobs.length).toBeLessThanOrEqual(2);
        seen.push(...page.jobs.map((j) => j.name));
        token = page.nextPageToken;
      } while (token);
      expect(seen).toEqual(all.jobs.map((j) => j.name));
      const ended = [TuneJob_State.SUCCEEDED, TuneJob_State.CANCELLED];
      const done = await client.list(100, '', ended);
      expect(new Set(done.jobs.map((j) => j.state))).toEqual(new Set(ended));
      expect(done.jobs.map((j) => j.name)).toEqual(all.jobs.filter((j) => ended.includes(j.state)).map((j) => j.name));
    });
  });
});
