// Server reflection describes both services the server answers, as `grpcurl -plaintext HOST:PORT list` and
// `describe` ask for them: narrowtune.v1.TuningService and grpc.health.v1.Health.
import { createRequire } from 'node:module';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/service/server.js';
import { tempDir } from '../trainer/fixtures.js';

const REFLECTION_PROTO = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}
type ReflectionClient = grpc.Client & { serverReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> };

let dir: string;
let server: RunningServer;
let client: ReflectionClient;
beforeAll(async () => {
  dir = await tempDir('nt-reflection-');
  server = await startServer({ port: 0, dataDir: join(dir, 'data') });
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(REFLECTION_PROTO)) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (target: string, creds: grpc.ChannelCredentials) => ReflectionClient } } };
  };
  client = new pkg.grpc.reflection.v1.ServerReflection(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await server?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

function ask(request: object): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const call = client.serverReflectionInfo();
    call.on('data', (r: ReflectionResponse) => {
      resolve(r);
      call.end();
    });
    call.on('error', reject);
    call.write(request);
  });
}

it('lists the tuning service and the health service', async () => {
  const r = await ask({ listServices: '' });
  expect(r.listServicesResponse!.service.map((s) => s.name).sort()).toEqual(['grpc.health.v1.Health', 'narrowtune.v1.TuningService']);
});

it.for(['grpc.health.v1.Health', 'narrowtune.v1.TuningService'])('describes %s', async (symbol) => {
  const r = await ask({ fileContainingSymbol: symbol });
  expect(r.errorResponse).toBeUndefined();
  const files = r.fileDescriptorResponse!.fileDescriptorProto.map((b) => b.toString('latin1'));
  expect(files.some((f) => f.includes(symbol.slice(symbol.lastIndexOf('.') + 1)))).toBe(true);
});
