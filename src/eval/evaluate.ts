// Scores a model on datasets: mean cross-entropy over label tokens and next-token accuracy.
import type ort from 'onnxruntime-node';
import { collate, padLength } from '../data/batches.js';
import { loadDataset } from '../data/dataset.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { compileEvalStep, EVAL_IO } from '../graph/eval-step.js';
import type { ParamTensor } from '../graph/train-step.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { expectedTensors } from '../model/config.js';
import { toFloat32 } from '../model/safetensors.js';
import { createSession, int64Tensor, type Device } from '../runtime/session.js';
import { invalidArgument } from '../util/errors.js';

export interface EvaluateOptions {
  model: string;
  datasets: { name: string; path: string }[];
  batchSize: number;
  seqLen: number;
  device: Device;
}

export interface DatasetScore {
  name: string;
  loss: number; // nats per label token
  tokenAccuracy: number;
  tokens: number;
  examples: number;
}

export const EVAL_DEFAULTS = { batchSize: 8, seqLen: 1024, device: 'cpu' as Device };

export async function evaluate(o: EvaluateOptions): Promise<DatasetScore[]> {
  if (o.datasets.length === 0) throw invalidArgument('datasets', 'at least one dataset is required');
  const ckpt = await loadCheckpoint(o.model);
  const tokenizer = await loadTokenizer(o.model);
  const params = new Map<string, ParamTensor>(
    [...expectedTensors(ckpt.config).keys()].map((n) => {
      const t = ckpt.tensors.get(n)!;
      return [n, { shape: t.shape, data: toFloat32(t) }];
    }),
  );
  const sets = await Promise.all(o.datasets.map(async (d, i) => ({ ...d, data: await loadDataset(d.path, tokenizer, { seqLen: o.seqLen, field: `datasets[${i}].path` }) })));
  // One padded length for all datasets: one compiled graph scores them all.
  const seq = padLength(sets.flatMap((s) => s.data.examples), o.seqLen);
  const { session } = await createSession(compileEvalStep({ config: ckpt.config, params, batch: o.batchSize, seq }), o.device);
  try {
    const scores: DatasetScore[] = [];
    for (const s of sets) {
      let lossSum = 0;
      let correct = 0;
      let tokens = 0;
      for (let i = 0; i < s.data.examples.length; i += o.batchSize) {
        const b = collate(s.data.examples.slice(i, i + o.batchSize), seq, o.batchSize, tokenizer.padId);
        const out = await session.run({
          [EVAL_IO.ids]: int64Tensor(b.inputIds, [o.batchSize * seq]),
          [EVAL_IO.targets]: int64Tensor(b.targets, [o.batchSize * seq]),
        });
        lossSum += Number((out[EVAL_IO.lossSum] as ort.Tensor).data[0]);
        correct += Number((out[EVAL_IO.correct] as ort.Tensor).data[0]);
        tokens += b.validTokens;
      }
      scores.push({ name: s.name, loss: lossSum / Math.max(1, tokens), tokenAccuracy: correct / Math.max(1, tokens), tokens, examples: s.data.examples.length });
    }
    return scores;
  } finally {
    await session.release();
  }
}
