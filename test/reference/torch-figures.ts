// Holding drift figures computed in the product to the float64 ones of torch_figures.py.
import { expect } from 'vitest';
import type { DriftFigures } from '../../src/eval/scorer.js';

/** What torch_figures.py prints, for a token class named "vowel" besides numbers. */
export interface TorchFigures {
  positions: number;
  heldout_loss: number;
  heldout_loss_base: number;
  kl_to_base: number;
  top1_agreement: number;
  token_accuracy: number;
  mass: Record<string, number>;
  mass_base: Record<string, number>;
}

/** `got` must be within float32 rounding of `want`. */
export const close = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));

/** Every figure but token accuracy, which a probe streamed over gRPC does not carry. */
export function expectTorchFigures(f: DriftFigures, ref: TorchFigures): void {
  expect(f.positions).toBe(ref.positions);
  close(f.numberMass, ref.mass.number);
  close(f.numberMassBase, ref.mass_base.number);
  close(f.numberMassDelta, ref.mass.number - ref.mass_base.number);
  close(f.klToBase, ref.kl_to_base);
  close(f.top1Agreement, ref.top1_agreement);
  close(f.heldoutLoss, ref.heldout_loss);
  close(f.heldoutLossBase, ref.heldout_loss_base);
  close(f.heldoutLossDelta, ref.heldout_loss - ref.heldout_loss_base);
  expect(f.classes.map((c) => c.name)).toEqual(['vowel']);
  close(f.classes[0].mass, ref.mass.vowel);
  close(f.classes[0].massBase, ref.mass_base.vowel);
  close(f.classes[0].delta, ref.mass.vowel - ref.mass_base.vowel);
}
