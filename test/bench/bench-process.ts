// Runs bench/run.ts as a user does (`npm run bench -- ARGS`), keeping everything it prints for the assertions.
import { spawn } from 'node:child_process';

const RUN = new URL('../../bench/run.ts', import.meta.url).pathname;

export function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d) => (output += d));
    p.stderr.on('data', (d) => (output += d));
    p.on('close', (code) => resolve({ code, output }));
  });
}
