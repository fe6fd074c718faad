// `narrowtune demo`: the paper's learning-versus-forgetting experiment on the shipped base model.
import { buildBaseModel } from '../demo/base-model.js';
import { runDemo } from '../demo/demo.js';
import { DEMO_BASE_MODEL_DIR } from '../demo/demo-plans.js';
import { int, list, num, parseFlags, str } from './args.js';

export async function demoCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    quick: { type: 'boolean' },
    'data-dir': { type: 'string' },
    report: { type: 'string' },
    policy: { type: 'string', multiple: true },
    'base-model': { type: 'string' },
    'rebuild-base': { type: 'boolean' },
    lr: { type: 'string' },
    steps: { type: 'string' },
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
  const policies = list(f, 'policy');
  await runDemo({
    quick: f.quick === true,
    dataDir: str(f, 'data-dir'),
    report: str(f, 'report'),
    policies: policies.length > 0 ? policies : undefined,
    baseModel: str(f, 'base-model'),
    lr: num(f, 'lr'),
    steps: int(f, 'steps'),
  });
}
