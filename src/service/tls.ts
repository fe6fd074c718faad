// The server's TLS material, read and checked once at start: PEM buffers for any Node TLS/HTTP2 server and
// the grpc-js credentials made from them. With a client CA, mutual TLS: a client without a certificate
// signed by that CA is refused during the handshake.
import { readFileSync } from 'node:fs';
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../util/errors.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Turns on mutual TLS: clients must present a certificate signed by this CA. */
  clientCaFile?: string;
}

export interface ServerTls {
  /** PEM: the server's certificate chain, its private key, the client CA (null without mutual TLS). */
  cert: Buffer;
  key: Buffer;
  ca: Buffer | null;
  /** True under mutual TLS; pass with `rejectUnauthorized: requestCert` to node:tls or node:http2. */
  requestCert: boolean;
  credentials: grpc.ServerCredentials;
}

function read(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw invalidArgument(flag, `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function certificate(flag: string, file: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw invalidArgument(flag, `${file} holds no PEM certificate`);
  }
}

function privateKey(flag: string, file: string, pem: Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    throw invalidArgument(flag, `${file} holds no unencrypted PEM private key`);
  }
}

/**
 * Reads and checks the files (a certificate, the key that belongs to it, a CA) so that a wrong file fails the
 * start with the flag's name rather than every handshake later.
 */
export function readServerTls(files: TlsFiles): ServerTls {
  const cert = read('--tls-cert', files.certFile);
  const key = read('--tls-key', files.keyFile);
  const leaf = certificate('--tls-cert', files.certFile, cert);
  if (!leaf.checkPrivateKey(privateKey('--tls-key', files.keyFile, key))) {
    throw invalidArgument('--tls-key', `${files.keyFile} is not the private key of the certificate in ${files.certFile}`);
  }
  const ca = files.clientCaFile === undefined ? null : read('--tls-client-ca', files.clientCaFile);
  if (ca) certificate('--tls-client-ca', files.clientCaFile!, ca);
  return {
    cert,
    key,
    ca,
    requestCert: ca !== null,
    // checkClientCertificate: with a CA, a client that presents no certificate is refused too, not only a bad one.
    credentials: grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null),
  };
}
