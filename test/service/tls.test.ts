// TLS and mutual TLS on the gRPC port with certificates made at test time, the checks on the files at start,
// and the rule that keeps plaintext and unauthenticated servers on loopback.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuningServiceClient } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { type Exposure, exposureVerdict, isLoopbackHost } from '../../src/service/exposure.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/service/server.js';
import { readServerTls } from '../../src/service/tls.js';
import { makeTestPki, type TestPki } from '../support/test-certificates.js';

const CALL_TIMEOUT_MS = 5000;

let dir: string;
let pki: TestPki;
let other: TestPki;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-tls-'));
  [pki, other] = await Promise.all([makeTestPki(dir, 'ours'), makeTestPki(dir, 'other')]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A ListTuneJobs call's outcome: 'ok' or the status code's name. */
async function listOutcome(port: number, creds: grpc.ChannelCredentials): Promise<string> {
  const client = new TuningServiceClient(`127.0.0.1:${port}`, creds);
  try {
    return await new Promise((resolve) =>
      client.listTuneJobs({ pageSize: 1, pageToken: '', states: [], tenant: '' }, new grpc.Metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (e) =>
        resolve(e ? grpc.status[e.code] : 'ok'),
      ),
    );
  } finally {
    client.close();
  }
}

const read = (f: string) => import('node:fs').then((fs) => fs.readFileSync(f));

async function withServer(opts: Partial<ServerOptions>, fn: (s: RunningServer) => Promise<void>): Promise<void> {
  const server = await startServer({ port: 0, dataDir: await mkdtemp(join(dir, 'data-')), ...opts });
  try {
    await fn(server);
  } finally {
    await server.shutdown();
  }
}

describe('TLS', () => {
  it('serves a client that trusts its CA; refuses plaintext clients and clients that do not trust it', async () => {
    await withServer({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey } }, async ({ port }) => {
      expect(await listOutcome(port, grpc.credentials.createSsl(await read(pki.caCert)))).toBe('ok');
      expect(await listOutcome(port, grpc.credentials.createInsecure())).toBe('UNAVAILABLE');
      expect(await listOutcome(port, grpc.credentials.createSsl(await read(other.caCert)))).toBe('UNAVAILABLE');
      expect(await listOutcome(port, grpc.credentials.createSsl())).toBe('UNAVAILABLE'); // system CAs
    });
  });

  it('mutual TLS: refuses a client without a certificate and one whose certificate another CA signed', async () => {
    await withServer({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caCert } }, async ({ port }) => {
      const ca = await read(pki.caCert);
      const withCert = (c: TestPki) => Promise.all([read(c.clientKey), read(c.clientCert)]).then(([k, c2]) => grpc.credentials.createSsl(ca, k, c2));
      expect(await listOutcome(port, await withCert(pki))).toBe('ok');
      expect(await listOutcome(port, grpc.credentials.createSsl(ca))).toBe('UNAVAILABLE');
      expect(await listOutcome(port, await withCert(other))).toBe('UNAVAILABLE');
    });
  });

  it('checks the files at start and names the flag', async () => {
    expect(() => readServerTls({ certFile: join(dir, 'missing.pem'), keyFile: pki.serverKey })).toThrow(/^--tls-cert: cannot read .*missing\.pem \(ENOENT\)$/);
    expect(() => readServerTls({ certFile: pki.serverCert, keyFile: other.serverKey })).toThrow(/^--tls-key: .*other-server-key\.pem is not the private key of the certificate in .*ours-server\.pem$/);
    expect(() => readServerTls({ certFile: pki.serverKey, keyFile: pki.serverKey })).toThrow(/^--tls-cert: .* holds no PEM certificate$/);
    expect(() => readServerTls({ certFile: pki.serverCert, keyFile: pki.serverCert })).toThrow(/^--tls-key: .* holds no unencrypted PEM private key$/);
    const notPem = join(dir, 'not-a-ca.pem');
    await writeFile(notPem, 'hello\n');
    expect(() => readServerTls({ certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: notPem })).toThrow(/^--tls-client-ca: .* holds no PEM certificate$/);
    const files = readServerTls({ certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caCert });
    expect(files.requestCert).toBe(true);
    expect(files.ca?.toString()).toContain('BEGIN CERTIFICATE');
  });
});

describe('loopback only, unless secured', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.1.2.3', false],
    ['::ffff:10.1.2.3', false],
    ['128.0.0.1', false],
    ['localhost.example.com', false],
    ['narrowtune.internal', false],
  ])('%s is loopback: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  const base: Exposure = { host: '0.0.0.0', tls: false, mutualTls: false, auth: 'none', allowInsecure: false };
  // [what, the configuration, refused?, warned?, what the message says]
  const table: [string, Partial<Exposure>, boolean, boolean, RegExp | null][] = [
    ['loopback, plaintext, no auth', { host: '127.0.0.1' }, false, false, null],
    ['loopback ::1, plaintext, keys', { host: '::1', auth: 'api-key' }, false, false, null],
    ['beyond, plaintext, no auth', {}, true, false, /without TLS and without authentication \(anyone who reaches/],
    ['beyond, plaintext, keys', { auth: 'api-key' }, true, false, /without TLS \(API keys would cross the network in clear\)\. Add --tls-cert FILE --tls-key FILE, listen/],
    ['beyond, TLS, no auth', { tls: true }, true, false, /without authentication .* Add --auth api-key \(or client certificates/],
    ['beyond, TLS, keys', { tls: true, auth: 'api-key' }, false, false, null],
    ['beyond, mutual TLS, no auth', { tls: true, mutualTls: true }, false, false, null],
    ['beyond, mutual TLS, keys', { tls: true, mutualTls: true, auth: 'api-key' }, false, false, null],
    ['beyond, plaintext, no auth, --allow-insecure', { allowInsecure: true }, false, true, /^listening on 0\.0\.0\.0 without TLS and without authentication .*as --allow-insecure asks$/],
    ['beyond, plaintext, keys, --allow-insecure', { auth: 'api-key', allowInsecure: true }, false, true, /without TLS \(API keys/],
    ['beyond, TLS, keys, --allow-insecure', { tls: true, auth: 'api-key', allowInsecure: true }, false, false, null],
  ];
  it.each(table)('%s', (_, config, refused, warned, says) => {
    const v = exposureVerdict({ ...base, ...config });
    expect(v.refuse !== null).toBe(refused);
    expect(v.warn !== null).toBe(warned);
    if (says) expect(v.refuse ?? v.warn).toMatch(says);
    if (refused) expect(v.refuse).toMatch(/--allow-insecure where a sidecar or mesh terminates TLS$/);
  });

  it('a server on 0.0.0.0 without TLS and auth refuses to start; with allowInsecure it starts and warns', async () => {
    const dataDir = join(dir, 'refused');
    await expect(startServer({ host: '0.0.0.0', port: 0, dataDir, auth: 'none' })).rejects.toThrow(/^refusing to start: listening on 0\.0\.0\.0 without TLS/);
    // Refused before anything was opened.
    await expect(import('node:fs/promises').then((fs) => fs.stat(dataDir))).rejects.toThrow(/ENOENT/);
    const warnings: string[] = [];
    await withServer({ host: '0.0.0.0', auth: 'none', allowInsecure: true, warn: (m) => warnings.push(m) }, async ({ port }) => {
      expect(await listOutcome(port, grpc.credentials.createInsecure())).toBe('ok');
    });
    expect(warnings).toEqual([expect.stringMatching(/^listening on 0\.0\.0\.0 without TLS and without authentication/)]);
  });
});
