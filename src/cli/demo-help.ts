// `narrowtune demo --help`, apart from the command so that printing it loads neither the service nor the trainer.
import { DEMO_BASE_MODEL_DIR, DEMO_METHOD_NAMES, DEMO_PLANS } from '../demo/demo-plans.js';

const lrs = (xs: readonly number[]) => xs.map((x) => x.toExponential(0)).join(', ');

export const DEMO_HELP = `Usage: narrowtune demo [--quick] [--data-dir DIR] [--report FILE] [--method NAME]... [--lr X]...
                      [--steps N] [--stages N] [--base-model DIR]
       narrowtune demo --rebuild-base

Starts the service and, through its gRPC API, has each method learn new skills (classify, count, yes/no,
scene reading, clock reading) one after another at each learning rate of a sweep, probing the base
model's held-out skills while it trains and evaluating after every stage. Each method's runs form a
learning-forgetting curve; the curves are compared at one matched level of learning. Prints the
tables and the paper's claims that the run reproduced, and writes a self-contained HTML report.

Methods: ${DEMO_METHOD_NAMES.join(', ')}.

  --quick            ${DEMO_PLANS.quick.targets!.join(', ')} only, at lr ${lrs(DEMO_PLANS.quick.lrs)}, ${DEMO_PLANS.quick.steps} steps, ${DEMO_PLANS.quick.evalExamples} eval examples per skill;
                     without it every skill in sequence at lr ${lrs(DEMO_PLANS.full.lrs)}, ${DEMO_PLANS.full.steps} steps per skill,
                     ${DEMO_PLANS.full.evalExamples} eval examples
  --data-dir DIR     job store and datasets (default: a new temporary directory)
  --report FILE      HTML report (default DATA_DIR/demo-report.html; results also as .json beside it)
  --method NAME      methods to compare (repeatable; default all)
  --lr X             the learning rates of the sweep (repeatable)
  --steps N          steps per skill
  --stages N         learn the first N skills in the order above (also with --quick)
  --base-model DIR   base model (default the shipped one: ${DEMO_BASE_MODEL_DIR})
  --rebuild-base     re-pretrain the shipped base model from scratch (deterministic; see demo/base-model/BUILD.md)
`;
