// `narrowtune demo`: the paper's learning-versus-forgetting experiment on the shipped base model.
import { buildBaseModel } from '../demo/base-model.js';
import { runDemo } from '../demo/demo.js';
import { DEMO_BASE_MODEL_DIR, DEMO_METHOD_NAMES } from '../demo/demo-plans.js';
import { invalidArgument } from '../util/errors.js';
import { int, list, parseFlags, str } from './args.js';

export async function demoCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    quick: { type: 'boolean' },
    'data-dir': { type: 'string' },
    report: { type: 'string' },
    method: { type: 'string', multiple: true },
    'base-model': { type: 'string' },
    'rebuild-base': { type: 'boolean' },
    lr: { type: 'string', multiple: true },
    steps: { type: 'string' },
    stages: { type: 'string' },
  });
  if (f['rebuild-base'] === true) {
    const r = await buildBaseModel(str(f, 'base-model') ?? DEMO_BASE_MODEL_DIR, {
      onEvent: (e) => {
        if (e.type === 'step' && (e.step % 100 === 0 || e.step === e.totalSteps)) process.stderr.write(`pretraining step ${e.step}/${e.totalSteps}  loss ${e.loss.toFixed(4)}\n`);
        if (e.type === 'eval') process.stderr.write(`${e.kind} ${e.skill}: ${(100 * e.accuracy).toFixed(0)}%\n`);
      },
    });
    process.stderr.write(`wrote ${r.out} (${r.parameters.toLocaleString('en-US')} parameters, ${r.totalSeconds.toFixed(0)} s)\n`);
    return;
  }
  const methods = list(f, 'method');
  for (const m of methods) if (!DEMO_METHOD_NAMES.includes(m)) throw invalidArgument('--method', `unknown method "${m}"; methods: ${DEMO_METHOD_NAMES.join(', ')}`);
  const lrs = list(f, 'lr').map((s) => {
    const lr = Number(s);
    if (!(lr > 0 && lr < 1)) throw invalidArgument('--lr', `expected a learning rate in (0, 1), got "${s}"`);
    return lr;
  });
  const stages = int(f, 'stages');
  if (stages !== undefined && stages < 1) throw invalidArgument('--stages', `expected at least 1, got ${stages}`);
  await runDemo({
    quick: f.quick === true,
    dataDir: str(f, 'data-dir'),
    report: str(f, 'report'),
    methods: methods.length > 0 ? methods : undefined,
    baseModel: str(f, 'base-model'),
    lrs: lrs.length > 0 ? lrs : undefined,
    steps: int(f, 'steps'),
    stages,
  });
}
