// `narrowtune demo --help`, apart from the command so that printing it loads neither the service nor the trainer.
import { DEMO_BASE_MODEL_DIR, DEMO_PLANS, DEMO_POLICIES } from '../demo/demo-plans.js';

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
