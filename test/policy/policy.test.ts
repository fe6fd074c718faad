// resolvePolicy on the tensor names each architecture really has: every preset's exact trainable set,
// include and exclude, and the errors a user sees for a pattern that matches nothing or does not compile.
import { describe, expect, it } from 'vitest';
import { expectedTensors, parseConfig } from '../../src/model/config.js';
import { DEFAULT_POLICY, PRESET_NAMES, resolvePolicy, type PolicySpec, type PresetName } from '../../src/policy/policy.js';
import { NarrowtuneError } from '../../src/util/errors.js';

/** The names the trainer computes with for a tiny model of `model_type`, in the checkpoint's order. */
function modelNames(modelType: string, extra: Record<string, unknown> = {}): string[] {
  const json = { model_type: modelType, hidden_size: 8, num_attention_heads: 2, head_dim: 4, intermediate_size: 16, vocab_size: 32, num_hidden_layers: 1, ...extra };
  return [...expectedTensors(parseConfig(json, 'config.json')).keys()];
}

const layer0 = (...suffixes: string[]) => suffixes.map((s) => `model.layers.0.${s}`);

const LLAMA = modelNames('llama');
const LLAMA_BIASES = modelNames('llama', { attention_bias: true, mlp_bias: true });
const QWEN2 = modelNames('qwen2', { tie_word_embeddings: true });
const QWEN3 = modelNames('qwen3');

// The lists the presets run on: pinned, so a change in expectedTensors shows up here rather than as a silent
// change of what trains.
describe('model names', () => {
  it('are the Hugging Face names of each architecture', () => {
    expect(LLAMA).toEqual([
      'model.embed_tokens.weight',
      ...layer0('input_layernorm.weight', 'self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight', 'self_attn.o_proj.weight'),
      ...layer0('post_attention_layernorm.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight'),
      'model.norm.weight',
      'lm_head.weight',
    ]);
    expect(QWEN2).toContain('model.layers.0.self_attn.q_proj.bias');
    expect(QWEN2).not.toContain('model.layers.0.self_attn.o_proj.bias');
    expect(QWEN2).not.toContain('lm_head.weight');
    expect(QWEN3).toContain('model.layers.0.self_attn.q_norm.weight');
    expect(LLAMA_BIASES).toContain('model.layers.0.mlp.down_proj.bias');
  });
});

/** Each projection's weight, then its bias where `biased` names it: the order the checkpoint lists them in. */
const proj = (names: string[], biased: string[] = []) =>
  names.flatMap((n) => (biased.includes(n) ? [`${n}.weight`, `${n}.bias`] : [`${n}.weight`]));

const ATTN = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'];
const GATE_UP = ['mlp.gate_proj', 'mlp.up_proj'];
const DOWN = ['mlp.down_proj'];

/** Every preset's trainable set for one layer made of these attention projections, MLP projections and
 * extra attention norms (which only `full` trains). */
function presets(attn: string[], gateUp: string[], down: string[], norms: string[] = []): Record<PresetName, string[]> {
  return {
    full: layer0('input_layernorm.weight', ...attn, ...norms, 'post_attention_layernorm.weight', ...gateUp, ...down),
    mlp: layer0(...gateUp, ...down),
    mlp_gate_up: layer0(...gateUp),
    sa_proj: layer0(...attn),
    sa_proj_gate_up: layer0(...attn, ...gateUp),
  };
}

const QKV_BIAS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'];
const ALL_BIAS = [...ATTN, ...GATE_UP, ...DOWN];

const EXPECTED: Record<string, { names: string[]; presets: Record<PresetName, string[]> }> = {
  llama: { names: LLAMA, presets: presets(proj(ATTN), proj(GATE_UP), proj(DOWN)) },
  'llama with attention and MLP biases': {
    names: LLAMA_BIASES,
    presets: presets(proj(ATTN, ALL_BIAS), proj(GATE_UP, ALL_BIAS), proj(DOWN, ALL_BIAS)),
  },
  qwen2: { names: QWEN2, presets: presets(proj(ATTN, QKV_BIAS), proj(GATE_UP), proj(DOWN)) },
  // q/k norms belong to the layer (full) but are not projections (sa_proj)
  qwen3: { names: QWEN3, presets: presets(proj(ATTN), proj(GATE_UP), proj(DOWN), ['self_attn.q_norm.weight', 'self_attn.k_norm.weight']) },
};

/** The error resolvePolicy throws for `spec`, or a failure when it throws none. */
function policyError(spec: PolicySpec, names: readonly string[]): NarrowtuneError {
  try {
    resolvePolicy(spec, names);
  } catch (e) {
    expect(e).toBeInstanceOf(NarrowtuneError);
    expect((e as NarrowtuneError).kind).toBe('invalid_argument');
    return e as NarrowtuneError;
  }
  throw new Error(`resolvePolicy accepted ${JSON.stringify(spec)}`);
}

describe('presets', () => {
  it('cover every preset the policy module offers', () => {
    for (const { presets } of Object.values(EXPECTED)) expect(Object.keys(presets).sort()).toEqual([...PRESET_NAMES].sort());
  });

  for (const [model, { names, presets }] of Object.entries(EXPECTED)) {
    for (const [preset, trainable] of Object.entries(presets)) {
      it(`${preset} on ${model} trains exactly its tensors and freezes the rest`, () => {
        const p = resolvePolicy({ preset }, names);
        expect(p.name).toBe(preset);
        expect(p.trainable).toEqual(trainable);
        expect(p.frozen).toEqual(names.filter((n) => !trainable.includes(n)));
      });
    }
  }

  it('never train embeddings, the final norm or lm_head', () => {
    for (const preset of PRESET_NAMES) {
      const { frozen } = resolvePolicy({ preset }, LLAMA);
      expect(frozen).toEqual(expect.arrayContaining(['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight']));
    }
  });

  it(`default to ${DEFAULT_POLICY} when the spec names nothing`, () => {
    const p = resolvePolicy({}, QWEN2);
    expect(p.name).toBe(DEFAULT_POLICY);
    expect(p.trainable).toEqual(EXPECTED.qwen2.presets[DEFAULT_POLICY]);
  });

  it('match only the language model of a multimodal checkpoint, never the vision tower', () => {
    const vision = [
      'vision_tower.vision_model.embeddings.patch_embedding.weight',
      'vision_tower.vision_model.encoder.layers.0.layer_norm1.weight',
      'vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight',
      'vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias',
      'vision_tower.vision_model.encoder.layers.0.self_attn.k_proj.weight',
      'vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight',
      'vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.weight',
      'vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight',
      'model.vision_tower.encoder.layers.0.self_attn.q_proj.weight',
      'visual.blocks.0.mlp.gate_proj.weight',
      'visual.blocks.0.mlp.up_proj.weight',
      'visual.blocks.0.mlp.down_proj.weight',
      'multi_modal_projector.linear_1.weight',
    ];
    const names = [...vision, ...QWEN2];
    for (const preset of PRESET_NAMES) {
      const p = resolvePolicy({ preset }, names);
      expect(p.trainable).toEqual(EXPECTED.qwen2.presets[preset]);
      expect(p.frozen).toEqual(expect.arrayContaining(vision));
    }
  });
});

describe('include and exclude', () => {
  it('include replaces the preset: only what the patterns match trains', () => {
    const p = resolvePolicy({ include: ['self_attn\\.(q|k)_norm'] }, QWEN3);
    expect(p.name).toBe('custom');
    expect(p.trainable).toEqual(layer0('self_attn.q_norm.weight', 'self_attn.k_norm.weight'));
    expect(p.frozen).toContain('model.layers.0.mlp.gate_proj.weight');
  });

  it('include may reach outside the decoder layers, which no preset does', () => {
    expect(resolvePolicy({ include: ['^lm_head\\.'] }, LLAMA).trainable).toEqual(['lm_head.weight']);
  });

  it('exclude removes tensors from a preset', () => {
    const p = resolvePolicy({ preset: 'full', exclude: ['layernorm', '\\.bias$'] }, QWEN2);
    expect(p.trainable).toEqual(
      layer0(
        'self_attn.q_proj.weight',
        'self_attn.k_proj.weight',
        'self_attn.v_proj.weight',
        'self_attn.o_proj.weight',
        'mlp.gate_proj.weight',
        'mlp.up_proj.weight',
        'mlp.down_proj.weight',
      ),
    );
    expect(p.frozen).toContain('model.layers.0.input_layernorm.weight');
    expect(p.frozen).toContain('model.layers.0.self_attn.q_proj.bias');
  });

  it('exclude removes tensors from include patterns', () => {
    expect(resolvePolicy({ include: ['\\.mlp\\.'], exclude: ['down_proj'] }, LLAMA).trainable).toEqual(EXPECTED.llama.presets.mlp_gate_up);
  });

  it('refuses a preset together with include patterns', () => {
    const e = policyError({ preset: 'mlp', include: ['mlp'] }, LLAMA);
    expect(e.violations).toEqual([{ field: 'policy', description: 'give either a preset or include patterns, not both' }]);
  });

  it('refuses an unknown preset and lists the presets', () => {
    const e = policyError({ preset: 'attention' }, LLAMA);
    expect(e.violations).toHaveLength(1);
    expect(e.violations[0].field).toBe('policy.preset');
    for (const preset of PRESET_NAMES) expect(e.violations[0].description).toContain(preset);
  });

  it('refuses a policy that leaves nothing to train', () => {
    const e = policyError({ preset: 'mlp_gate_up', exclude: ['mlp'] }, LLAMA);
    expect(e.violations[0].field).toBe('policy');
    expect(e.message).toMatch(/policy mlp_gate_up leaves no trainable tensor/);
  });
});

describe('pattern errors', () => {
  // 24 layers, as in Qwen2.5-0.5B: the error must fold them rather than list 24 names per tensor kind
  const QWEN2_24 = modelNames('qwen2', { num_hidden_layers: 24, tie_word_embeddings: true });

  it('a pattern that matches nothing names the field and lists the real names, layers folded', () => {
    const e = policyError({ include: ['mlp\\.down_projection'] }, QWEN2_24);
    expect(e.violations).toHaveLength(1);
    const [v] = e.violations;
    expect(v.field).toBe('policy.include[0]');
    expect(v.description).toContain('"mlp\\.down_projection" matches no tensor');
    expect(v.description).toContain('model.layers.{0..23}.mlp.down_proj.weight');
    expect(v.description).toContain('model.layers.{0..23}.self_attn.q_proj.bias');
    expect(v.description).toContain('model.embed_tokens.weight');
    expect(v.description).not.toMatch(/model\.layers\.\d+\./);
  });

  it('an exclude pattern that matches nothing is an error too', () => {
    const e = policyError({ preset: 'mlp', exclude: ['lm_head'] }, QWEN2_24);
    expect(e.violations.map((v) => v.field)).toEqual(['policy.exclude[0]']);
    expect(e.violations[0].description).toContain('"lm_head" matches no tensor');
  });

  it('an invalid regular expression names the field and the pattern', () => {
    const e = policyError({ include: ['mlp\\.(gate'] }, LLAMA);
    expect(e.violations).toHaveLength(1);
    expect(e.violations[0].field).toBe('policy.include[0]');
    expect(e.violations[0].description).toBe('"mlp\\.(gate" is not a valid RE2 regular expression: missing closing ): `mlp\\.(gate`');
  });

  it('JavaScript-only syntax is refused with what to write instead', () => {
    const description = (include: string) => policyError({ include: [include] }, LLAMA).violations[0].description;
    expect(description('mlp(?=\\.up)')).toMatch(/invalid or unsupported Perl syntax.*\(lookahead and lookbehind are not supported\)$/);
    expect(description('(mlp)\\.\\1')).toMatch(/invalid escape sequence.*\(backreferences are not supported\)$/);
    expect(description('\\u006dlp')).toMatch(/\(write \\x\{00e9\} for \\u00e9\)$/);
    expect(description('\\p{Letter}')).toMatch(/\(use short Unicode class names such as \\p\{L\}/);
  });

  it('RE2 classes work as in the documentation: \\d, \\s, \\w, \\p{L}, anchors, alternation, named groups', () => {
    const trainable = (include: string) => resolvePolicy({ include: [include] }, LLAMA).trainable;
    expect(trainable('^model\\.layers\\.\\d+\\.mlp\\.(gate|up)_proj\\.weight$')).toEqual(layer0('mlp.gate_proj.weight', 'mlp.up_proj.weight'));
    expect(trainable('\\p{L}+_proj\\.w\\w+$')).toHaveLength(7);
    expect(trainable('(?P<kind>down)_proj')).toEqual(layer0('mlp.down_proj.weight'));
    expect(trainable('(?i)MLP\\.DOWN')).toEqual(layer0('mlp.down_proj.weight'));
  });

  it('a pattern that backtracks exponentially in JavaScript matches in linear time', () => {
    // On V8, `^(.|.)*X$` takes 2^40 steps on a 40-character name, and (a+)+$ as long on a run of a's.
    const names = [...QWEN2_24, 'a'.repeat(5000)];
    const t0 = performance.now();
    for (const p of ['^(.|.)*X$', '^(a+)+$b', '(x+x+)+y', '^(\\w+\\s?)*$X']) {
      expect(policyError({ preset: 'mlp', exclude: [p] }, names).violations[0].description).toMatch(/matches no tensor/);
    }
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('a pattern whose program is too large is refused, so linear stays cheap', () => {
    const [v] = policyError({ include: ['(?:.{1000}){1000}'] }, LLAMA).violations;
    expect(v).toMatchObject({ field: 'policy.include[0]', description: expect.stringMatching(/invalid repeat count/) });
    const [w] = policyError({ include: ['.{1000}.{1000}'] }, LLAMA).violations;
    expect(w.description).toMatch(/is too large: it compiles to 2002 instructions, at most 1200$/);
  });

  it('quotes at most 200 characters of a pattern', () => {
    const [v] = policyError({ include: [`(${'a'.repeat(500)}`] }, LLAMA).violations;
    expect(v.description.length).toBeLessThan(500);
    expect(v.description).toMatch(/^"\(a{198}…" is not a valid RE2 regular expression/);
  });

  it('an empty or overlong pattern is refused before compiling', () => {
    expect(policyError({ include: [''] }, LLAMA).violations).toEqual([{ field: 'policy.include[0]', description: 'pattern must be 1 to 512 characters' }]);
    expect(policyError({ exclude: ['a'.repeat(513)] }, LLAMA).violations[0].field).toBe('policy.exclude[0]');
  });

  it('every bad pattern is reported at once, each under its own index', () => {
    const e = policyError({ include: ['mlp', '[', 'nothing_here'], exclude: ['('] }, LLAMA);
    expect(e.violations.map((v) => v.field)).toEqual(['policy.include[1]', 'policy.include[2]', 'policy.exclude[0]']);
    expect(e.message.split('\n')).toHaveLength(3);
  });
});
