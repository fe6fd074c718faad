#!/usr/bin/python3
"""Float64 PyTorch reference of LoRA (test-only, see README.md): training steps, and a PEFT adapter directory read
as PEFT reads it. The decoder is torch_reference.py's; each adapted linear layer adds scaling·B(A x), as PEFT's
LoraLayer does (https://github.com/huggingface/peft, src/peft/tuners/lora/layer.py).

Usage: /usr/bin/python3 test/reference/torch_lora.py train SPEC.json OUT.json
  SPEC: torch_reference.py's, with trainable = the A and B names and
        lora: {alpha, rank, targets: [weight names], init: {name: {shape, values}}}; a micro-batch may carry
        masks: {module: [B][T][in]}, the dropout mask (0 or 1/(1-p)) of that module's input
  OUT:  torch_reference.py's (losses, grad_norms, params of A and B); base tensors never require a gradient.
Usage: /usr/bin/python3 test/reference/torch_lora.py logits SPEC.json OUT.json
  SPEC: {adapter_dir, base_dir, merged_dir, input_ids: [[int]], targets: [[int]]}
  OUT:  {adapter: logits of base + adapter (unmerged, PEFT names and target_modules), merged: logits of merged_dir,
         loss: mean cross-entropy of base + adapter over targets != -100}
"""
import json, os, re, sys
import torch
import torch.nn.functional as F
import torch_reference as ref

PEFT_PREFIX = "base_model.model."


def with_adapters(adapters, scaling, masks=None):
    """torch_reference.linear plus scaling·B(A·dropout(x)) on each adapted module: adapters {module: (A [r,in], B [out,r])};
    masks {module: [B,T,in]}, when given, are the dropout of the adapter's input (PEFT's lora_dropout)."""
    plain = ref.linear

    def linear(P, name, x):
        y = plain(P, name, x)
        if name in adapters:
            a, b = adapters[name]
            h = x * masks[name] if masks else x
            y = y + F.linear(F.linear(h, a), b) * scaling
        return y

    return linear


def load_model(model_dir):
    c = ref.read_config(model_dir)
    raw = ref.load_safetensors(os.path.join(model_dir, "model.safetensors"))
    return c, {n: raw[n] for n in ref.param_names(c)}


def train(spec):
    c, P = load_model(spec["model_dir"])
    lora = spec["lora"]
    A = {n: torch.tensor(t["values"], dtype=torch.float64).reshape(t["shape"]).requires_grad_(True) for n, t in lora["init"].items()}
    adapters = {w[: -len(".weight")]: (A[w[: -len(".weight")] + ".lora_A.weight"], A[w[: -len(".weight")] + ".lora_B.weight"]) for w in lora["targets"]}
    masks = {}
    ref.linear = with_adapters(adapters, lora["alpha"] / lora["rank"], masks)
    params = [A[n] for n in spec["trainable"]]
    if spec["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=spec["lrs"][0], weight_decay=spec.get("weight_decay", 0.0))
    else:
        opt = torch.optim.AdamW(params, lr=spec["lrs"][0], betas=tuple(spec["betas"]), eps=spec["eps"], weight_decay=spec.get("weight_decay", 0.0))
    losses, grad_norms = [], []
    for step, lr in zip(spec["steps"], spec["lrs"]):
        opt.zero_grad(set_to_none=False)
        mbs = [(torch.tensor(mb["input_ids"]), torch.tensor(mb["targets"])) for mb in step["micro_batches"]]
        count = sum(int((t != -100).sum()) for _, t in mbs)
        total = 0.0
        for (ids, tgt), mb in zip(mbs, step["micro_batches"]):
            masks.clear()
            masks.update({m: torch.tensor(v, dtype=torch.float64) for m, v in mb.get("masks", {}).items()})
            loss = F.cross_entropy(ref.forward(P, c, ids).view(-1, c["V"]), tgt.view(-1), ignore_index=-100, reduction="sum") / count
            loss.backward()
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
            "params": {n: {"shape": list(A[n].shape), "values": A[n].detach().reshape(-1).tolist()} for n in spec["trainable"]}}


def peft_targets(target_modules, module_names):
    """PEFT's check_target_module_exists: a string is re.fullmatch'ed, a list matches a name or a `.`-suffix."""
    if isinstance(target_modules, str):
        return [m for m in module_names if re.fullmatch(target_modules, m)]
    return [m for m in module_names if any(m == t or m.endswith("." + t) for t in target_modules)]


def logits(spec):
    cfg = json.load(open(os.path.join(spec["adapter_dir"], "adapter_config.json")))
    assert cfg["peft_type"] == "LORA" and not cfg.get("fan_in_fan_out") and cfg.get("bias", "none") == "none"
    raw = ref.load_safetensors(os.path.join(spec["adapter_dir"], "adapter_model.safetensors"))
    c, P = load_model(spec["base_dir"])
    modules = sorted({n[: -len(".weight")] for n in P if n.endswith("_proj.weight")})
    adapters = {}
    for m in peft_targets(cfg["target_modules"], modules):
        adapters[m] = (raw.pop(PEFT_PREFIX + m + ".lora_A.weight"), raw.pop(PEFT_PREFIX + m + ".lora_B.weight"))
    if raw:
        raise ValueError(f"adapter tensors for modules target_modules does not select: {sorted(raw)}")
    plain = ref.linear
    ids, tgt = torch.tensor(spec["input_ids"]), torch.tensor(spec["targets"])
    ref.linear = with_adapters(adapters, cfg["lora_alpha"] / cfg["r"])
    z = ref.forward(P, c, ids)
    loss = F.cross_entropy(z.view(-1, c["V"]), tgt.view(-1), ignore_index=-100, reduction="mean")
    ref.linear = plain
    mc, MP = load_model(spec["merged_dir"])
    merged = ref.forward(MP, mc, ids)
    return {"adapter": z.reshape(-1).tolist(), "merged": merged.reshape(-1).tolist(), "loss": loss.item(), "adapted": sorted(adapters)}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("train", "logits"):
        sys.exit("usage: torch_lora.py train|logits SPEC.json OUT.json")
    torch.set_grad_enabled(True)
    spec = json.load(open(sys.argv[2]))
    out = train(spec) if sys.argv[1] == "train" else logits(spec)
    with open(sys.argv[3], "w") as f:
        json.dump(out, f)
