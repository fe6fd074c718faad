#!/usr/bin/python3
"""Float64 PyTorch reference of learning without forgetting (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/torch_lwf.py SPEC.json OUT.json
SPEC: torch_reference.py's, plus lwf: {weight, temperature, teacher_dir: str|null (null: the model itself, before training)}.
Each step's loss is CE + weight·T²·KL(softmax(z_teacher/T) ‖ softmax(z/T)), CE and KL both summed over the label
positions (target != -100) of every micro-batch and divided by the step's label count.
OUT:  torch_reference.py's, plus ces and kls (the CE and the mean KL per step) and kl_grad_norms (the norm of the
      L·T²·KL term's own gradient, before clipping: how much the term weighs in the update).
"""
import json, os, sys
import torch
import torch.nn.functional as F
from torch_reference import forward, load_safetensors, param_names, read_config


def run(spec):
    c = read_config(spec["model_dir"])
    raw = load_safetensors(os.path.join(spec["model_dir"], "model.safetensors"))
    P = {n: raw[n] for n in param_names(c)}
    lwf = spec["lwf"]
    teacher_dir = lwf.get("teacher_dir")
    if teacher_dir is None:
        T_P = {n: t.clone() for n, t in P.items()}  # the model as it was before training
    else:
        if read_config(teacher_dir) != c:
            raise ValueError("the teacher's config differs from the model's")
        t_raw = load_safetensors(os.path.join(teacher_dir, "model.safetensors"))
        T_P = {n: t_raw[n] for n in param_names(c)}
    trainable = spec["trainable"]
    for n, t in P.items():
        t.requires_grad_(n in trainable)
    params = [P[n] for n in trainable]
    if spec["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=spec["lrs"][0], weight_decay=spec.get("weight_decay", 0.0))
    else:
        opt = torch.optim.AdamW(params, lr=spec["lrs"][0], betas=tuple(spec["betas"]), eps=spec["eps"],
                                weight_decay=spec.get("weight_decay", 0.0))
    T, L = lwf["temperature"], lwf["weight"]
    losses, ces, kls, grad_norms, kl_grad_norms = [], [], [], [], []
    for step, lr in zip(spec["steps"], spec["lrs"]):
        opt.zero_grad(set_to_none=False)
        mbs = [(torch.tensor(mb["input_ids"]), torch.tensor(mb["targets"])) for mb in step["micro_batches"]]
        count = sum(int((t != -100).sum()) for _, t in mbs)
        total = ce_total = kl_total = 0.0
        kl_grads = [torch.zeros_like(p) for p in params]
        for ids, tgt in mbs:
            logits = forward(P, c, ids).view(-1, c["V"])  # [N,V]
            with torch.no_grad():
                teacher = forward(T_P, c, ids).view(-1, c["V"])
            mask = tgt.view(-1) != -100
            ce = F.cross_entropy(logits, tgt.view(-1), ignore_index=-100, reduction="sum") / count
            per_row = F.kl_div(F.log_softmax(logits / T, -1), F.log_softmax(teacher / T, -1), log_target=True, reduction="none").sum(-1)
            kl = per_row[mask].sum() / count
            loss = ce + L * T * T * kl
            for acc, g in zip(kl_grads, torch.autograd.grad(L * T * T * kl, params, retain_graph=True, allow_unused=True)):
                if g is not None:
                    acc += g
            loss.backward()
            total += loss.item()
            ce_total += ce.item()
            kl_total += kl.item()
        if spec.get("clip_norm") is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, spec["clip_norm"])
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(total)
        ces.append(ce_total)
        kls.append(kl_total)
        grad_norms.append(float(norm))
        kl_grad_norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in kl_grads]))))
    return {"losses": losses, "ces": ces, "kls": kls, "grad_norms": grad_norms, "kl_grad_norms": kl_grad_norms,
            "params": {n: {"shape": list(P[n].shape), "values": P[n].detach().reshape(-1).tolist()} for n in trainable}}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_lwf.py SPEC.json OUT.json")
    out = run(json.load(open(sys.argv[1])))
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
