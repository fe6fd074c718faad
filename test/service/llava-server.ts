// A server in this process (SQLite, gRPC and web ports) whose only model and data root holds a tiny LLaVA-OneVision
// model, a few PNGs of red squares to count, and image-text data: the setup of the LLaVA service tests. Beside the
// root, a directory outside it holds an image that a symlink inside the root points to.
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import sharp from 'sharp';
import { BadRequestSchema } from '../../src/gen/es/google/rpc/error_details_pb.js';
import { TuningService } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/service/server.js';
import { tempDir } from '../trainer/fixtures.js';
import { connect, type TestClient } from './client.js';

export const COUNTS = ['One', 'Two', 'Three'];

export interface LlavaServer {
  dir: string;
  /** The model and data root. */
  root: string;
  /** Beside the root: `outside/secret.png`. */
  outside: string;
  /** The LLaVA model's directory. */
  model: string;
  server: RunningServer;
  grpc: TestClient;
  connect: Client<typeof TuningService>;
}

/** `n` red 8-pixel squares on a white `width` × 32 PNG. */
export async function squares(file: string, n: number, width = 40): Promise<void> {
  const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 20, b: 20 } } }).png().toBuffer();
  const composite = Array.from({ length: n }, (_, k) => ({ input: red, left: 2 + ((k * 13) % (width - 10)), top: 2 + ((k * 11) % 22) }));
  await sharp({ create: { width, height: 32, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(composite).png().toFile(file);
}

/** A JSONL file of `lines` at `file`. */
export async function jsonl(file: string, lines: object[]): Promise<string> {
  await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return file;
}

/**
 * root/llava (the model), root/images/sq{1,2,3}.png, root/images/cut.png (a PNG with its end cut off: the header
 * reads, the pixels do not), root/images/escape.png → outside/secret.png.
 */
export async function startLlavaServer(prefix: string, options: Partial<ServerOptions> = {}): Promise<LlavaServer> {
  const dir = await tempDir(prefix);
  try {
    const root = join(dir, 'root');
    const outside = join(dir, 'outside');
    await mkdir(join(root, 'images'), { recursive: true });
    await mkdir(outside);
    const model = join(root, 'llava');
    await initLlavaModel({ arch: 'llava-onevision', out: model, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 5 });
    for (let n = 1; n <= 3; n++) await squares(join(root, 'images', `sq${n}.png`), n);
    const whole = await readFile(join(root, 'images', 'sq3.png'));
    await writeFile(join(root, 'images', 'cut.png'), whole.subarray(0, whole.length - 30));
    await squares(join(outside, 'secret.png'), 2);
    await symlink(join(outside, 'secret.png'), join(root, 'images', 'escape.png'));
    const server = await startServer({ port: 0, dataDir: join(dir, 'data'), modelRoots: [root], dataRoots: [root], maxConcurrentJobs: 2, web: { port: 0 }, ...options });
    const api = createClient(TuningService, createConnectTransport({ baseUrl: server.webUrl!, httpVersion: '1.1' }));
    return { dir, root, outside, model, server, grpc: connect(server.port), connect: api };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

export async function stopLlavaServer(s: LlavaServer | undefined): Promise<void> {
  if (!s) return;
  s.grpc.close();
  await s.server.shutdown();
  await rm(s.dir, { recursive: true, force: true });
}

/** A Connect call's INVALID_ARGUMENT field violations; throws if the call succeeds or fails otherwise. */
export async function connectViolations(p: Promise<unknown>): Promise<{ field: string; description: string }[]> {
  try {
    await p;
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code !== Code.InvalidArgument) throw err;
    return err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  }
  throw new Error('expected the call to fail');
}
