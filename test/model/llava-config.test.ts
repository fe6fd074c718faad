// Tests for LLaVA-style config.json parsing: transformers' llava_onevision and llava forms with their sub-config
// defaults, the original lmms-lab form, and the errors for what narrowtune cannot read.

import { describe, expect, it } from 'vitest';
import { ModelFileError } from '../../src/util/errors.js';
import { expectedTensors } from '../../src/model/config.js';
import { LLAVA_NEXT_IMAGE_PLACEHOLDER, gridPinpoints, isLlavaConfig, parseLlavaConfig } from '../../src/model/llava-config.js';
import { expectedLlavaTensors, expectedVisionTensors } from '../../src/model/llava-names.js';

const FILE = '/models/x/config.json';

/** Shaped like llava-hf/llava-onevision-qwen2-7b-ov-hf: the text_config lists only what differs from Qwen2Config. */
function onevision7b(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlavaOnevisionForConditionalGeneration'],
    image_token_index: 151646,
    model_type: 'llava_onevision',
    projector_hidden_act: 'gelu',
    text_config: {
      architectures: ['Qwen2ForCausalLM'],
      hidden_size: 3584,
      intermediate_size: 18944,
      model_type: 'qwen2',
      num_attention_heads: 28,
      num_hidden_layers: 28,
      num_key_value_heads: 4,
      rope_theta: 1000000.0,
      vocab_size: 152128,
    },
    use_image_newline_parameter: true,
    video_token_index: 151647,
    vision_config: {
      hidden_size: 1152,
      image_size: 384,
      intermediate_size: 4304,
      model_type: 'siglip_vision_model',
      num_attention_heads: 16,
      num_hidden_layers: 26,
      patch_size: 14,
      vision_use_head: false,
    },
    ...extra,
  };
}

/** Shaped like llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 and a Vicuna text_config of a few fields. */
function llava15(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlavaForConditionalGeneration'],
    ignore_index: -100,
    image_token_index: 32000,
    model_type: 'llava',
    pad_token_id: 32001,
    projector_hidden_act: 'gelu',
    text_config: { architectures: ['LlamaForCausalLM'], max_position_embeddings: 4096, model_type: 'llama', rms_norm_eps: 1e-5, vocab_size: 32064 },
    vision_config: {
      hidden_size: 1024,
      image_size: 336,
      intermediate_size: 4096,
      model_type: 'clip_vision_model',
      num_attention_heads: 16,
      num_hidden_layers: 24,
      patch_size: 14,
      projection_dim: 768,
      vocab_size: 32000,
    },
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
    ...extra,
  };
}

/** Shaped like lmms-lab/llava-onevision-qwen2-0.5b-ov as LLaVA-NeXT (and LMM_CL) saves it. */
function lmmsLab(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlavaQwenForCausalLM'],
    hidden_act: 'silu',
    hidden_size: 896,
    image_aspect_ratio: 'anyres_max_9',
    image_grid_pinpoints: gridPinpoints(384, 6),
    image_token_index: 151646,
    intermediate_size: 4864,
    max_position_embeddings: 32768,
    mm_hidden_size: 1152,
    mm_newline_position: 'grid',
    mm_patch_merge_type: 'spatial_unpad',
    mm_projector_type: 'mlp2x_gelu',
    mm_tunable_parts: 'mm_vision_tower,mm_mlp_adapter,mm_language_model',
    mm_vision_select_feature: 'patch',
    mm_vision_select_layer: -2,
    mm_vision_tower: 'google/siglip-so400m-patch14-384',
    model_type: 'llava_qwen',
    num_attention_heads: 14,
    num_hidden_layers: 24,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1000000.0,
    tie_word_embeddings: true,
    vocab_size: 151936,
    ...extra,
  };
}

function errorOf(json: unknown, shapes?: ReadonlyMap<string, readonly number[]>): string {
  try {
    parseLlavaConfig(json, FILE, shapes);
  } catch (e) {
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as Error).message).toContain(FILE);
    return (e as Error).message;
  }
  throw new Error('expected parseLlavaConfig to throw');
}

const SO400M_LLAVA = { kind: 'siglip', hiddenSize: 1152, intermediateSize: 4304, numLayers: 26, numHeads: 16, imageSize: 384, patchSize: 14, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' };

describe('parseLlavaConfig: transformers llava_onevision', () => {
  it('reads LLaVA-OneVision-7B with the defaults of LlavaOnevisionConfig, Qwen2Config and SiglipVisionConfig', () => {
    const c = parseLlavaConfig(onevision7b(), FILE);
    expect(c).toMatchObject({
      kind: 'llava_onevision',
      form: 'hf',
      projectorAct: 'gelu',
      projectorBias: true,
      featureLayer: -1,
      selectStrategy: 'full',
      imageTokenIndex: 151646,
      aspect: 'anyres_max_9',
      hasImageNewline: true,
      vision: SO400M_LLAVA,
    });
    expect(c.text).toMatchObject({ arch: 'qwen2', hiddenSize: 3584, numLayers: 28, numHeads: 28, numKvHeads: 4, headDim: 128, vocabSize: 152128, rmsNormEps: 1e-6, maxPositionEmbeddings: 32768, tieWordEmbeddings: false });
    expect(c.text.raw).toEqual(onevision7b().text_config);
    expect(c.raw).toEqual(onevision7b());
    // LlavaOnevisionConfig's default grid: 36 pinpoints from 384×384 to 2304×2304, rows first.
    expect(c.gridPinpoints).toHaveLength(36);
    expect(c.gridPinpoints.slice(0, 2)).toEqual([[384, 384], [384, 768]]);
    expect(c.gridPinpoints[6]).toEqual([768, 384]);
    expect(c.gridPinpoints[35]).toEqual([2304, 2304]);
  });

  it('fills a bare text_config from Qwen2Config (num_key_value_heads defaults to 32, not to the head count)', () => {
    const c = parseLlavaConfig(onevision7b({ text_config: { vocab_size: 200000 } }), FILE);
    expect(c.text).toMatchObject({ arch: 'qwen2', hiddenSize: 4096, intermediateSize: 22016, numLayers: 32, numHeads: 32, numKvHeads: 32, vocabSize: 200000 });
  });

  it('fills a bare vision_config from SiglipVisionConfig', () => {
    const c = parseLlavaConfig(onevision7b({ vision_config: {} }), FILE);
    expect(c.vision).toEqual({ kind: 'siglip', hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 16, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' });
  });

  it('reads image_token_id (newer transformers) and an explicit feature layer and strategy', () => {
    const json = onevision7b({ image_token_id: 5, vision_feature_layer: -2, vision_feature_select_strategy: 'default', multimodal_projector_bias: false });
    delete json.image_token_index;
    expect(parseLlavaConfig(json, FILE)).toMatchObject({ imageTokenIndex: 5, featureLayer: -2, selectStrategy: 'default', projectorBias: false });
  });
});

describe('parseLlavaConfig: transformers llava (LLaVA-1.5)', () => {
  it('reads LLaVA-1.5-7B: CLIP with quick_gelu, layer -2, CLS dropped, padded square images, no image_newline', () => {
    const c = parseLlavaConfig(llava15(), FILE);
    expect(c).toMatchObject({
      kind: 'llava',
      featureLayer: -2,
      selectStrategy: 'default',
      imageTokenIndex: 32000,
      aspect: 'pad',
      gridPinpoints: [],
      hasImageNewline: false,
      vision: { kind: 'clip', hiddenSize: 1024, intermediateSize: 4096, numLayers: 24, numHeads: 16, imageSize: 336, patchSize: 14, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' },
    });
    // LlamaConfig's defaults for what the text_config leaves out; num_key_value_heads follows the head count.
    expect(c.text).toMatchObject({ arch: 'llama', hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, vocabSize: 32064, rmsNormEps: 1e-5, maxPositionEmbeddings: 4096 });
    // CLIP: the class position is one more position embedding, plus class_embedding and pre_layrnorm.
    const v = expectedVisionTensors(c.vision);
    expect(v.get('vision_tower.vision_model.embeddings.position_embedding.weight')).toEqual([577, 1024]);
    expect(v.get('vision_tower.vision_model.embeddings.class_embedding')).toEqual([1024]);
    expect(v.get('vision_tower.vision_model.embeddings.patch_embedding.weight')).toEqual([1024, 3, 14, 14]);
    expect(v.has('vision_tower.vision_model.embeddings.patch_embedding.bias')).toBe(false);
    expect(v.get('vision_tower.vision_model.pre_layrnorm.weight')).toEqual([1024]);
    const all = expectedLlavaTensors(c);
    expect(all.get('multi_modal_projector.linear_1.weight')).toEqual([4096, 1024]);
    expect(all.get('multi_modal_projector.linear_2.weight')).toEqual([4096, 4096]);
    expect(all.has('image_newline')).toBe(false);
    expect(all.size).toBe(expectedTensors(c.text).size + v.size + 4);
  });

  it('lists the SigLIP tower without a class position or pre-LayerNorm, and the newline', () => {
    const c = parseLlavaConfig(onevision7b(), FILE);
    const v = expectedVisionTensors(c.vision);
    expect(v.get('vision_tower.vision_model.embeddings.position_embedding.weight')).toEqual([729, 1152]);
    expect(v.get('vision_tower.vision_model.embeddings.patch_embedding.bias')).toEqual([1152]);
    expect([...v.keys()].some((n) => n.includes('class_embedding') || n.includes('pre_layrnorm'))).toBe(false);
    expect(v.get('vision_tower.vision_model.encoder.layers.25.mlp.fc1.weight')).toEqual([4304, 1152]);
    expect(v.has('vision_tower.vision_model.encoder.layers.26.mlp.fc1.weight')).toBe(false);
    expect(v.get('vision_tower.vision_model.post_layernorm.bias')).toEqual([1152]);
    expect(expectedLlavaTensors(c).get('image_newline')).toEqual([3584]);
  });
});

describe('parseLlavaConfig: lmms-lab (LLaVA-NeXT) form', () => {
  it('takes the decoder from the top level and a known tower\'s published shape (26 layers once LLaVA drops the last)', () => {
    const c = parseLlavaConfig(lmmsLab(), FILE);
    expect(c).toMatchObject({
      kind: 'llava_onevision',
      form: 'lmms-lab',
      // SigLipVisionTower ignores mm_vision_select_layer (-2 here): the last kept layer, every position.
      featureLayer: -1,
      selectStrategy: 'full',
      imageTokenIndex: 151646,
      aspect: 'anyres_max_9',
      hasImageNewline: true,
      projectorAct: 'gelu',
      vision: SO400M_LLAVA,
    });
    expect(c.text).toMatchObject({ arch: 'qwen2', hiddenSize: 896, numLayers: 24, numHeads: 14, numKvHeads: 2, tieWordEmbeddings: true, vocabSize: 151936 });
    expect(c.text.raw).toEqual(lmmsLab());
    expect(c.gridPinpoints).toEqual(gridPinpoints(384, 6));
  });

  it('takes the tower\'s sizes from its weights when given them', () => {
    const t = 'vision_tower.vision_model.';
    const shapes = new Map<string, number[]>([
      [`${t}embeddings.patch_embedding.weight`, [32, 3, 8, 8]],
      [`${t}embeddings.position_embedding.weight`, [16, 32]],
      [`${t}encoder.layers.0.layer_norm1.weight`, [32]],
      [`${t}encoder.layers.0.mlp.fc1.weight`, [128, 32]],
      [`${t}encoder.layers.1.layer_norm1.weight`, [32]],
    ]);
    const c = parseLlavaConfig(lmmsLab({ mm_hidden_size: 32 }), FILE, shapes);
    expect(c.vision).toEqual({ ...SO400M_LLAVA, hiddenSize: 32, intermediateSize: 128, numLayers: 2, imageSize: 32, patchSize: 8 });
  });

  it('uses an explicit vision_config, and asks for one when the tower is unknown', () => {
    const vision_config = { model_type: 'siglip_vision_model', hidden_size: 64, intermediate_size: 256, num_hidden_layers: 3, num_attention_heads: 4, image_size: 28, patch_size: 14 };
    const c = parseLlavaConfig(lmmsLab({ mm_vision_tower: '/local/my-tower', mm_hidden_size: 64, vision_config }), FILE);
    expect(c.vision).toMatchObject({ kind: 'siglip', hiddenSize: 64, numLayers: 3, numHeads: 4, imageSize: 28 });
    expect(errorOf(lmmsLab({ mm_vision_tower: '/local/my-tower' }))).toMatch(/mm_vision_tower "\/local\/my-tower" is not a tower .*add a "vision_config" object/);
  });

  it('pads with a single tile, without image_newline, under image_aspect_ratio pad and a flat merge', () => {
    const json = lmmsLab({ image_aspect_ratio: 'pad', mm_patch_merge_type: 'flat' });
    delete json.image_token_index;
    expect(parseLlavaConfig(json, FILE)).toMatchObject({ aspect: 'pad', gridPinpoints: [], hasImageNewline: false, imageTokenIndex: LLAVA_NEXT_IMAGE_PLACEHOLDER });
  });

  it('honours mm_vision_select_layer and _feature for a CLIP tower, as LLaVA-NeXT\'s CLIPVisionTower does', () => {
    const c = parseLlavaConfig(lmmsLab({ mm_vision_tower: 'openai/clip-vit-large-patch14-336', mm_hidden_size: 1024 }), FILE);
    expect(c).toMatchObject({ featureLayer: -2, selectStrategy: 'default', vision: { kind: 'clip', numLayers: 24, imageSize: 336 } });
    expect(parseLlavaConfig(lmmsLab({ mm_vision_tower: 'openai/clip-vit-large-patch14-336', mm_hidden_size: 1024, mm_vision_select_feature: 'cls_patch' }), FILE).selectStrategy).toBe('full');
  });
});

describe('parseLlavaConfig errors name the file and the field', () => {
  const cases: [string, unknown, RegExp][] = [
    ['a list of feature layers', onevision7b({ vision_feature_layer: [-2, -5] }), /vision_feature_layer \[-2,-5\] is a list .*not supported/],
    ['a feature layer outside the tower', onevision7b({ vision_feature_layer: -28 }), /vision feature layer -28 is outside .*-27\.\.26/],
    ['an unsupported projector activation', onevision7b({ projector_hidden_act: 'relu' }), /projector_hidden_act "relu" is not supported; supported: gelu, gelu_pytorch_tanh/],
    ['another anyres limit', onevision7b({ vision_aspect_ratio: 'anyres_max_4' }), /vision_aspect_ratio "anyres_max_4" is not supported/],
    ['a missing vision_config', onevision7b({ vision_config: undefined }), /vision_config is missing/],
    ['a missing text_config', llava15({ text_config: null }), /text_config is missing/],
    ['an unknown tower type', llava15({ vision_config: { model_type: 'pixtral' } }), /vision_config\.model_type "pixtral" is not supported/],
    ['grey images', onevision7b({ vision_config: { num_channels: 1 } }), /vision_config\.num_channels must be 3/],
    ['an unsupported text model', onevision7b({ text_config: { model_type: 'mistral' } }), /\(text_config\): unsupported architecture "mistral"/],
    ['a bad text field', onevision7b({ text_config: { hidden_size: -1 } }), /\(text_config\): hidden_size must be a positive integer/],
    ['heads that do not divide the width', onevision7b({ vision_config: { hidden_size: 100, num_attention_heads: 16 } }), /vision hidden_size \(100\) is not divisible by num_attention_heads \(16\)/],
    ['an image token outside the vocabulary', onevision7b({ image_token_index: 200000 }), /image token index 200000 is outside the vocabulary \(vocab_size 152128\)/],
    ['malformed pinpoints', onevision7b({ image_grid_pinpoints: [[384]] }), /image_grid_pinpoints must be a non-empty list of \[height, width\] pairs/],
    ['a linear lmms-lab projector', lmmsLab({ mm_projector_type: 'linear' }), /mm_projector_type "linear" is not supported \(only "mlp2x_gelu"\)/],
    ['anyres without unpadding', lmmsLab({ mm_patch_merge_type: 'spatial' }), /mm_patch_merge_type "spatial" is not supported with image_aspect_ratio anyres_max_9/],
    ['a projector input that is not the tower width', lmmsLab({ mm_hidden_size: 1024 }), /mm_hidden_size is 1024, but the vision tower's hidden size is 1152/],
    ['another LLaVA-NeXT class', lmmsLab({ architectures: ['LlavaMistralForCausalLM'] }), /architectures "LlavaMistralForCausalLM" is not supported/],
    ['a text-only config', { model_type: 'qwen2', hidden_size: 8 }, /is not a LLaVA-style config/],
  ];
  for (const [what, json, problem] of cases) {
    it(what, () => expect(errorOf(json)).toMatch(problem));
  }
});

describe('isLlavaConfig', () => {
  it('tells LLaVA-style configs from text-only ones', () => {
    expect(isLlavaConfig(onevision7b())).toBe(true);
    expect(isLlavaConfig(llava15())).toBe(true);
    expect(isLlavaConfig(lmmsLab())).toBe(true);
    expect(isLlavaConfig({ model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] })).toBe(false);
    expect(isLlavaConfig({ model_type: 'llama' })).toBe(false);
    expect(isLlavaConfig(null)).toBe(false);
  });
});
