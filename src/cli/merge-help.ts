// `narrowtune merge --help`, apart from the command so that printing it loads nothing heavy.
export const MERGE_HELP = `Usage: narrowtune merge --base DIR --tuned DIR --alpha A --out DIR [--overwrite]

WiSE-FT: writes a model whose every tensor is (1 − A)·base + A·tuned, in the base's dtype (bf16, f16
or f32; computed in float64 and rounded once). A is the weight of the tuned model: 0 gives the base,
1 the tuned model; values in between trade what tuning learned against what it forgot.

  --base DIR             the model that was tuned (Hugging Face directory)
  --tuned DIR            a model tuned from it, or a PEFT LoRA adapter directory (adapter_config.json):
                         then tuned = the adapter's base + scaling·B·A
  --alpha A              in [0, 1]
  --out DIR              output directory, written atomically with the base's tokenizer files and
                         narrowtune.json (inputs' hashes, alpha); it must not exist, be empty, or hold
                         an earlier narrowtune output and --overwrite be given
  --overwrite            let --out replace an earlier narrowtune output

The two models must have the same architecture and tensor shapes; a tensor they share byte for byte
is copied as it is. LLaVA-style models (one layout for both) merge their language models only: the
vision tower, projector and image_newline must be identical in both and are copied, and the output
keeps the base's layout, config.json and preprocessor and processor files.
`;
