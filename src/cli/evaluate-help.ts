// `narrowtune evaluate --help`, apart from the command so that printing it loads nothing heavy.
import { DEVICES } from '../runtime/session.js';
import { EVAL_DEFAULTS, MAX_NEW_TOKENS } from '../eval/evaluate.js';

export const EVALUATE_HELP = `Usage: narrowtune evaluate --model DIR --dataset [NAME=]FILE[,OPTION=VALUE...] ... [options]

Scores a model on datasets here, without a server (the service's Evaluate). With --base, every dataset
is also scored on the base model, with the drift from it, and the paper's summary is printed:
Δ learning / Δ forgetting = mean accuracy change over the target / held-out datasets.

  --model DIR            Hugging Face model directory, or a PEFT LoRA adapter directory
  --base DIR             model to compare with: same architecture and vocabulary
  --dataset SPEC         repeatable; SPEC is [NAME=]FILE followed by comma-separated options:
                           kind=loss|generate|choice   (default loss)
                             loss      any training-data form: loss and next-token accuracy
                             generate  {"prompt","completion"} or chat lines: greedy output, exact match
                             choice    {"prompt","choices","answer"}: the likeliest choice
                           role=target|held-out        counts towards Δ learning / Δ forgetting
                           max-new-tokens=N            generate (default ${EVAL_DEFAULTS.maxNewTokens}, at most ${MAX_NEW_TOKENS})
                           answer-regex=RE             generate: compare RE's first group (or match);
                                                       RE2 syntax; write it last: it takes the rest
                         NAME defaults to FILE's name. On a LLaVA model, generate and choice lines may
                         carry images ("image"/"images" and <image> markers; paths relative to FILE)
  --token-class NAME=RE  with --base: report the probability mass of tokens matching RE (repeatable)
  --batch-size B         sequences per batch (default ${EVAL_DEFAULTS.batchSize})
  --seq-len L            truncate examples to L tokens, image positions included (default ${EVAL_DEFAULTS.seqLen})
  --device D             ${DEVICES.join(' | ')} (default ${EVAL_DEFAULTS.device})
  --threads N            onnxruntime intra-op threads (default: onnxruntime's own pool)
  --feature-cache DIR    LLaVA: keep each image's vision features in DIR (created if missing), so later
                         runs skip the vision tower; a file that does not match is recomputed
  --json                 print the full result as JSON (per-example answers included)

Example:
  narrowtune evaluate --model ./tuned --base ./base \\
    --dataset counts=counts.jsonl,kind=choice,role=target \\
    --dataset docvqa=docvqa.jsonl,kind=generate,role=held-out,max-new-tokens=16
`;
