#!/usr/bin/python3
"""Independent float64 drift figures of a tuned model against its base (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/torch_figures.py SPEC.json OUT.json
SPEC: {base_dir, current_dir, examples: [{input_ids: [int], targets: [int] (shifted, -100 ignored)}],
       classes: {name: [token ids]}}   (the first class is "number")
OUT:  {positions, heldout_loss, heldout_loss_base, kl_to_base, top1_agreement, token_accuracy,
       mass: {name: value}, mass_base: {name: value}}   (every figure a mean over label positions)
"""
import json, os, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import forward, load_safetensors, param_names, read_config  # noqa: E402


def load_model(model_dir):  # -> ({name: float64 tensor}, config)
    c = read_config(model_dir)
    raw = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    return {n: raw[n] for n in param_names(c)}, c


def main(spec_path, out_path):
    spec = json.load(open(spec_path))
    Pb, cb = load_model(spec["base_dir"])
    Pc, cc = load_model(spec["current_dir"])
    sums = {"n": 0, "loss": 0.0, "loss_base": 0.0, "kl": 0.0, "agree": 0.0, "correct": 0.0}
    mass = {k: 0.0 for k in spec["classes"]}
    mass_base = {k: 0.0 for k in spec["classes"]}
    with torch.no_grad():
        for ex in spec["examples"]:
            ids = torch.tensor([ex["input_ids"]])
            tgt = torch.tensor(ex["targets"])
            keep = tgt != -100
            lp = F.log_softmax(forward(Pc, cc, ids)[0], dim=-1)[keep]  # [n, V]
            lpb = F.log_softmax(forward(Pb, cb, ids)[0], dim=-1)[keep]
            t = tgt[keep]
            sums["n"] += int(keep.sum())
            sums["loss"] += float(-lp.gather(1, t[:, None]).sum())
            sums["loss_base"] += float(-lpb.gather(1, t[:, None]).sum())
            sums["kl"] += float((lpb.exp() * (lpb - lp)).sum())
            sums["agree"] += float((lp.argmax(-1) == lpb.argmax(-1)).sum())
            sums["correct"] += float((lp.argmax(-1) == t).sum())
            for name, members in spec["classes"].items():
                idx = torch.tensor(members, dtype=torch.long)
                mass[name] += float(lp.exp()[:, idx].sum()) if len(members) else 0.0
                mass_base[name] += float(lpb.exp()[:, idx].sum()) if len(members) else 0.0
    n = sums["n"]
    out = {
        "positions": n,
        "heldout_loss": sums["loss"] / n,
        "heldout_loss_base": sums["loss_base"] / n,
        "kl_to_base": sums["kl"] / n,
        "top1_agreement": sums["agree"] / n,
        "token_accuracy": sums["correct"] / n,
        "mass": {k: v / n for k, v in mass.items()},
        "mass_base": {k: v / n for k, v in mass_base.items()},
    }
    json.dump(out, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
