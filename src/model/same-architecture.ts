// Whether two checkpoints can stand in for each other tensor by tensor (an LwF teacher, a WiSE-FT merge): every
// config field and every tensor's name and shape must agree.
import type { ModelConfig } from './config.js';

/** The first difference between `other` and `model`, worded for an error message, or null when they agree. */
export function architectureDifference(
  model: { config: ModelConfig; shapes: ReadonlyMap<string, readonly number[]> },
  other: { config: ModelConfig; shapes: ReadonlyMap<string, readonly number[]> },
): string | null {
  const { raw: _a, ...a } = model.config;
  const { raw: _b, ...b } = other.config;
  for (const key of Object.keys(a) as (keyof typeof a)[]) {
    const x = JSON.stringify(a[key]);
    const y = JSON.stringify(b[key]);
    if (x !== y) return `has ${key} ${y} where the model has ${x}`;
  }
  for (const [name, shape] of model.shapes) {
    const s = other.shapes.get(name);
    if (!s) return `has no tensor ${name}`;
    if (s.join() !== shape.join()) return `has ${name} of shape [${s.join(', ')}] where the model's is [${shape.join(', ')}]`;
  }
  for (const name of other.shapes.keys()) if (!model.shapes.has(name)) return `has a tensor ${name} the model lacks`;
  return null;
}
