// Certificates made at test time: a CA, a server certificate for localhost/127.0.0.1/::1 and a client
// certificate signed by it, written as PEM files. EC P-256 keys: fast to make.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generate } from 'selfsigned';

export interface TestPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const VALID_MS = 24 * 3600 * 1000;

async function signed(cn: string, ca: { key: string; cert: string }, usage: 'serverAuth' | 'clientAuth') {
  return generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + VALID_MS),
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', [usage]: true },
      ...(usage === 'serverAuth'
        ? [{ name: 'subjectAltName' as const, altNames: [{ type: 2 as const, value: 'localhost' }, { type: 7 as const, ip: '127.0.0.1' }, { type: 7 as const, ip: '::1' }] }]
        : []),
    ],
  });
}

/** A CA with one server and one client certificate, as files in `dir` named `${prefix}-….pem`. */
export async function makeTestPki(dir: string, prefix = 'test'): Promise<TestPki> {
  const ca = await generate([{ name: 'commonName', value: `${prefix} CA` }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + VALID_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const issuer = { key: ca.private, cert: ca.cert };
  const server = await signed('localhost', issuer, 'serverAuth');
  const client = await signed(`${prefix} client`, issuer, 'clientAuth');
  const files: TestPki = {
    caCert: join(dir, `${prefix}-ca.pem`),
    serverCert: join(dir, `${prefix}-server.pem`),
    serverKey: join(dir, `${prefix}-server-key.pem`),
    clientCert: join(dir, `${prefix}-client.pem`),
    clientKey: join(dir, `${prefix}-client-key.pem`),
  };
  await Promise.all([
    writeFile(files.caCert, ca.cert),
    writeFile(files.serverCert, server.cert),
    writeFile(files.serverKey, server.private, { mode: 0o600 }),
    writeFile(files.clientCert, client.cert),
    writeFile(files.clientKey, client.private, { mode: 0o600 }),
  ]);
  return files;
}
