// `narrowtune init-model --help`, apart from the command so that printing it loads nothing heavy.
import { SUPPORTED_ARCHS } from '../model/config.js';

export const INIT_MODEL_HELP = `Usage: narrowtune init-model --arch ${SUPPORTED_ARCHS.join('|')} --hidden H --layers L --heads N --kv-heads K --out DIR [options]

Writes a randomly initialised Hugging Face model (config.json, model.safetensors, tokenizer files).

  --intermediate I       MLP width (default about 8/3·H, rounded up to a multiple of 64)
  --head-dim D           per-head width (default H/N)
  --vocab-from DIR       take tokenizer.json/tokenizer_config.json from DIR (default: a built-in
                         byte-level tokenizer with ChatML special tokens)
  --tie-embeddings       share the input embedding with lm_head
  --seed S               initialisation seed (default 0); the same seed gives identical bytes
`;
