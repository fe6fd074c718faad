// How a CLI command reaches a server: --target, TLS (server CA, client certificate) and the API key, which
// goes as `authorization: Bearer KEY` on every call, streams included, and is never printed.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_TARGET } from '../service/server-defaults.js';
import { invalidArgument } from '../util/errors.js';
import { type Flags, str } from './args.js';
import { API_KEY_ENV } from './client-help.js';

/** The flags of every command that talks to a server. */
export const CLIENT_FLAGS = {
  target: { type: 'string' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
  'api-key': { type: 'string' },
} as const;

/** `health` may also skip verifying the server, for a probe inside the server's own container. */
export const PROBE_FLAGS = { ...CLIENT_FLAGS, 'tls-no-verify': { type: 'boolean' } } as const;

export interface ClientConnection {
  target: string;
  tls: boolean;
  credentials: grpc.ChannelCredentials;
  options: grpc.ClientOptions;
}

/** What a metadata value may hold; checked here so that grpc-js never echoes a bad key in its error. */
const PRINTABLE_TOKEN = /^[\x21-\x7e]+$/;

function read(flag: string, file: string | undefined): Buffer | null {
  if (file === undefined) return null;
  try {
    return readFileSync(file);
  } catch (e) {
    throw invalidArgument(flag, `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function apiKey(f: Flags, env: NodeJS.ProcessEnv): string | null {
  const fromFlag = str(f, 'api-key');
  const key = fromFlag ?? env[API_KEY_ENV] ?? '';
  if (key === '') return null;
  if (!PRINTABLE_TOKEN.test(key)) throw invalidArgument(fromFlag !== undefined ? '--api-key' : API_KEY_ENV, 'an API key is printable ASCII without spaces');
  return key;
}

/** Adds the key to every call's metadata; an interceptor, unlike call credentials, also works without TLS (loopback). */
function bearer(key: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${key}`);
        next(metadata, listener);
      },
    });
}

function usesTls(f: Flags): boolean {
  return ['tls', 'tls-no-verify'].some((n) => f[n] === true) || ['tls-ca', 'tls-cert', 'tls-key', 'tls-server-name'].some((n) => str(f, n) !== undefined);
}

function channelCredentials(f: Flags): grpc.ChannelCredentials {
  const ca = read('--tls-ca', str(f, 'tls-ca'));
  const cert = read('--tls-cert', str(f, 'tls-cert'));
  const key = read('--tls-key', str(f, 'tls-key'));
  if ((cert === null) !== (key === null)) throw invalidArgument(cert === null ? '--tls-cert' : '--tls-key', 'a client certificate needs both --tls-cert and --tls-key');
  if (!usesTls(f)) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(ca, key, cert, f['tls-no-verify'] === true ? { rejectUnauthorized: false } : {});
}

/** The target, credentials and client options the flags (and $NARROWTUNE_API_KEY) ask for. */
export function clientConnection(f: Flags, env: NodeJS.ProcessEnv = process.env): ClientConnection {
  const options: grpc.ClientOptions = {};
  const serverName = str(f, 'tls-server-name');
  if (serverName !== undefined) options['grpc.ssl_target_name_override'] = serverName;
  // An unverified server could be anyone: it gets no key, not even the environment's.
  if (f['tls-no-verify'] === true) {
    if (str(f, 'api-key') !== undefined) throw invalidArgument('--tls-no-verify', 'sends no API key: drop --api-key');
  } else {
    const key = apiKey(f, env);
    if (key !== null) options.interceptors = [bearer(key)];
  }
  return { target: str(f, 'target') ?? DEFAULT_TARGET, tls: usesTls(f), credentials: channelCredentials(f), options };
}
