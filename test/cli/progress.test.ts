// The progress display: one rendering of job events for `tune` (trainer events) and `jobs watch` (streamed ones).
import { describe, expect, it } from 'vitest';
import { jobProgressReporter, progressReporter } from '../../src/cli/progress.js';
import { jobEventFromProto, jobEventToProto } from '../../src/service/event-to-proto.js';
import { toJobEvent } from '../../src/store/job-events.js';
import type { TrainEvent } from '../../src/trainer/events.js';

function capture(isTTY = false) {
  const chunks: string[] = [];
  const stream = { isTTY, write: (s: string) => chunks.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, text: () => chunks.join('') };
}

const RUN: TrainEvent[] = [
  {
    type: 'started',
    totalSteps: 2,
    trainableTensors: ['a', 'b', 'c', 'd'],
    trainableParameters: 12_288,
    provider: 'cpu',
    resumedFromStep: 0,
    batchSize: 4,
    gradAccum: 2,
    seq: 32,
    examples: 10,
    frozenTensors: 21,
    compileMs: 40.4,
    sessionMs: 9.6,
  },
  { type: 'step', step: 1, totalSteps: 2, loss: 3.25, learningRate: 1e-3, gradNorm: 0.5, tokens: 256, tokensPerSecond: 512, elapsedSeconds: 0.5 },
  { type: 'step', step: 2, totalSteps: 2, loss: 3, learningRate: 5e-4, gradNorm: 0.25, tokens: 256, tokensPerSecond: 512, elapsedSeconds: 1 },
  { type: 'done', out: '/out', finalLoss: 3, frozenUnchanged: true },
];

describe('progress display', () => {
  it('shows a local run in full, ending with where the model went', () => {
    const out = capture();
    RUN.forEach(progressReporter(out.stream));
    expect(out.text().split('\n')).toEqual([
      'training 4 tensors (12,288 parameters), 21 frozen; 2 steps of 4×2 sequences of 32 tokens on cpu (graph 40 ms, session 10 ms)',
      'step 1/2  loss 3.2500  lr 1.00e-3  grad 0.500  512 tok/s  elapsed 00:01',
      'step 2/2  loss 3.0000  lr 5.00e-4  grad 0.250  512 tok/s  elapsed 00:01',
      'wrote /out (final loss 3.0000; frozen tensors bitwise unchanged)',
      '',
    ]);
  });

  it('shows a watched job with the same lines, leaving out what the wire does not carry instead of printing zeros', () => {
    const local = capture();
    RUN.forEach(progressReporter(local.stream));
    const watched = capture();
    const show = jobProgressReporter(watched.stream, 'jobs/abc');
    for (const e of RUN) {
      const stored = toJobEvent(e);
      const streamed = stored && jobEventFromProto(jobEventToProto(stored));
      if (streamed) show(streamed);
    }
    show({ type: 'finished', state: 'SUCCEEDED', outputPath: '/out' });
    const lines = watched.text().split('\n');
    expect(lines[0]).toBe('training 4 tensors (12,288 parameters); 2 steps on cpu');
    expect(lines.slice(1, 3)).toEqual(local.text().split('\n').slice(1, 3));
    expect(lines[3]).toBe('jobs/abc SUCCEEDED: /out');
  });

  it('ends a watched job with its error or note', () => {
    const out = capture();
    const show = jobProgressReporter(out.stream, 'jobs/x');
    show({ type: 'finished', state: 'FAILED', error: { kind: 'invalid_argument', message: 'bad data', violations: [] } });
    show({ type: 'finished', state: 'CANCELLED', note: 'cancelled while the server was down' });
    expect(out.text()).toBe('jobs/x FAILED — bad data\njobs/x CANCELLED — cancelled while the server was down\n');
  });

  it('on a terminal keeps the bar of an unfinished job above its closing line', () => {
    const out = capture(true);
    const show = jobProgressReporter(out.stream, 'jobs/x');
    const first = toJobEvent(RUN[1]!)!;
    show(first);
    show({ type: 'finished', state: 'CANCELLED' });
    expect(out.text()).toMatch(/^\r\x1b\[2K█+░+ 1\/2 {2}loss 3\.2500.*eta 00:01\n\r\x1b\[2Kjobs\/x CANCELLED\n$/);
  });
});
