// A TuningService in this process on loopback, serving a tiny model and its training data from a fresh
// temporary directory: the setup of the tests that talk to a real server.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, type RunningServer, type ServerOptions } from '../../src/service/server.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { connect, type TestClient } from './client.js';

export interface TinyServer {
  /** The temporary directory: model and data root, and parent of the server's data directory. */
  dir: string;
  /** The tiny model's directory. */
  base: string;
  /** A training data file. */
  data: string;
  server: RunningServer;
  client: TestClient;
}

/** Starts the server with `options` over the defaults (any port, its data under `dir`, `dir` as the only root). */
export async function startTinyServer(prefix: string, options: Partial<ServerOptions> = {}): Promise<TinyServer> {
  const dir = await tempDir(prefix);
  try {
    const base = await tinyModel(dir, TINY_QWEN2);
    const data = await repeatData(dir);
    const server = await startServer({ port: 0, dataDir: join(dir, 'data'), modelRoots: [dir], dataRoots: [dir], ...options });
    return { dir, base, data, server, client: connect(server.port) };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Closes the client, shuts the server down and removes the directory; safe on a start that failed. */
export async function stopTinyServer(t: TinyServer | undefined): Promise<void> {
  if (!t) return;
  t.client.close();
  await t.server.shutdown();
  await rm(t.dir, { recursive: true, force: true });
}
