#!/usr/bin/python3
"""Independent float64 PyTorch reference of LLaVA image features: vision tower and projector (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/torch_llava_vision.py SPEC.json OUT.json
Follows transformers' SiglipVisionModel / CLIPVisionModel (modeling_siglip, modeling_clip), the feature selection of
LlavaOnevisionModel / LlavaModel.get_image_features and LlavaMultiModalProjector, all in float64 (transformers runs
the attention softmax in float32; here it stays in float64). Reads the model directory's config.json
(transformers' llava_onevision or llava form) and model.safetensors (tower and projector under transformers' names).
SPEC: {model_dir, pixels: [{shape: [tiles, 3, S, S], values: [flat, row-major]}]}
OUT:  {features: [{shape: [tiles, tokens, text hidden], values: [flat, row-major]}]} (one per pixels entry)
"""
import json, os, sys
import torch
import torch.nn.functional as F

from torch_reference import load_safetensors

TOWER = "vision_tower.vision_model."
KIND_DEFAULTS = {  # what LlavaOnevisionConfig / LlavaConfig take when a field is absent
    "llava_onevision": dict(vision="siglip_vision_model", layer=-1, strategy="full"),
    "llava": dict(vision="clip_vision_model", layer=-2, strategy="default"),
}
ACTS = {
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


def read_config(model_dir):
    c = json.load(open(os.path.join(model_dir, "config.json")))
    d, v = KIND_DEFAULTS[c["model_type"]], c["vision_config"]
    clip = v.get("model_type", d["vision"]) == "clip_vision_model"
    return dict(
        clip=clip, H=v["hidden_size"], L=v["num_hidden_layers"], heads=v["num_attention_heads"], p=v["patch_size"],
        eps=v.get("layer_norm_eps", 1e-5 if clip else 1e-6), act=v.get("hidden_act", "quick_gelu" if clip else "gelu_pytorch_tanh"),
        layer=c.get("vision_feature_layer", d["layer"]), strategy=c.get("vision_feature_select_strategy", d["strategy"]),
        projector_act=c.get("projector_hidden_act", "gelu"),
    )


def linear(P, name, x):  # x @ W.T + b, W stored [out, in]
    return F.linear(x, P[name + ".weight"], P.get(name + ".bias"))


def layer_norm(P, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], P[name + ".weight"], P[name + ".bias"], eps)


def embeddings(P, c, pixels):  # SiglipVisionEmbeddings / CLIPVisionEmbeddings (+ CLIP's pre_layrnorm)
    e = TOWER + "embeddings."
    x = F.conv2d(pixels, P[e + "patch_embedding.weight"], P.get(e + "patch_embedding.bias"), stride=c["p"])  # [B, H, g, g]
    x = x.flatten(2).transpose(1, 2)  # [B, P, H]
    if c["clip"]:
        cls = P[e + "class_embedding"].expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)  # [B, P + 1, H]
    pos = P[e + "position_embedding.weight"][torch.arange(x.shape[1])]
    x = x + pos
    return layer_norm(P, TOWER + "pre_layrnorm", x, c["eps"]) if c["clip"] else x


def attention(P, c, prefix, x):  # SiglipAttention / CLIPAttention: no mask, scale hd^-0.5
    B, T, H = x.shape
    nh, hd = c["heads"], H // c["heads"]
    q, k, v = (linear(P, prefix + n, x).view(B, T, nh, hd).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
    w = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5, dim=-1)
    y = (w @ v).transpose(1, 2).reshape(B, T, H)
    return linear(P, prefix + "out_proj", y)


def encoder_layer(P, c, i, x):  # pre-LayerNorm: x + attn(ln1(x)), then h + mlp(ln2(h))
    p = f"{TOWER}encoder.layers.{i}."
    h = x + attention(P, c, p + "self_attn.", layer_norm(P, p + "layer_norm1", x, c["eps"]))
    m = linear(P, p + "mlp.fc2", ACTS[c["act"]](linear(P, p + "mlp.fc1", layer_norm(P, p + "layer_norm2", h, c["eps"]))))
    return h + m


def image_features(P, c, pixels):
    hidden_states = [embeddings(P, c, pixels)]  # output_hidden_states=True: the encoder's input first
    for i in range(c["L"]):
        hidden_states.append(encoder_layer(P, c, i, hidden_states[-1]))
    selected = hidden_states[c["layer"]]  # post_layernorm is never applied to these
    if c["strategy"] == "default":
        selected = selected[:, 1:]
    h = ACTS[c["projector_act"]](linear(P, "multi_modal_projector.linear_1", selected))
    return linear(P, "multi_modal_projector.linear_2", h)


def run(spec):
    c = read_config(spec["model_dir"])
    P = load_safetensors(os.path.join(spec["model_dir"], "model.safetensors"))
    out = []
    for px in spec["pixels"]:
        f = image_features(P, c, torch.tensor(px["values"], dtype=torch.float64).reshape(px["shape"]))
        out.append({"shape": list(f.shape), "values": f.reshape(-1).tolist()})
    return {"features": out}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_llava_vision.py SPEC.json OUT.json")
    torch.set_grad_enabled(False)
    result = run(json.load(open(sys.argv[1])))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
