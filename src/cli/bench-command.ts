// `narrowtune bench`: flags and help. The benchmark itself is src/bench/ (bench.ts runs it).
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runBench } from '../bench/bench.js';
import {
  benchMethod,
  BENCH_CONFIGS,
  DEFAULT_CONFIGS,
  DEFAULT_POLICIES,
  DEFAULT_STEPS,
  DEFAULT_WARMUP,
  LOSS_RTOL,
  TORCH_DEVICES,
  type BenchSettings,
  type TorchDevice,
} from '../bench/configs.js';
import { IDLE_OTHERS_CPUS } from '../bench/proc-stats.js';
import { PRESET_NAMES } from '../policy/policy.js';
import { DEVICES, type Device } from '../runtime/session.js';
import { invalidArgument } from '../util/errors.js';
import { int, list, parseFlags, str } from './args.js';

/** Debian's python3 has python3-torch; elsewhere (a GPU host's PyTorch) pass --python or NARROWTUNE_BENCH_PYTHON. */
const DEFAULT_PYTHON = process.env.NARROWTUNE_BENCH_PYTHON ?? '/usr/bin/python3';

export const BENCH_HELP = `Usage: narrowtune bench [options]

Trains random-initialised models (init-model) on random token data with the real trainer, one fresh
process per row, and prints per configuration and policy: median step time, tokens/s, peak resident
memory and the time to compile the step graph and create the onnxruntime session.

  --config NAME       ${Object.keys(BENCH_CONFIGS).join(' | ')} (repeatable; default ${DEFAULT_CONFIGS.join(', ')})
  --policy NAME       ${PRESET_NAMES.join(' | ')} (repeatable; default ${DEFAULT_POLICIES.join(', ')});
                      NAME+loraR trains rank-R LoRA adapters (alpha 32) on that policy's projections
  --device D          ${DEVICES.join(' | ')}: where narrowtune trains (default cpu), as \`tune --device\`
  --kernels K         auto | fused | portable: how attention and cross-entropy are lowered (default auto:
                      fused onnxruntime kernels, portable MatMul/Softmax ones on WebGPU), to measure the choice
  --frozen-precision P  float32 | checkpoint: as \`tune --frozen-precision\` (default float32)
  --steps N           measured optimizer steps per row (default ${DEFAULT_STEPS}), after --warmup
  --warmup N          untimed steps first (default ${DEFAULT_WARMUP})
  --vs-torch          also run each row, interleaved, through bench/torch_trainer.py (PyTorch, float32,
                      same weights, batches and AdamW) and report the speed ratio; a row where the
                      loss of any step differs by more than ${LOSS_RTOL} (relative) is FAILED.
                      Needs a source checkout and a python3 with torch (--python).
  --torch-device D    ${TORCH_DEVICES.join(' | ')}: where the PyTorch baseline trains (default cpu; cuda
                      switches TF32 off so both trainers do float32 arithmetic)
  --python PATH       the python3 that runs the baseline (default \$NARROWTUNE_BENCH_PYTHON or /usr/bin/python3)
  --threads N         threads of both trainers: onnxruntime's intra-op pool, as \`tune --threads\`, and
                      PyTorch's. Without it PyTorch uses the number of CPUs and onnxruntime its default
                      intra-op pool (one thread per physical core), as \`narrowtune tune\` does.
  --json FILE         also write every measurement as JSON
  --profile DIR       instead of timing, profile one step of each row with onnxruntime's profiler,
                      write the trace to DIR and print where the time goes (by op type, node, phase)
  --profile-threads N onnxruntime intra-op threads while profiling (default: its own default, as the
                      trainer); 1 gives a breakdown that other processes on the machine distort least
  --wait-idle S       before each row, wait up to S seconds for other processes to use less than
                      ${IDLE_OTHERS_CPUS} CPUs (default 0: do not wait). Every row reports how many CPUs other processes
                      used during its steps ("others"): on a shared machine, trust rows near 0.
  --row-timeout S     kill a row's process after S seconds and mark the row FAILED (default 0: no limit)
  --cache-dir DIR     where models and data are generated once (default $TMPDIR/narrowtune-bench)
`;

function parseBenchArgs(argv: string[]): BenchSettings {
  const f = parseFlags(argv, {
    config: { type: 'string', multiple: true },
    policy: { type: 'string', multiple: true },
    steps: { type: 'string' },
    warmup: { type: 'string' },
    'vs-torch': { type: 'boolean' },
    threads: { type: 'string' },
    json: { type: 'string' },
    profile: { type: 'string' },
    'cache-dir': { type: 'string' },
    'wait-idle': { type: 'string' },
    'profile-threads': { type: 'string' },
    device: { type: 'string' },
    kernels: { type: 'string' },
    'frozen-precision': { type: 'string' },
    'torch-device': { type: 'string' },
    python: { type: 'string' },
    'row-timeout': { type: 'string' },
  });
  const names = list(f, 'config').length > 0 ? list(f, 'config') : DEFAULT_CONFIGS;
  const configs = names.map((n) => {
    const c = BENCH_CONFIGS[n];
    if (!c) throw invalidArgument('--config', `unknown configuration "${n}"; one of ${Object.keys(BENCH_CONFIGS).join(', ')}`);
    return c;
  });
  const policies = list(f, 'policy').length > 0 ? list(f, 'policy') : DEFAULT_POLICIES;
  for (const p of policies) {
    if (!benchMethod(p)) throw invalidArgument('--policy', `unknown policy "${p}"; one of ${PRESET_NAMES.join(', ')}, or one of them +loraR`);
  }
  const device = str(f, 'device') ?? 'cpu';
  if (!(DEVICES as readonly string[]).includes(device)) throw invalidArgument('--device', `unknown device "${device}"; one of ${DEVICES.join(', ')}`);
  const kernels = str(f, 'kernels') ?? 'auto';
  if (!['auto', 'fused', 'portable'].includes(kernels)) throw invalidArgument('--kernels', `unknown lowering "${kernels}"; one of auto, fused, portable`);
  const frozenPrecision = str(f, 'frozen-precision') ?? 'float32';
  if (!['float32', 'checkpoint'].includes(frozenPrecision)) throw invalidArgument('--frozen-precision', `must be float32 or checkpoint, got "${frozenPrecision}"`);
  const torchDevice = str(f, 'torch-device') ?? 'cpu';
  if (!(TORCH_DEVICES as readonly string[]).includes(torchDevice)) {
    throw invalidArgument('--torch-device', `unknown device "${torchDevice}"; one of ${TORCH_DEVICES.join(', ')}`);
  }
  const positive = (name: string, dflt: number, min = 1) => {
    const x = int(f, name) ?? dflt;
    if (x < min) throw invalidArgument(`--${name}`, `must be >= ${min}, got ${x}`);
    return x;
  };
  return {
    configs,
    policies,
    steps: positive('steps', DEFAULT_STEPS),
    warmup: positive('warmup', DEFAULT_WARMUP, 0),
    vsTorch: f['vs-torch'] === true,
    threads: positive('threads', cpus().length),
    ortThreads: int(f, 'threads') === undefined ? null : positive('threads', 1),
    json: str(f, 'json') ?? null,
    profile: str(f, 'profile') ?? null,
    cacheDir: resolve(str(f, 'cache-dir') ?? join(tmpdir(), 'narrowtune-bench')),
    waitIdle: positive('wait-idle', 0, 0),
    profileThreads: int(f, 'profile-threads') === undefined ? null : positive('profile-threads', 1),
    device: device as Device,
    kernels: kernels as BenchSettings['kernels'],
    frozenPrecision: frozenPrecision as BenchSettings['frozenPrecision'],
    torchDevice: torchDevice as TorchDevice,
    python: str(f, 'python') ?? DEFAULT_PYTHON,
    rowTimeout: positive('row-timeout', 0, 0),
  };
}

export async function benchCommand(argv: string[]): Promise<void> {
  await runBench(parseBenchArgs(argv));
}
