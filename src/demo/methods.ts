// The methods the demo compares, as in Zhu et al.'s comparison: four freezing policies and full tuning, and the
// common remedies for forgetting (LoRA on the MLP, LwF, WiSE-FT). Plain data: `narrowtune demo --help` lists them.

export interface DemoMethod {
  name: string;
  /** One line for people. */
  about: string;
  /** The policy preset: the tensors that train, or with `lora` the projections that carry adapters. */
  policy: string;
  /** LoRA adapters instead of the weights; merged after every stage so that the next stage starts from weights. */
  lora?: { rank: number; alpha: number };
  /** Learning without forgetting, the teacher being the model the stage starts from. */
  lwf?: { weight: number; temperature: number };
  /**
   * WiSE-FT: after every stage the model becomes (1 − alpha)·(the model the stage started from) + alpha·(tuned),
   * and the next stage starts from that merge, as the paper's code chains it.
   */
  wiseAlpha?: number;
}

export const DEMO_METHODS: readonly DemoMethod[] = [
  { name: 'full', about: 'every weight trains', policy: 'full' },
  { name: 'mlp', about: 'MLP gate, up and down projections', policy: 'mlp' },
  { name: 'mlp_gate_up', about: 'MLP gate and up projections, down frozen', policy: 'mlp_gate_up' },
  { name: 'sa_proj', about: 'self-attention q, k, v, o projections', policy: 'sa_proj' },
  { name: 'sa_proj_gate_up', about: 'self-attention projections and MLP gate and up', policy: 'sa_proj_gate_up' },
  { name: 'lora_mlp', about: 'LoRA r16 (alpha 32) on the MLP projections, merged after each stage', policy: 'mlp', lora: { rank: 16, alpha: 32 } },
  { name: 'lwf_mlp', about: 'mlp with LwF (weight 1, T 2) against the stage’s starting model', policy: 'mlp', lwf: { weight: 1, temperature: 2 } },
  { name: 'wise_ft', about: 'full tuning, then WiSE-FT with the stage’s starting model at alpha 0.5', policy: 'full', wiseAlpha: 0.5 },
];

export const DEMO_METHOD_NAMES: readonly string[] = DEMO_METHODS.map((m) => m.name);

export function demoMethod(name: string): DemoMethod {
  const m = DEMO_METHODS.find((x) => x.name === name);
  if (!m) throw new Error(`unknown demo method "${name}"; methods: ${DEMO_METHOD_NAMES.join(', ')}`);
  return m;
}
