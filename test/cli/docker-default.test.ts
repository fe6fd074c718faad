// The Dockerfile's default command is a safe configuration: run as written (with temporary paths for /certs
// and /data, any free port), it serves TLS with API keys and its HEALTHCHECK passes; without certificates it
// refuses to start.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki } from '../support/test-certificates.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');

/** The JSON array of a Dockerfile instruction (HEALTHCHECK: its CMD), continuation lines joined. */
function instruction(name: string): string[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`Dockerfile has no ${name}`);
  return JSON.parse(line.slice(line.indexOf('['))) as string[];
}

function runCli(args: string[], until?: RegExp): Promise<{ code: number | null; stderr: string; stdout: string; port?: number }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => {
      stderr += d;
      const m = until?.exec(stderr);
      if (m) resolve({ code: null, stderr, stdout, port: Number(m[1]) });
    });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    afterCleanups.push(() => p.kill('SIGTERM'));
  });
}

const afterCleanups: (() => void)[] = [];
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nt-docker-'));
});
afterAll(async () => {
  for (const f of afterCleanups) f();
  await rm(dir, { recursive: true, force: true });
});

describe("the Dockerfile's default command", () => {
  it('serves TLS with API keys and passes its health check; refuses to start without certificates', async () => {
    const [entry, script, ...entryArgs] = instruction('ENTRYPOINT');
    expect([entry, script, entryArgs]).toEqual(['node', '/app/bin/narrowtune.js', []]);
    const cmd = instruction('CMD');
    expect(cmd).toEqual(expect.arrayContaining(['--auth', 'api-key', '--tls-cert', '/certs/tls.crt', '--tls-key', '/certs/tls.key']));
    expect(cmd).not.toContain('--allow-insecure');

    const certs = join(dir, 'certs');
    await mkdir(certs);
    const pki = await makeTestPki(dir);
    await copyFile(pki.serverCert, join(certs, 'tls.crt'));
    await copyFile(pki.serverKey, join(certs, 'tls.key'));
    const local = (args: string[], certDir: string) =>
      args.map((a) => a.replace(/^\/certs\//, `${certDir}/`).replace(/^\/data$/, join(dir, 'data')).replace(/^50051$/, '0'));

    const missing = await runCli(local(cmd, join(dir, 'no-certs')));
    expect(missing.code, missing.stderr).toBe(2); // a flag naming an unusable file is bad usage
    expect(missing.stderr).toMatch(/--tls-cert: cannot read .*no-certs\/tls\.crt \(ENOENT\)/);

    const serving = await runCli(local(cmd, certs), /narrowtune serving on 0\.0\.0\.0:(\d+) \(TLS, auth api-key/);
    expect(serving.port).toBeGreaterThan(0);
    const [node, bin, ...health] = instruction('HEALTHCHECK');
    expect([node, bin]).toEqual(['node', '/app/bin/narrowtune.js']);
    const probe = await runCli(health.map((a) => a.replace(/:50051$/, `:${serving.port}`)));
    expect(probe).toMatchObject({ code: 0, stdout: 'SERVING\n' });
  });
});
