#!/usr/bin/python3
"""Float64 PyTorch reference of training a LLaVA model's language model on image-text data (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/torch_llava_train.py SPEC.json OUT.json
End to end from the image files: PIL preprocessing as Hugging Face's image processor (torch_anyres.pixels), the
vision tower and projector (torch_llava_vision.image_features), the packing of LlavaOnevisionModel
(torch_anyres.pack), then inputs_embeds as LLaVA builds them (the token embeddings, with the image features
scattered over the image-token positions in order: inputs_embeds.masked_scatter) through torch_reference's decoder,
and its training steps. Labels at image positions are ignored (IGNORE_INDEX), as LLaVA's training code sets them.
Reads a model directory as transformers saves it before 4.52 (config.json of llava_onevision or llava,
preprocessor_config.json, model.safetensors with language_model.* names).
SPEC: {model_dir, images: [path], runs: [torch_reference.py's spec without model_dir, whose micro-batches hold
       input_ids [[int]], labels [[int]] (unshifted, -100 ignored) and images [[index into images, in order]] per row]}
OUT:  {features: [{shape: [tokens, text hidden], values}] per image, runs: [torch_reference.py's OUT per run]}
"""
import json, os, sys
import torch
from PIL import Image

import torch_anyres as anyres
import torch_llava_vision as vision
import torch_reference as ref

LANGUAGE = "language_model."
RESAMPLE = {2: "bilinear", 3: "bicubic"}
ANYRES_MAX_TILES = 9  # anyres_max_9


def read_model(model_dir):
    config = json.load(open(os.path.join(model_dir, "config.json")))
    raw = ref.load_safetensors(os.path.join(model_dir, "model.safetensors"))
    if not any(n.startswith(LANGUAGE) for n in raw):
        raise ValueError("expected transformers' pre-4.52 names (language_model.*)")
    text = ref.text_config(config["text_config"])
    P = {n[len(LANGUAGE):] if n.startswith(LANGUAGE) else n: t for n, t in raw.items()}
    return config, text, P


def preprocessing(model_dir, config, path):
    """The torch_anyres case of one image: the processor's settings, the model's placement."""
    pre = json.load(open(os.path.join(model_dir, "preprocessor_config.json")))
    size = pre["size"]
    size = size["shortest_edge"] if "shortest_edge" in size else size["height"]
    onevision = config["model_type"] == "llava_onevision"
    return dict(
        file=path, alpha="white" if pre.get("do_convert_rgb", True) else "drop", size=size, resample=RESAMPLE[pre["resample"]],
        rescale=pre["rescale_factor"], mean=pre["image_mean"], std=pre["image_std"],
        # LLaVA-1.5's expand2square: tuple(int(x * 255) for x in image_processor.image_mean)
        pad_colour=[int(x * 255) for x in pre["image_mean"]],
        placement="anyres" if onevision else "pad", pinpoints=config.get("image_grid_pinpoints"),
    )


def image_features(model_dir, config, P, path):  # -> [tokens, text hidden]
    case = preprocessing(model_dir, config, path)
    pixels = torch.from_numpy(anyres.pixels(case)).to(torch.float64)  # [tiles, 3, S, S]
    vc = vision.read_config(model_dir)
    with torch.no_grad():
        tiles = vision.image_features(P, vc, pixels)  # [tiles, tokens per tile, text hidden]
    height, width = Image.open(path).size[::-1]
    pack = dict(placement=case["placement"], tile_size=case["size"], patch_size=vc["p"], height=height, width=width,
                pinpoints=case["pinpoints"], max_tiles=ANYRES_MAX_TILES)
    return anyres.pack(pack, tiles, P.get("image_newline"))


def logits_of(P, text, image_token, features):
    def logits(mb):  # LlavaOnevisionModel.forward / LlavaModel.forward: embeddings, then masked_scatter
        ids = torch.tensor(mb["input_ids"])  # [B,T]
        embeds = P["model.embed_tokens.weight"][ids]  # [B,T,C]
        mask = (ids == image_token).unsqueeze(-1).expand_as(embeds)
        images = torch.cat([features[i] for row in mb["images"] for i in row])  # [N,C], in sequence order
        if images.numel() != int(mask.sum()):
            raise ValueError(f"image features and image tokens do not match: {images.shape[0]} features, {int(mask[..., 0].sum())} tokens")
        return ref.forward(P, text, ids, embeds.masked_scatter(mask, images))

    return logits


def targets(mb, image_token):  # the HF shift of labels, with image positions ignored
    ids, labels = torch.tensor(mb["input_ids"]), torch.tensor(mb["labels"])
    labels = labels.masked_fill(ids == image_token, -100)
    return torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1).tolist()


def run(spec):
    model_dir = spec["model_dir"]
    config, text, P = read_model(model_dir)
    features = [image_features(model_dir, config, P, path) for path in spec["images"]]
    image_token = config["image_token_index"]
    runs = []
    for r in spec["runs"]:
        params = {n: P[n].clone() for n in ref.param_names(text)}  # each run from the same weights
        for step in r["steps"]:
            for mb in step["micro_batches"]:
                mb["targets"] = targets(mb, image_token)
        runs.append(ref.train(params, text, r, logits_of({**P, **params}, text, image_token, features)))
    return {"features": [{"shape": list(f.shape), "values": f.reshape(-1).tolist()} for f in features], "runs": runs}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_llava_train.py SPEC.json OUT.json")
    out = run(json.load(open(sys.argv[1])))
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
