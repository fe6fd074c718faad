// `narrowtune health`: asks a server's grpc.health.v1 service; exit 0 only when SERVING (for probes).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { NarrowtuneError } from '../util/errors.js';
import { int, parseFlags, str } from './args.js';
import { clientConnection, PROBE_FLAGS } from './client-options.js';
import { serverUnreachable } from './rpc-errors.js';

type HealthClient = grpc.Client & {
  check(req: { service: string }, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
};

/** Exit status 0 only when the server (or the asked service) is SERVING. */
export async function healthCommand(argv: string[]): Promise<number> {
  const f = parseFlags(argv, { ...PROBE_FLAGS, service: { type: 'string' }, 'timeout-ms': { type: 'string' } });
  const { target, tls, credentials, options } = clientConnection(f);
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials, options: grpc.ClientOptions) => HealthClient } } };
  };
  const client = new pkg.grpc.health.v1.Health(target, credentials, options);
  try {
    const status = await new Promise<string>((ok, fail) =>
      client.check({ service: str(f, 'service') ?? '' }, { deadline: Date.now() + (int(f, 'timeout-ms') ?? 3000) }, (e, r) => (e ? fail(e) : ok(r.status))),
    );
    process.stdout.write(`${status}\n`);
    return status === 'SERVING' ? 0 : 1;
  } catch (e) {
    const rpc = e as grpc.ServiceError;
    throw serverUnreachable(rpc, client, target, tls) ?? new NarrowtuneError('unavailable', `health check failed: ${rpc.details ?? rpc.message}`);
  } finally {
    client.close();
  }
}
