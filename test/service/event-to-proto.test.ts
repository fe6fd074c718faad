// The one mapping between stored job events and StreamMetricsResponse, both ways, through the wire encoding.
import { describe, expect, it } from 'vitest';
import { StreamMetricsResponse, TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { eventToProto, jobEventFromProto, jobEventToProto } from '../../src/service/event-to-proto.js';
import type { JobEvent } from '../../src/store/job-events.js';

const FIGURES = {
  numberMass: 0.25,
  numberMassBase: 0.125,
  numberMassDelta: 0.125,
  klToBase: 0.0625,
  top1Agreement: 0.875,
  heldoutLoss: 2.5,
  heldoutLossBase: 2.25,
  heldoutLossDelta: 0.25,
  classes: [{ name: 'digit', mass: 0.5, massBase: 0.25, delta: 0.25 }],
};

/** Every event type as the wire can carry it in full. */
const ON_THE_WIRE: JobEvent[] = [
  { type: 'started', totalSteps: 6, trainableTensors: ['a', 'b'], trainableParameters: 4096, provider: 'cpu', resumedFromStep: 2 },
  { type: 'step', step: 3, totalSteps: 6, loss: 1.5, learningRate: 0.001, gradNorm: 0.75, tokensPerSecond: 512, elapsedSeconds: 4.5 },
  { type: 'validation', step: 3, loss: 1.75, tokenAccuracy: 0.5 },
  { type: 'probe', step: 3, ...FIGURES },
  { type: 'budget_exceeded', limit: 'max_heldout_loss_delta', value: 0.5, threshold: 0.25, step: 4, keptStep: 3 },
  { type: 'checkpoint', step: 4, path: '/ck/4' },
  { type: 'finished', state: 'SUCCEEDED', outputPath: '/out' },
  {
    type: 'finished',
    state: 'FAILED',
    error: { kind: 'invalid_argument', message: 'train.jsonl:3: not JSON', violations: [{ field: 'training_data', description: 'train.jsonl:3: not JSON' }] },
  },
];

const overTheWire = (e: JobEvent) => {
  const m = eventToProto({ jobId: 'j', sequence: 7, time: 1_700_000_000_000, event: e });
  return StreamMetricsResponse.decode(StreamMetricsResponse.encode(m).finish());
};

describe('job events ⇄ StreamMetricsResponse', () => {
  it('round-trips every event type through the wire unchanged', () => {
    for (const e of ON_THE_WIRE) {
      const m = overTheWire(e);
      expect(m.sequence).toBe(7);
      expect(m.time).toEqual(new Date(1_700_000_000_000));
      expect(jobEventFromProto(m.event), e.type).toEqual(e);
    }
  });

  it('names the proto cases and states as the API documents them', () => {
    expect(ON_THE_WIRE.map((e) => jobEventToProto(e).$case)).toEqual(['started', 'step', 'validation', 'probe', 'budgetExceeded', 'checkpoint', 'finished', 'finished']);
    expect(jobEventToProto({ type: 'finished', state: 'CANCELLED' })).toEqual({ $case: 'finished', value: { state: TuneJob_State.CANCELLED, error: undefined, outputPath: '' } });
  });

  it('drops what only the store keeps and sends no extra fields', () => {
    const local: JobEvent = { type: 'step', step: 1, totalSteps: 2, loss: 1, learningRate: 0.5, gradNorm: 1, tokens: 64, tokensPerSecond: 128, elapsedSeconds: 0.5 };
    expect(jobEventToProto(local)).toEqual({ $case: 'step', value: { step: 1, totalSteps: 2, loss: 1, learningRate: 0.5, gradNorm: 1, tokensPerSecond: 128, elapsedSeconds: 0.5 } });
    const started: JobEvent = { type: 'started', totalSteps: 2, trainableTensors: [], trainableParameters: 0, provider: 'cpu', resumedFromStep: 0, batchSize: 4, compileMs: 12 };
    expect(Object.keys(jobEventToProto(started).value).sort()).toEqual(['provider', 'resumedFromStep', 'totalSteps', 'trainableParameters', 'trainableTensors']);
    const probe = jobEventToProto({ type: 'probe', step: 1, positions: 9, tokenAccuracy: 0.5, ...FIGURES });
    expect(probe.value).not.toHaveProperty('positions');
    expect(probe.value).not.toHaveProperty('tokenAccuracy');
  });

  it('gives null for what this version cannot represent', () => {
    expect(jobEventFromProto(undefined)).toBeNull();
    expect(jobEventFromProto({ $case: 'budgetExceeded', value: { limit: 'max_something_new', value: 1, threshold: 0, step: 1, keptStep: 0 } })).toBeNull();
    expect(jobEventFromProto({ $case: 'finished', value: { state: TuneJob_State.RUNNING, error: undefined, outputPath: '' } })).toBeNull();
    expect(jobEventFromProto({ $case: 'finished', value: { state: TuneJob_State.STATE_UNSPECIFIED, error: undefined, outputPath: '' } })).toBeNull();
  });
});
