// `narrowtune demo`: the paper's learning-versus-forgetting experiment on the shipped base model.
import { buildBaseModel, DEMO_BASE_MODEL_DIR } from '../demo/base-model.js';
import { DEMO_PLANS, DEMO_POLICIES, runDemo } from '../demo/demo.js';
import { int, list, num, parseFlags, str } from './args.js';

export const DEMO_HELP = `Usage: narrowtune demo [--quick] [--data-dir DIR] [--report FILE] [--policy NAME]... [--base-model DIR]
       narrowtune demo --rebuild-base

Starts the service, and through its gRPC API tunes five new skills (classify, count, yes/no, scene
reading, clock reading) one after another under each policy (default ${DEMO_POLICIES.join(', ')}),
probing the base model's held-out skills while it trains and evaluating after every stage. Prints
the paper-style table (Δ learning, Δ held-out forgetting, number_mass drift per policy) and writes a
self-contained HTML report with charts.

  --quick            ${DEMO_PLANS.quick.steps} steps per stage, ${DEMO_PLANS.quick.evalExamples} eval examples per skill (about two minutes on
                     two cores); without it ${DEMO_PLANS.full.steps} steps and ${DEMO_PLANS.full.evalExamples} examples
  --data-dir DIR     job store and datasets (default: a new temporary directory)
  --report FILE      HTML report (default DATA_DIR/demo-report.html; results also as .json beside it)
  --policy NAME      policies to compare (repeatable)
  --base-model DIR   base model (default the shipped one: ${DEMO_BASE_MODEL_DIR})
  --lr X, --steps N  override the learning rate and the steps per stage (to study their effect)
  --rebuild-base     re-pretrain the shipped base model from scratch (deterministic; see demo/base-model/BUILD.md)
`;

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
