// The web port's HTTP server on its own (no service behind it): the dashboard's files, requests that stall,
// and closing with clients still connected.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as http2 from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Code, ConnectError, type ConnectRouter, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuningService } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';
import { fileFor } from '../../src/web/static-files.js';
import { type RunningWebServer, startWebServer } from '../../src/web/web-server.js';
import { makeTestPki } from '../support/test-certificates.js';
import { tempDir } from '../trainer/fixtures.js';

const RECEIVE_TIMEOUT_MS = 300;
const INDEX = '<!doctype html><title>t</title>';

let dir: string;
let site: string;
let server: RunningWebServer;
let builtSite: string | null;

beforeAll(async () => {
  dir = await tempDir('nt-webserver-');
  site = join(dir, 'site');
  await mkdir(join(site, 'assets'), { recursive: true });
  await writeFile(join(site, 'index.html'), INDEX);
  await writeFile(join(site, 'assets', 'app.js'), 'console.log(1);');
  await writeFile(join(dir, 'secret.txt'), 'not for the web');
  builtSite = site;
  server = await startWebServer(options());
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

function options() {
  return {
    host: '127.0.0.1',
    port: 0,
    // One RPC: a stream slower than the receive timeout. The others answer UNIMPLEMENTED.
    routes: (router: ConnectRouter) =>
      router.service(TuningService, {
        async *streamMetrics() {
          for (let sequence = 1n; sequence <= 2n; sequence++) {
            await new Promise((r) => setTimeout(r, RECEIVE_TIMEOUT_MS * 2));
            yield { sequence };
          }
        },
      }),
    readMaxBytes: 1024,
    staticDir: () => builtSite,
    receiveTimeoutMs: RECEIVE_TIMEOUT_MS,
  };
}

/** Opens a raw connection, writes `text`, and resolves with what came back once the server closes it. */
function rawExchange(text: string): Promise<{ reply: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket: Socket = netConnect(server.port, '127.0.0.1', () => socket.write(text));
    let reply = '';
    socket.on('data', (d) => (reply += d.toString()));
    socket.on('close', () => resolve({ reply, ms: Date.now() - started }));
    socket.on('error', reject);
  });
}

describe('the dashboard files', () => {
  it('index.html at / and for the page\'s own routes; files by type', async () => {
    const index = await fetch(`${server.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await index.text()).toBe(INDEX);
    expect(await (await fetch(`${server.url}/jobs/abc`)).text()).toBe(INDEX);
    const js = await fetch(`${server.url}/assets/app.js?v=1`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toBe('console.log(1);');
    expect((await fetch(`${server.url}/assets/missing.js`)).status).toBe(404);
    expect((await fetch(`${server.url}/`, { method: 'HEAD' })).headers.get('content-length')).toBe(String(INDEX.length));
  });

  it('nothing outside the folder', async () => {
    expect(fileFor(site, '/../secret.txt')).toBeNull();
    expect(fileFor(site, '/%2e%2e/secret.txt')).toBeNull();
    expect(fileFor(site, '/a%00b')).toBeNull();
    expect(fileFor(site, '/%E0%A4%A')).toBeNull();
    expect(fileFor(site, '/assets/app.js')).toBe(join(site, 'assets', 'app.js'));
    const { reply } = await rawExchange('GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(reply).not.toContain('not for the web');
  });

  it('without a built dashboard, / says how to build it', async () => {
    builtSite = null;
    try {
      const res = await fetch(`${server.url}/`);
      expect(res.status).toBe(404);
      expect(await res.text()).toMatch(/dashboard is not built.*npm run build/);
    } finally {
      builtSite = site;
    }
  });
});

describe('requests that stall are dropped', () => {
  it('HTTP/1.1 headers that never end', async () => {
    const { ms } = await rawExchange('POST /narrowtune.v1.TuningService/ListTuneJobs HTTP/1.1\r\nHost: x\r\n');
    expect(ms).toBeLessThan(RECEIVE_TIMEOUT_MS + 3000);
  });

  it('an HTTP/1.1 body that never ends', async () => {
    const { ms } = await rawExchange('POST /narrowtune.v1.TuningService/ListTuneJobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pa');
    expect(ms).toBeGreaterThanOrEqual(RECEIVE_TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(RECEIVE_TIMEOUT_MS + 3000);
  });

  it("an HTTP/2 stream whose body never ends is reset; the connection stays usable", { timeout: 10_000 }, async () => {
    const session = http2.connect(server.url);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/narrowtune.v1.TuningService/ListTuneJobs', 'content-type': 'application/json' });
      stream.write('{"pa');
      const started = Date.now();
      await new Promise<void>((resolve) => {
        stream.on('close', () => resolve());
        stream.on('error', () => {});
        stream.resume();
      });
      expect(Date.now() - started).toBeLessThan(RECEIVE_TIMEOUT_MS + 3000);
      const api = createClient(TuningService, createConnectTransport({ baseUrl: server.url, httpVersion: '2' }));
      const e = await api.listTuneJobs({}).catch((x: unknown) => ConnectError.from(x));
      expect((e as ConnectError).code).toBe(Code.Unimplemented);
    } finally {
      session.destroy();
    }
  });

  it('a connection that sends nothing, or half the HTTP/2 preface, is closed; the others go on meanwhile', async () => {
    const silent = rawExchange('');
    const halfPreface = rawExchange('PRI * HTTP/2.0\r\n');
    expect((await fetch(`${server.url}/`)).status).toBe(200);
    for (const { reply, ms } of await Promise.all([silent, halfPreface])) {
      expect(reply).toBe('');
      expect(ms).toBeLessThan(RECEIVE_TIMEOUT_MS + 3000);
    }
  });
});

describe('under TLS', () => {
  it('a stalled handshake, stalled HTTP/1.1 headers and a silent HTTP/2 connection are closed', async () => {
    const pki = await makeTestPki(dir, 'stall');
    const [cert, key, ca] = await Promise.all([readFile(pki.serverCert), readFile(pki.serverKey), readFile(pki.caCert)]);
    const secure = await startWebServer({ ...options(), tls: { cert, key, ca: null, requestCert: false } });
    try {
      const tlsExchange = (alpn: string[], text: string) =>
        new Promise<number>((resolve, reject) => {
          const started = Date.now();
          const socket = tlsConnect({ port: secure.port, host: '127.0.0.1', ca, servername: 'localhost', ALPNProtocols: alpn }, () => socket.write(text));
          socket.on('data', () => {});
          socket.on('close', () => resolve(Date.now() - started));
          socket.on('error', reject);
        });
      const noHandshake = new Promise<number>((resolve) => {
        const started = Date.now();
        netConnect(secure.port, '127.0.0.1').on('close', () => resolve(Date.now() - started));
      });
      const waits = await Promise.all([noHandshake, tlsExchange(['http/1.1'], 'POST / HTTP/1.1\r\nHost: x\r\n'), tlsExchange(['h2'], '')]);
      for (const ms of waits) expect(ms).toBeLessThan(RECEIVE_TIMEOUT_MS * 2 + 3000);
      expect(await (await fetch(`${server.url}/`)).text()).toBe(INDEX);
    } finally {
      await secure.close();
    }
  });
});

describe('a response is not a request', () => {
  it.each(['1.1', '2'] as const)('a stream quieter than the receive timeout lives on (HTTP/%s)', async (httpVersion) => {
    const api = createClient(TuningService, createConnectTransport({ baseUrl: server.url, httpVersion }));
    const sequences: bigint[] = [];
    for await (const e of api.streamMetrics({ name: 'jobs/x' })) sequences.push(e.sequence);
    expect(sequences).toEqual([1n, 2n]);
  });
});

describe('close', () => {
  it.each([false, true])('cuts idle keep-alive connections at once (TLS: %s)', async (withTls) => {
    const pki = withTls ? await makeTestPki(dir, 'close') : null;
    const ca = pki ? await readFile(pki.caCert) : undefined;
    const tls = pki ? { cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey), ca: null, requestCert: false } : null;
    const own = await startWebServer({ ...options(), tls });
    // Keep-alive connections over both protocols, idle after their first request.
    for (const httpVersion of ['1.1', '2'] as const) {
      const e = await createClient(TuningService, createConnectTransport({ baseUrl: own.url, httpVersion, nodeOptions: { ca } }))
        .listTuneJobs({})
        .catch((x: unknown) => ConnectError.from(x));
      expect((e as ConnectError).code).toBe(Code.Unimplemented);
    }
    const started = Date.now();
    await own.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(fetch(`${own.url}/`)).rejects.toThrow();
  });
});
