#!/usr/bin/python3
"""Independent float64 PyTorch reference of narrowtune training steps (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/torch_reference.py SPEC.json OUT.json
Follows Hugging Face transformers modeling_llama / modeling_qwen2 / modeling_qwen3, all in float64.
SPEC: {model_dir, trainable: [HF names], optimizer: "sgd"|"adamw", lrs: [lr per step], weight_decay, betas, eps,
       clip_norm: float|null, steps: [{micro_batches: [{input_ids: [[int]], targets: [[int]] (shifted, -100 ignored)}]}]}
OUT:  {losses: [per step], grad_norms: [pre-clip L2 norm per step], params: {name: {shape, values (flat, row-major)}}}
"""
import json, math, os, struct, sys
import numpy as np
import torch
import torch.nn.functional as F

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def load_safetensors(path):  # -> {name: float64 tensor}
    buf = open(path, "rb").read()
    n = struct.unpack("<Q", buf[:8])[0]
    header, base, out = json.loads(buf[8:8 + n]), 8 + n, {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] not in NP_DTYPES:
            raise ValueError(f"{name}: unsupported dtype {meta['dtype']}")
        b, e = meta["data_offsets"]
        dt = np.dtype(NP_DTYPES[meta["dtype"]])
        a = np.frombuffer(buf, dt, count=(e - b) // dt.itemsize, offset=base + b)
        if meta["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(a.astype(np.float64).reshape(meta["shape"]))
    return out


def read_config(model_dir):
    return text_config(json.load(open(os.path.join(model_dir, "config.json"))))


def text_config(c):  # a decoder's config.json (or a LLaVA config's text_config)
    mt = c["model_type"]
    if mt not in ("llama", "qwen2", "qwen3"):
        raise ValueError(f"unsupported model_type {mt}")
    if c.get("rope_scaling") is not None:
        raise ValueError("rope_scaling is not supported (must be null)")
    if c.get("use_sliding_window"):
        raise ValueError("use_sliding_window is not supported")
    if c.get("hidden_act", "silu") != "silu":
        raise ValueError(f"unsupported hidden_act {c['hidden_act']}")
    H = c["num_attention_heads"]
    return dict(
        type=mt, C=c["hidden_size"], L=c["num_hidden_layers"], H=H,
        KV=c.get("num_key_value_heads") or H, hd=c.get("head_dim") or c["hidden_size"] // H,
        eps=c.get("rms_norm_eps", 1e-6), theta=c.get("rope_theta", 10000.0), V=c["vocab_size"],
        tied=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=mt == "qwen2" or bool(c.get("attention_bias", False)),
        o_bias=mt != "qwen2" and bool(c.get("attention_bias", False)),
        mlp_bias=mt == "llama" and bool(c.get("mlp_bias", False)),
    )


def param_names(c):  # exactly the tensors the HF module would own
    names = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if c["tied"] else ["lm_head.weight"])
    for i in range(c["L"]):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
        for proj, bias in [("q", c["qkv_bias"]), ("k", c["qkv_bias"]), ("v", c["qkv_bias"]), ("o", c["o_bias"])]:
            names += [f"{p}self_attn.{proj}_proj.weight"] + ([f"{p}self_attn.{proj}_proj.bias"] if bias else [])
        for proj in ("gate", "up", "down"):
            names += [f"{p}mlp.{proj}_proj.weight"] + ([f"{p}mlp.{proj}_proj.bias"] if c["mlp_bias"] else [])
        if c["type"] == "qwen3":
            names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
    return names


def rmsnorm(x, w, eps):  # normalizes over the last dim
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(P, name, x):  # x @ W.T + b, W stored [out, in]
    return F.linear(x, P[name + ".weight"], P.get(name + ".bias"))


def rope(x, cos, sin):  # x [B,heads,T,hd], cos/sin [T,hd]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def forward(P, c, ids, inputs_embeds=None):  # ids [B,T] -> logits [B,T,V]; inputs_embeds [B,T,C] replace the lookup
    B, T = ids.shape
    H, KV, hd, eps = c["H"], c["KV"], c["hd"], c["eps"]
    inv_freq = 1.0 / c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # [hd/2]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)  # [T,hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T,hd]
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # [T,T], True = may attend
    x = P["model.embed_tokens.weight"][ids] if inputs_embeds is None else inputs_embeds  # [B,T,C]
    for i in range(c["L"]):
        p = f"model.layers.{i}."
        n = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
        q = linear(P, p + "self_attn.q_proj", n).view(B, T, H, hd)
        k = linear(P, p + "self_attn.k_proj", n).view(B, T, KV, hd)
        v = linear(P, p + "self_attn.v_proj", n).view(B, T, KV, hd)
        if c["type"] == "qwen3":  # per-head RMSNorm over hd, before RoPE
            q = rmsnorm(q, P[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, P[p + "self_attn.k_norm.weight"], eps)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B,heads,T,hd]
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)  # [B,H,T,hd]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # [B,H,T,T]
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, H * hd)  # [B,T,H*hd]
        h = x + linear(P, p + "self_attn.o_proj", y)  # [B,T,C]
        n = rmsnorm(h, P[p + "post_attention_layernorm.weight"], eps)
        x = h + linear(P, p + "mlp.down_proj", F.silu(linear(P, p + "mlp.gate_proj", n)) * linear(P, p + "mlp.up_proj", n))
    x = rmsnorm(x, P["model.norm.weight"], eps)
    return F.linear(x, P["model.embed_tokens.weight" if c["tied"] else "lm_head.weight"])  # [B,T,V]


def run(spec):
    c = read_config(spec["model_dir"])
    raw = load_safetensors(os.path.join(spec["model_dir"], "model.safetensors"))
    missing = [n for n in param_names(c) if n not in raw]
    if missing:
        raise ValueError(f"missing tensors: {missing}")
    P = {n: raw[n] for n in param_names(c)}  # extra tensors in the file are ignored, as HF does
    return train(P, c, spec, lambda mb: forward(P, c, torch.tensor(mb["input_ids"])))


def train(P, c, spec, logits_of):  # spec's optimizer steps on P; logits_of(micro_batch) -> logits [B,T,V]
    trainable = spec["trainable"]
    bad = [n for n in trainable if n not in P]
    if bad:
        raise ValueError(f"unknown trainable names (tied lm_head is model.embed_tokens.weight): {bad}")
    for n, t in P.items():
        t.requires_grad_(n in trainable)
    params = [P[n] for n in trainable]
    lrs, steps = spec["lrs"], spec["steps"]
    if len(lrs) != len(steps):
        raise ValueError("lrs and steps must have the same length")
    if spec["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=lrs[0], weight_decay=spec.get("weight_decay", 0.0))
    elif spec["optimizer"] == "adamw":
        opt = torch.optim.AdamW(params, lr=lrs[0], betas=tuple(spec["betas"]), eps=spec["eps"],
                                weight_decay=spec.get("weight_decay", 0.0))
    else:
        raise ValueError(f"unknown optimizer {spec['optimizer']}")
    losses, grad_norms = [], []
    for step, lr in zip(steps, lrs):
        opt.zero_grad(set_to_none=False)
        mbs = [(mb, torch.tensor(mb["targets"])) for mb in step["micro_batches"]]
        count = sum(int((t != -100).sum()) for _, t in mbs)  # normalizer over the whole optimizer step
        if count == 0:
            raise ValueError("optimizer step has no target != -100")
        total = 0.0
        for mb, tgt in mbs:  # tgt [B,T]
            logits = logits_of(mb)
            loss = F.cross_entropy(logits.view(-1, c["V"]), tgt.view(-1), ignore_index=-100, reduction="sum") / count
            loss.backward()  # grads accumulate over micro-batches
            total += loss.item()
        if spec.get("clip_norm") is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, spec["clip_norm"])
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(total)
        grad_norms.append(float(norm))
    return {"losses": losses, "grad_norms": grad_norms,
            "params": {n: {"shape": list(P[n].shape), "values": P[n].detach().reshape(-1).tolist()} for n in trainable}}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_reference.py SPEC.json OUT.json")
    torch.set_grad_enabled(True)
    out = run(json.load(open(sys.argv[1])))
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
