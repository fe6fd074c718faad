// `narrowtune init-model --help`, apart from the command so that printing it loads nothing heavy.
import { SUPPORTED_ARCHS } from '../model/config.js';
import { LLAVA_ARCHS } from '../model/llava-config.js';

export const INIT_MODEL_HELP = `Usage: narrowtune init-model --arch ${[...SUPPORTED_ARCHS, ...LLAVA_ARCHS].join('|')} --hidden H --layers L --heads N --kv-heads K --out DIR [options]

Writes a randomly initialised Hugging Face model (config.json, model.safetensors, tokenizer files).
llava-onevision (SigLIP tower, Qwen2 decoder, anyres_max_9 tiling) and llava (LLaVA-1.5: CLIP tower, Llama
decoder, padded square images) add a vision tower, a projector, an <image> token and preprocessor_config.json;
the text flags shape their decoder.

  --intermediate I       MLP width (default about 8/3·H, rounded up to a multiple of 64)
  --head-dim D           per-head width (default H/N)
  --vocab-from DIR       take tokenizer.json/tokenizer_config.json from DIR (default: a built-in
                         byte-level tokenizer with ChatML special tokens)
  --tie-embeddings       share the input embedding with lm_head
  --seed S               initialisation seed (default 0); the same seed gives identical bytes

Vision tower (llava-onevision, llava only):
  --vision-hidden H      tower width (default 32)
  --vision-layers L      tower layers (default 2)
  --vision-heads N       tower attention heads (default 2)
  --vision-intermediate I  tower MLP width (default 4·H)
  --image-size S         tile side in pixels (default 32)
  --patch-size P         patch side in pixels (default 8); S must be a multiple of P
`;
