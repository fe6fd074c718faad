// `narrowtune tune --help`, apart from the command so that printing it loads nothing heavy.
import { PRESET_NAMES } from '../policy/policy.js';
import { DEVICES } from '../runtime/session.js';
import { DEFAULT_LWF_TEMPERATURE, DEFAULTS, LORA_DEFAULTS } from '../trainer/options.js';

export const TUNE_HELP = `Usage: narrowtune tune --model DIR --data FILE --out DIR [options]

Fine-tunes a Hugging Face Llama/Qwen2/Qwen3 checkpoint. Only the tensors the policy allows change;
every other tensor is compiled into the graph as a constant, and narrowtune.json in --out proves with
SHA-256 hashes that they did not move.

Input and output (--model, --data and --out are required):
  --model DIR            Hugging Face model directory (config.json, *.safetensors, tokenizer.json)
  --data FILE            JSONL: {"prompt","completion"} | {"messages":[...]} | {"input_ids","labels"}
  --out DIR              output checkpoint directory, written atomically; it must not exist, be empty,
                         or hold an earlier narrowtune output and --overwrite be given
  --overwrite            let --out replace an earlier narrowtune output

Policy (default ${DEFAULTS.policy.preset ?? 'mlp_gate_up'}):
  --policy NAME          ${PRESET_NAMES.join(' | ')}
  --include RE           train tensors whose full name matches RE (repeatable; replaces --policy)
  --exclude RE           keep tensors matching RE frozen (repeatable)

Optimisation (defaults: the paper's recipe, whose small lr needs hundreds of steps to show; a run
too small to change the model says so, and which flags to raise):
  --optimizer adamw|sgd  (default ${DEFAULTS.optimizer})
  --lr X                 peak learning rate (default ${DEFAULTS.lr.toExponential()})
  --weight-decay X       (default ${DEFAULTS.weightDecay})
  --steps N              optimizer steps, cycling through the data as needed
  --epochs N             passes over the data when --steps is not given (default ${DEFAULTS.epochs})
  --batch-size B         sequences per micro-batch (default ${DEFAULTS.batchSize})
  --grad-accum K         micro-batches per optimizer step (default ${DEFAULTS.gradAccum})
  --seq-len L            truncate examples to L tokens (default ${DEFAULTS.seqLen})
  --schedule constant|cosine  (default ${DEFAULTS.schedule})
  --warmup-steps W       linear warm-up steps (default 3% of the steps)
  --clip-norm X          global gradient-norm clip, 0 disables (default ${DEFAULTS.clipNorm})
  --seed S               data order seed (default ${DEFAULTS.seed})
  --device D             ${DEVICES.join(' | ')} (default ${DEFAULTS.device}); auto: cuda if installed, then
                         webgpu if a GPU device node exists (never a software Vulkan), then cpu
  --precision P          float32 | float64 compute (default ${DEFAULTS.precision}; float64 for exactness checks)
  --threads N            onnxruntime intra-op threads (default: onnxruntime's own pool, which on some VMs
                         runs as one thread: set it to the cores and measure)
  --frozen-precision P   float32 | checkpoint (default ${DEFAULTS.frozenPrecision}): checkpoint keeps frozen matrices
                         a BF16/F16 checkpoint stores in that type, cast at each use: the same results with
                         8% less memory and ~25% slower steps on the 0.5B shape (bench/README.md)
  --feature-cache DIR    LLaVA: keep each image's vision features in DIR (created if missing), so later
                         runs skip the vision tower, and hold at most 1 GiB of them in memory; a file
                         that does not match its image, model and settings is recomputed

Validation and drift telemetry:
  --validation-data FILE validation JSONL: loss and token accuracy every --eval-every steps
  --eval-every N         (default: about ten times per run, and the last step)
  --probe-data FILE      held-out JSONL: drift from the base model every --probe-every steps
                         (number_mass, kl_to_base, top1_agreement, heldout_loss, token classes)
  --probe-every N        (default: about ten times per run, and the last step)
  --token-class NAME=RE  report the probability mass of tokens whose text matches RE (repeatable)
  --max-kl-to-base X     drift budget: stop when a probe exceeds it and keep the last checkpoint
  --max-number-mass-delta X        that was within budget as the result
  --max-heldout-loss-delta X

Learning without forgetting (LwF):
  --lwf-weight L         add L·T²·KL(p_teacher ‖ p) at temperature T to the loss, averaged over the label
                         tokens like the cross-entropy; the teacher's logits come from the same graph
  --lwf-temperature T    (default ${DEFAULT_LWF_TEMPERATURE})
  --teacher DIR          teacher model of the same architecture and shapes (default: the base model)

Low-rank adapters (LoRA, as PEFT): y = W x + (alpha/rank)·B(A x) beside each frozen target W; only A and B
train, and --out becomes a PEFT adapter (adapter_config.json, adapter_model.safetensors) beside the base
model, which --model, Evaluate and the probes read as base + adapter:
  --adapter lora         train adapters instead of the policy's weights
  --lora-rank R          (default ${LORA_DEFAULTS.rank})
  --lora-alpha A         (default ${LORA_DEFAULTS.alpha})
  --lora-dropout P       dropout on the adapters' input, seeded per step (default ${LORA_DEFAULTS.dropout})
  --lora-target RE       adapt the projection weights whose name matches RE (repeatable; default: the
                         policy's projection weights, so --policy mlp_gate_up adapts gate and up)
  --merge-adapter        write full weights W + (alpha/rank)·B·A to --out instead of an adapter
`;
