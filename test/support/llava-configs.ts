// Config forms of a tiny LLaVA-OneVision model (as init-model writes it) that tests rewrite it into.

/** The same config in LLaVA-NeXT's lmms-lab form: Qwen2 fields at the top level, mm_* fields, optionally a vision_config. */
export function lmmsLabConfig(hf: Record<string, unknown>, towerName: string, withVisionConfig: boolean): Record<string, unknown> {
  const vision = hf.vision_config as Record<string, unknown>;
  return {
    ...(hf.text_config as Record<string, unknown>),
    architectures: ['LlavaQwenForCausalLM'],
    model_type: 'llava_qwen',
    image_aspect_ratio: 'anyres_max_9',
    image_grid_pinpoints: hf.image_grid_pinpoints,
    image_token_index: hf.image_token_index,
    mm_hidden_size: vision.hidden_size,
    mm_patch_merge_type: 'spatial_unpad',
    mm_projector_type: 'mlp2x_gelu',
    mm_vision_select_feature: 'patch',
    mm_vision_select_layer: -2,
    mm_vision_tower: towerName,
    ...(withVisionConfig ? { vision_config: vision } : {}),
  };
}
