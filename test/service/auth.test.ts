// API keys, roles, tenant isolation, per-tenant quotas and request ids, over real gRPC connections to in-process
// servers. No job ever trains here (max concurrent jobs 0): every job stays PENDING, which is all that access
// control, quotas and idempotency need; the tenant running limit is tested on the runner (test/runner). Every
// suite runs on each store: keys, jobs, tenants and request ids live there.
import { cp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeepPartial, EvaluateRequest, type StartTuneRequest, TuneJob_State, TuningServiceClient } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { keysCommand } from '../../src/cli/keys-command.js';
import { decodeStatusDetails } from '../../src/service/grpc-errors.js';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { describeStores, serverDatabase, storeFactories } from '../store/stores.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { failure, TestClient } from './client.js';

const factories = storeFactories();
let dir: string;
let dataDir: string;
/** The PostgreSQL store's database; undefined: SQLite in dataDir. */
let databaseUrl: string | undefined;
let base: string;
let data: string;
let server: RunningServer;
const clients: TestClient[] = [];
/** Secrets by name, made with the CLI's own function. */
const key: Record<string, string> = {};

async function keysCli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await keysCommand([...argv, ...(databaseUrl ? ['--database-url', databaseUrl] : [])], { write: (s: string) => (out += s) }, { write: (s: string) => (err += s) });
  return { code, out, err };
}

async function createKey(tenant: string, role: string, ...extra: string[]): Promise<string> {
  const r = await keysCli(['create', '--data-dir', dataDir, '--tenant', tenant, '--role', role, ...extra]);
  expect(r.code).toBe(0);
  return r.out.trim();
}

const idOf = (secret: string) => secret.split('_')[1]!;
/** The random part, which may itself hold '_' (base64url). */
const randomOf = (secret: string) => secret.split('_').slice(2).join('_');

/** A client that sends `authorization` as given (a secret becomes "Bearer <secret>"), or nothing. */
function clientOf(port: number, secretOrHeader?: string): TestClient {
  const header = secretOrHeader === undefined ? undefined : secretOrHeader.startsWith('nt_') ? `Bearer ${secretOrHeader}` : secretOrHeader;
  const interceptor: grpc.Interceptor = (options, next) =>
    new grpc.InterceptingCall(next(options), {
      start(metadata, listener, nextStart) {
        if (header !== undefined) metadata.set('authorization', header);
        nextStart(metadata, listener);
      },
    });
  const c = new TestClient(new TuningServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { interceptors: [interceptor] }));
  clients.push(c);
  return c;
}

const as = (name: string) => clientOf(server.port, key[name]);
const tune = (extra: DeepPartial<StartTuneRequest> = {}): DeepPartial<StartTuneRequest> => ({
  baseModel: { source: { $case: 'path', value: base } },
  trainingData: data,
  hyperparameters: { steps: 2, batchSize: 4, seqLen: 32 },
  ...extra,
});
const evaluateJob = (job: string) => EvaluateRequest.fromPartial({ model: { source: { $case: 'job', value: job } }, datasets: [{ path: data }] });

describeStores(factories, (f) => {
  beforeAll(async () => {
    dir = await tempDir('nt-auth-');
    dataDir = join(dir, 'data');
    ({ databaseUrl } = await serverDatabase(f));
    base = await tinyModel(dir, TINY_QWEN2);
    data = await repeatData(dir);
    // Keys made before the server starts (the CLI creates the database) and while it runs both work.
    key.acme = await createKey('acme', 'member');
    key.acmeReader = await createKey('acme', 'reader');
    server = await startServer({ port: 0, dataDir, databaseUrl, auth: 'api-key', modelRoots: [dir], dataRoots: [dir], maxConcurrentJobs: 0, tenantMaxQueued: 2 });
    key.beta = await createKey('beta', 'member');
    key.admin = await createKey('ops', 'admin');
  });
  afterAll(async () => {
    for (const c of clients.splice(0)) c.close();
    await server?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  describe('narrowtune keys', () => {
    it('create prints the secret alone, once; list never shows it; revoke refuses the key from the next call', async () => {
      const made = await keysCli(['create', '--data-dir', dataDir, '--tenant', 'gamma', '--expires-in', '30d']);
      expect(made.out).toMatch(/^nt_[a-z2-7]{12}_[A-Za-z0-9_-]{43}\n$/);
      const secret = made.out.trim();
      expect(made.err).toContain(`created API key ${idOf(secret)} for tenant gamma (role member`);

      const table = await keysCli(['list', '--data-dir', dataDir]);
      expect(table.out.split('\n')[0]).toMatch(/^ID\s+TENANT\s+ROLE\s+STATUS\s+CREATED \(UTC\)\s+EXPIRES\s+LAST USED/);
      for (const s of Object.values(key).concat(secret)) {
        expect(table.out).toContain(idOf(s));
        expect(table.out).not.toContain(randomOf(s));
      }
      const json = JSON.parse((await keysCli(['list', '--data-dir', dataDir, '--json'])).out) as { id: string; tenant: string; role: string; status: string; expireTime: string | null }[];
      const gamma = json.find((k) => k.id === idOf(secret))!;
      expect(gamma).toMatchObject({ tenant: 'gamma', role: 'member', status: 'active' });
      expect(Date.parse(gamma.expireTime!) - Date.now()).toBeGreaterThan(29 * 86_400_000);
      expect(JSON.stringify(json)).not.toContain(randomOf(secret));

      await clientOf(server.port, secret).list();
      expect((await keysCli(['revoke', idOf(secret), '--data-dir', dataDir])).code).toBe(0);
      const f = await failure(clientOf(server.port, secret).list());
      expect(f.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(f.message).toMatch(new RegExp(`API key ${idOf(secret)} was revoked at \\d{4}-`));
      const after = JSON.parse((await keysCli(['list', '--data-dir', dataDir, '--json'])).out) as { id: string; status: string; lastUsedTime: string | null }[];
      expect(after.find((k) => k.id === idOf(secret))).toMatchObject({ status: 'revoked', lastUsedTime: expect.any(String) });
    });

    it('refuses bad arguments with the flag named', async () => {
      await expect(keysCli(['create', '--data-dir', dataDir, '--tenant', 'x', '--expires-in', '30 days'])).rejects.toThrow(/--expires-in/);
      await expect(keysCli(['create', '--data-dir', dataDir, '--tenant', 'x', '--role', 'owner'])).rejects.toThrow(/--role: expected one of admin, member, reader/);
      await expect(keysCli(['create', '--data-dir', dataDir, '--tenant', 'x', '--model-root', join(dir, 'nowhere')])).rejects.toThrow(/--model-root/);
      await expect(keysCli(['revoke', 'aaaaaaaaaaaa', '--data-dir', dataDir])).rejects.toThrow(/no API key aaaaaaaaaaaa/);
      if (!databaseUrl) await expect(keysCli(['list', '--data-dir', join(dir, 'empty')])).rejects.toThrow(/no narrowtune database/);
    });
  });

  describe('authentication', () => {
    it('no, malformed, unknown, wrong, expired and revoked keys are UNAUTHENTICATED without echoing them', async () => {
      const expired = (await server.store.keys.create({ tenant: 'acme', role: 'member', expireTime: Date.now() - 1 })).secret;
      const unknown = `nt_aaaaaaaaaaaa_${'B'.repeat(43)}`;
      const wrong = `nt_${idOf(key.acme!)}_${'C'.repeat(43)}`;
      const cases: [string | undefined, RegExp][] = [
        [undefined, /no API key: send the metadata "authorization: Bearer <API key>"/],
        ['Basic dXNlcjpwYXNz', /not "Bearer <API key>"/],
        ['Bearer hunter2', /malformed/],
        [unknown, /^unknown API key$/],
        [wrong, /^unknown API key$/],
        [expired, new RegExp(`API key ${idOf(expired)} expired at`)],
      ];
      for (const [header, message] of cases) {
        const f = await failure(clientOf(server.port, header).getJob('jobs/aaaaaaaaaaaa'));
        expect(f.code, String(header)).toBe(grpc.status.UNAUTHENTICATED);
        expect(f.message).toMatch(message);
        for (const secret of ['hunter2', 'B'.repeat(43), 'C'.repeat(43), randomOf(expired)]) expect(f.message).not.toContain(secret);
      }
    });

    it('health stays open without a key', async () => {
      const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, { enums: String })) as unknown as {
        grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials) => grpc.Client & { check: Function } } } };
      };
      const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      try {
        const r = await new Promise<{ status: string }>((ok, fail) => health.check({ service: '' }, (e: Error | null, res: { status: string }) => (e ? fail(e) : ok(res))));
        expect(r.status).toBe('SERVING');
      } finally {
        health.close();
      }
    });

    it('api-key is the default beyond loopback', async () => {
      const warnings: string[] = [];
      const open = await startServer({ host: '0.0.0.0', port: 0, dataDir, databaseUrl, allowInsecure: true, warn: (m) => warnings.push(m), maxConcurrentJobs: 0 });
      try {
        expect((await failure(clientOf(open.port).list())).code).toBe(grpc.status.UNAUTHENTICATED);
        expect((await clientOf(open.port, key.beta).list()).jobs.every((j) => j.tenant === 'beta')).toBe(true);
      } finally {
        await open.shutdown();
      }
      expect(warnings.join('\n')).toMatch(/without TLS/);
    });
  });

  describe('roles', () => {
    it('a reader may get, list and stream, but not start, cancel or evaluate', async () => {
      const job = await as('acme').startTune(tune());
      const reader = as('acmeReader');
      expect((await reader.getJob(job.name)).name).toBe(job.name);
      expect((await reader.list()).jobs.map((j) => j.name)).toContain(job.name);
      for (const [rpc, call] of [
        ['StartTune', () => reader.startTune(tune())],
        ['CancelTuneJob', () => reader.cancel(job.name)],
        ['Evaluate', () => reader.evaluate(evaluateJob(job.name))],
      ] as const) {
        // One at a time: a refusal that arrived before its turn would be an unhandled rejection.
        const f = await failure(call());
        expect(f.code, rpc).toBe(grpc.status.PERMISSION_DENIED);
        expect(f.message).toBe(`${rpc} needs the member or admin role; API key ${idOf(key.acmeReader!)} is a reader`);
      }
      await as('acme').cancel(job.name);
      // The cancel closed the job's stream, so the reader's stream ends.
      expect((await reader.stream(job.name)).map((e) => e.event?.$case)).toEqual(['finished']);
    });
  });

  describe('tenants', () => {
    let acmeJob: string;
    beforeAll(async () => {
      const job = await as('acme').startTune(tune());
      acmeJob = job.name;
      expect(job).toMatchObject({ tenant: 'acme', creatorKeyId: idOf(key.acme!), cancelRequestedBy: '' });
      expect(job.cancelTime).toBeUndefined();
    });

    /** Another tenant's job and a job that does not exist must read alike: code, message (up to the id) and details. */
    async function expectSameDenial(call: (name: string) => Promise<unknown>): Promise<void> {
      const missing = 'jobs/aaaaaaaaaaaa';
      const [foreign, absent] = [await failure(call(acmeJob)), await failure(call(missing))];
      expect(foreign.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(absent.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(foreign.message.replace(acmeJob, 'NAME')).toBe(absent.message.replace(missing, 'NAME'));
      expect(foreign.violations).toEqual(absent.violations);
    }

    it('Get, Stream, Cancel and Evaluate(model.job) of another tenant answer as for a missing job', async () => {
      const beta = as('beta');
      await expectSameDenial((n) => beta.getJob(n));
      await expectSameDenial((n) => beta.stream(n));
      await expectSameDenial((n) => beta.cancel(n));
      await expectSameDenial((n) => beta.evaluate(evaluateJob(n)));
      const f = await failure(beta.getJob('jobs/aaaaaaaaaaaa'));
      expect(f.message).toMatch(/^permission denied on jobs\/aaaaaaaaaaaa, or it does not exist/);
      // The owner gets past the access check: its own job is just not finished.
      expect((await failure(as('acme').evaluate(evaluateJob(acmeJob)))).code).toBe(grpc.status.FAILED_PRECONDITION);
      expect((await as('acme').getJob(acmeJob)).state).toBe(TuneJob_State.PENDING);
    });

    it('StartTune with base_model.job of another tenant is refused the same way', async () => {
      const from = (job: string) => as('beta').startTune(tune({ baseModel: { source: { $case: 'job', value: job } } }));
      const [foreign, absent] = [await failure(from(acmeJob)), await failure(from('jobs/aaaaaaaaaaaa'))];
      expect([foreign.code, absent.code]).toEqual([grpc.status.PERMISSION_DENIED, grpc.status.PERMISSION_DENIED]);
      expect(foreign.violations).toEqual([{ field: 'base_model.job', description: 'no job of your tenant has this name' }]);
      expect(foreign.violations).toEqual(absent.violations);
    });

    it('lists only the caller tenant; admins list every tenant, or one', async () => {
      const betaJob = (await as('beta').startTune(tune())).name;
      const betaList = (await as('beta').list(1000)).jobs;
      expect(betaList.map((j) => j.name)).toContain(betaJob);
      expect(betaList.every((j) => j.tenant === 'beta')).toBe(true);
      expect((await as('acme').list(1000)).jobs.every((j) => j.tenant === 'acme')).toBe(true);
      expect((await as('acme').list(1000, '', [], 'acme')).jobs.length).toBeGreaterThan(0);
      const other = await failure(as('beta').list(10, '', [], 'acme'));
      expect(other.code).toBe(grpc.status.PERMISSION_DENIED);

      const admin = as('admin');
      const all = (await admin.list(1000)).jobs;
      expect(all.map((j) => j.name)).toEqual(expect.arrayContaining([acmeJob, betaJob]));
      const onlyBeta = (await admin.list(1000, '', [], 'beta')).jobs;
      expect(onlyBeta.map((j) => j.name)).toContain(betaJob);
      expect(onlyBeta.every((j) => j.tenant === 'beta')).toBe(true);
      // An admin sees everything, so a missing job is simply NOT_FOUND.
      expect((await failure(admin.getJob('jobs/aaaaaaaaaaaa'))).code).toBe(grpc.status.NOT_FOUND);
      await as('beta').cancel(betaJob);
    });

    it("an admin cancels any tenant's job; the job records who and when", async () => {
      const before = Date.now();
      const cancelled = await as('admin').cancel(acmeJob);
      expect(cancelled).toMatchObject({ state: TuneJob_State.CANCELLED, tenant: 'acme', creatorKeyId: idOf(key.acme!), cancelRequestedBy: idOf(key.admin!) });
      expect(cancelled.cancelTime!.getTime()).toBeGreaterThanOrEqual(before - 5);
      expect(await as('acme').getJob(acmeJob)).toMatchObject({ cancelRequestedBy: idOf(key.admin!), cancelTime: cancelled.cancelTime });
    });

    it('a key narrows the roots it may read; roots outside the server roots are refused, never widened', async () => {
      const narrowDir = join(dir, 'narrow');
      await mkdir(narrowDir);
      await cp(data, join(narrowDir, 'train.jsonl'));
      const narrow = clientOf(server.port, await createKey('narrow', 'member', '--data-root', narrowDir));
      const outside = await failure(narrow.startTune(tune()));
      expect(outside.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(outside.violations.map((v) => v.field)).toEqual(['training_data']);
      const inside = await narrow.startTune(tune({ trainingData: join(narrowDir, 'train.jsonl') }));
      await narrow.cancel(inside.name);

      const wide = clientOf(server.port, await createKey('wide', 'member', '--data-root', tmpdir()));
      const f = await failure(wide.list());
      expect(f.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(f.message).toMatch(/none of its data-root directories lies inside the server's/);
    });
  });

  describe('quotas and request ids', () => {
    it("--tenant-max-queued: RESOURCE_EXHAUSTED with a QuotaFailure naming the tenant; other tenants go on", async () => {
      const q = clientOf(server.port, await createKey('quota', 'member'));
      const jobs = [await q.startTune(tune({ requestId: 'q-1' })), await q.startTune(tune({ requestId: 'q-2' }))];
      let err: grpc.ServiceError | undefined;
      await q.startTune(tune({ requestId: 'q-3' })).catch((e: grpc.ServiceError) => (err = e));
      expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(err?.details).toMatch(/tenant quota has 2 pending jobs, the most --tenant-max-queued allows/);
      expect(decodeStatusDetails(err!.metadata)?.quotaFailure?.violations).toEqual([{ subject: 'tenant:quota', description: expect.stringContaining('--tenant-max-queued') }]);

      // A retry of an accepted request gets its job, even now; the same id with another request is refused.
      expect((await q.startTune(tune({ requestId: 'q-1' }))).name).toBe(jobs[0]!.name);
      const reused = await failure(q.startTune(tune({ requestId: 'q-1', hyperparameters: { steps: 3, batchSize: 4, seqLen: 32 } })));
      expect(reused.code).toBe(grpc.status.ALREADY_EXISTS);
      expect(reused.message).toContain(`request_id "q-1" was already used by a different request (it created ${jobs[0]!.name})`);
      // Request ids are per tenant: another tenant's "q-1" is a new job.
      const betaQ1 = await as('beta').startTune(tune({ requestId: 'q-1' }));
      expect(betaQ1.name).not.toBe(jobs[0]!.name);

      for (const j of jobs) await q.cancel(j.name);
      await as('beta').cancel(betaQ1.name);
      await q.startTune(tune({ requestId: 'q-3' })); // a slot is free again
    });

    it('without authentication: every job is visible, and a retry while the queue is full returns its job', async () => {
      const open = await startServer({ port: 0, dataDir: join(dir, 'open'), ...(await serverDatabase(f)), modelRoots: [dir], dataRoots: [dir], maxConcurrentJobs: 0, maxQueuedJobs: 1 });
      try {
        const c = clientOf(open.port);
        const job = await c.startTune(tune({ requestId: 'r-1' }));
        expect(job).toMatchObject({ tenant: '', creatorKeyId: '' });
        expect((await failure(c.startTune(tune({ requestId: 'r-2' })))).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
        expect((await c.startTune(tune({ requestId: 'r-1' }))).name).toBe(job.name);
        expect((await failure(c.startTune(tune({ requestId: 'r-1', trainingData: join(dir, 'narrow', 'train.jsonl') })))).code).toBe(grpc.status.ALREADY_EXISTS);
        const cancelled = await c.cancel(job.name);
        expect(cancelled).toMatchObject({ state: TuneJob_State.CANCELLED, cancelRequestedBy: '' });
        expect(cancelled.cancelTime).toBeInstanceOf(Date);
        expect((await failure(c.getJob('jobs/aaaaaaaaaaaa'))).code).toBe(grpc.status.NOT_FOUND);
      } finally {
        await open.shutdown();
      }
    });
  });
});
