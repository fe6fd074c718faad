// Profiling helper: `npx tsx bench/profile.ts [bench flags]` profiles one training step per row with onnxruntime's
// profiler (same as `npm run bench -- --profile DIR ...`, default DIR bench/profiles), built exactly as tune()
// builds it; `npx tsx bench/profile.ts --summarise TRACE.json [TOP]` re-aggregates an existing trace
// (without node sources, which only the profiling run knows).
import { readFile } from 'node:fs/promises';
import { formatProfile, summariseProfile } from '../src/bench/profile.js';
import { benchCommand } from '../src/cli/bench-command.js';

const argv = process.argv.slice(2);
if (argv[0] === '--summarise') {
  const events = JSON.parse(await readFile(argv[1], 'utf8'));
  process.stdout.write(`${formatProfile(argv[1], summariseProfile(events, null), Number(argv[2] ?? 25))}\n`);
} else {
  await benchCommand(argv.includes('--profile') ? argv : [...argv, '--profile', new URL('./profiles', import.meta.url).pathname]);
}
