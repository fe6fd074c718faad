// `narrowtune health`: asks a server's grpc.health.v1 service; exit 0 only when SERVING (for probes).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { SERVER_DEFAULTS } from '../service/server.js';
import { NarrowtuneError } from '../util/errors.js';
import { int, parseFlags, str } from './args.js';

export const HEALTH_HELP = `Usage: narrowtune health [--target HOST:PORT] [--service NAME] [--timeout-ms N]

Checks grpc.health.v1 on a narrowtune server (default ${SERVER_DEFAULTS.host}:${SERVER_DEFAULTS.port}, service "" =
the whole server). Prints the status; exits 0 only when it is SERVING. Used by the Docker HEALTHCHECK.
`;

type HealthClient = grpc.Client & {
  check(req: { service: string }, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
};

export async function healthCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { target: { type: 'string' }, service: { type: 'string' }, 'timeout-ms': { type: 'string' } });
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials) => HealthClient } } };
  };
  const client = new pkg.grpc.health.v1.Health(str(f, 'target') ?? `${SERVER_DEFAULTS.host}:${SERVER_DEFAULTS.port}`, grpc.credentials.createInsecure());
  try {
    const status = await new Promise<string>((ok, fail) =>
      client.check({ service: str(f, 'service') ?? '' }, { deadline: Date.now() + (int(f, 'timeout-ms') ?? 3000) }, (e, r) => (e ? fail(e) : ok(r.status))),
    );
    process.stdout.write(`${status}\n`);
    if (status !== 'SERVING') process.exitCode = 1;
  } catch (e) {
    throw new NarrowtuneError('unavailable', `health check failed: ${(e as grpc.ServiceError).details ?? (e as Error).message}`);
  } finally {
    client.close();
  }
}
