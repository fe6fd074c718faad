// The CLI's connection flags: the API key on every call (unary and streaming) and never in an error, TLS
// flags that must come in pairs, and the commands as a user runs them against TLS and non-loopback servers.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuningServiceClient, TuningServiceService, type TuningServiceServer } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { parseFlags } from '../../src/cli/args.js';
import { API_KEY_ENV } from '../../src/cli/client-help.js';
import { clientConnection, PROBE_FLAGS } from '../../src/cli/client-options.js';
import { startServer } from '../../src/service/server.js';
import { makeTestPki, type TestPki } from '../support/test-certificates.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const KEY = 'nt_secret-key.0123456789';

let dir: string;
let pki: TestPki;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-client-options-'));
  pki = await makeTestPki(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const connection = (args: string[], env: NodeJS.ProcessEnv = {}) => clientConnection(parseFlags(args, PROBE_FLAGS), env);

/** A TuningService that only records the `authorization` each call carried. */
async function recordingServer(): Promise<{ port: number; seen: (string | undefined)[]; close: () => void }> {
  const seen: (string | undefined)[] = [];
  const auth = (md: grpc.Metadata) => seen.push(md.get('authorization')[0] as string | undefined);
  const handlers: Partial<TuningServiceServer> = {
    getTuneJob: (call, cb) => {
      auth(call.metadata);
      cb(null, { job: undefined });
    },
    streamMetrics: (call) => {
      auth(call.metadata);
      call.end();
    },
  };
  const server = new grpc.Server();
  server.addService(TuningServiceService, handlers as TuningServiceServer);
  const port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
  return { port, seen, close: () => server.forceShutdown() };
}

async function callBoth(args: string[], env: NodeJS.ProcessEnv): Promise<(string | undefined)[]> {
  const rec = await recordingServer();
  const c = connection([...args, '--target', `127.0.0.1:${rec.port}`], env);
  const client = new TuningServiceClient(c.target, c.credentials, c.options);
  try {
    await new Promise((ok, fail) => client.getTuneJob({ name: 'jobs/x' }, (e, r) => (e ? fail(e) : ok(r))));
    await new Promise((ok, fail) => client.streamMetrics({ name: 'jobs/x', fromSequence: 0 }).on('end', ok).on('error', fail).resume());
    return rec.seen;
  } finally {
    client.close();
    rec.close();
  }
}

describe('client connection flags', () => {
  it('sends the key as a bearer token on unary and streaming calls; the flag wins over the environment', async () => {
    expect(await callBoth(['--api-key', KEY], {})).toEqual([`Bearer ${KEY}`, `Bearer ${KEY}`]);
    expect(await callBoth([], { [API_KEY_ENV]: KEY })).toEqual([`Bearer ${KEY}`, `Bearer ${KEY}`]);
    expect(await callBoth(['--api-key', KEY], { [API_KEY_ENV]: 'other' })).toEqual([`Bearer ${KEY}`, `Bearer ${KEY}`]);
    expect(await callBoth([], {})).toEqual([undefined, undefined]);
  });

  it('refuses a malformed key without repeating it', () => {
    for (const bad of ['with space', 'tab\tkey', 'ünïcode']) {
      expect(() => connection(['--api-key', bad])).toThrow(/^--api-key: an API key is printable ASCII without spaces$/);
      expect(() => connection([], { [API_KEY_ENV]: bad })).toThrow(new RegExp(`^${API_KEY_ENV}: `));
    }
  });

  it('plaintext unless a TLS flag is given; a client certificate needs its key; an unverified server gets no key', async () => {
    expect(connection([]).tls).toBe(false);
    for (const args of [['--tls'], ['--tls-ca', pki.caCert], ['--tls-server-name', 'x'], ['--tls-no-verify']]) expect(connection(args).tls).toBe(true);
    expect(() => connection(['--tls-cert', pki.clientCert])).toThrow(/^--tls-key: a client certificate needs both --tls-cert and --tls-key$/);
    expect(() => connection(['--tls-key', pki.clientKey])).toThrow(/^--tls-cert: /);
    expect(() => connection(['--tls-ca', join(dir, 'nope.pem')])).toThrow(/^--tls-ca: cannot read .*nope\.pem \(ENOENT\)$/);
    expect(() => connection(['--tls-no-verify', '--api-key', KEY])).toThrow(/^--tls-no-verify: sends no API key/);
    expect(connection(['--tls-no-verify'], { [API_KEY_ENV]: KEY }).options.interceptors).toBeUndefined();
  });
});

function runCli(args: string[], opts: { until?: RegExp; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, NODE_NO_WARNINGS: '1', ...opts.env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => {
      stderr += d;
      if (opts.until?.test(stderr)) p.kill('SIGTERM');
    });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the commands over TLS', () => {
  it('health and jobs reach a mutual-TLS server with the CA and a client certificate, and say what is missing without', async () => {
    const server = await startServer({ port: 0, dataDir: join(dir, 'mtls'), tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caCert } });
    const target = ['--target', `localhost:${server.port}`];
    const cert = ['--tls-cert', pki.clientCert, '--tls-key', pki.clientKey];
    try {
      expect(await runCli(['health', ...target, '--tls-ca', pki.caCert, ...cert])).toMatchObject({ code: 0, stdout: 'SERVING\n' });
      expect(await runCli(['jobs', 'list', ...target, '--tls-ca', pki.caCert, ...cert])).toMatchObject({ code: 0, stdout: '' });
      const noCert = await runCli(['jobs', 'list', ...target, '--tls-ca', pki.caCert]);
      expect(noCert.code).toBe(1);
      expect(noCert.stderr).toMatch(/\(tlsv13 alert certificate required\) — the server takes only clients with a certificate it trusts: pass --tls-cert FILE --tls-key FILE/);
      const noCa = await runCli(['health', ...target, '--tls', ...cert]);
      expect(noCa.stderr).toMatch(/not trusted here: pass --tls-ca FILE/);
      const plaintext = await runCli(['health', ...target]);
      expect(plaintext.code).toBe(1);
      expect(plaintext.stderr).toMatch(/\(with --tls-ca FILE, or --tls, if it serves TLS\)/);
    } finally {
      await server.shutdown();
    }
  });

  it('serve beyond loopback without TLS refuses to start and says why; --allow-insecure starts it', async () => {
    const base = ['serve', '--host', '0.0.0.0', '--port', '0', '--data-dir', join(dir, 'exposed')];
    const refused = await runCli(base);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refusing to start: listening on 0\.0\.0\.0 without TLS \(API keys would cross the network in clear\)/);
    const allowed = await runCli([...base, '--allow-insecure'], { until: /narrowtune serving on 0\.0\.0\.0:\d+/ });
    expect(allowed.stderr).toMatch(/warning: listening on 0\.0\.0\.0 without TLS \(API keys would cross the network in clear\), as --allow-insecure asks/);
    expect(allowed.stderr).toMatch(/narrowtune serving on 0\.0\.0\.0:\d+ \(plaintext/);
  });
});
