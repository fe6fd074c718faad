#!/usr/bin/python3
"""Independent float64 figures for Evaluate's CHOICE and GENERATE kinds (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/torch_eval.py SPEC.json OUT.json
SPEC: {model_dir, rows: [{input_ids: [int], targets: [int] (shifted, -100 ignored)}],
       prompts: [[int]], max_new_tokens: int | [int per prompt], stop_ids: [int]}
OUT:  {logliks: [per row: sum of log p(target) over its non-ignored targets],
       generated: [per prompt: naive greedy ids (full forward every step, argmax), stopping before a stop id]}
"""
import json, os, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import forward, load_safetensors, param_names, read_config  # noqa: E402


def main(spec_path, out_path):
    spec = json.load(open(spec_path))
    c = read_config(spec["model_dir"])
    raw = load_safetensors(os.path.join(spec["model_dir"], "model.safetensors"))
    P = {n: raw[n] for n in param_names(c)}
    logliks, generated = [], []
    stops = set(spec.get("stop_ids", []))
    with torch.no_grad():
        for row in spec.get("rows", []):
            tgt = torch.tensor(row["targets"])
            keep = tgt != -100
            lp = F.log_softmax(forward(P, c, torch.tensor([row["input_ids"]]))[0], dim=-1)[keep]
            logliks.append(float(lp.gather(1, tgt[keep][:, None]).sum()))
        budgets = spec.get("max_new_tokens", 0)
        for i, prompt in enumerate(spec.get("prompts", [])):
            seq, out = list(prompt), []
            for _ in range(budgets[i] if isinstance(budgets, list) else budgets):
                nxt = int(forward(P, c, torch.tensor([seq]))[0, -1].argmax())
                if nxt in stops:
                    break
                out.append(nxt)
                seq.append(nxt)
            generated.append(out)
    json.dump({"logliks": logliks, "generated": generated}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
