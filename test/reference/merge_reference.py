#!/usr/bin/python3
"""Float64 reference of narrowtune's WiSE-FT merge (test-only, see README.md).

Usage: /usr/bin/python3 test/reference/merge_reference.py SPEC.json OUT.json
SPEC: {base_dir, tuned_dir | null, adapter_dir | null (a PEFT LoRA adapter on base_dir), alpha}
OUT:  {name: {dtype, bits: [stored value of each element as an unsigned integer]}} for every tensor of the base:
      base + alpha·(tuned − base) in float64, tuned = base + (lora_alpha/r)·B·A for an adapter, rounded once to nearest
      even in the base's dtype. The rounding is done here from the value's exponent, not by a float32 cast.
"""
import json, os, struct, sys
import numpy as np
from torch_reference import load_safetensors

# (significand bits including the implicit one, frexp exponent of the smallest normal)
FORMATS = {"BF16": (8, -125), "F16": (11, -13)}


def dtypes(path):
    buf = open(path, "rb").read()
    n = struct.unpack("<Q", buf[:8])[0]
    return {k: v["dtype"] for k, v in json.loads(buf[8:8 + n]).items() if k != "__metadata__"}


def round_once(x, dtype):  # float64 array -> stored bits of the correctly rounded values
    if dtype == "F32":
        return x.astype(np.float32).view(np.uint32)
    p, emin = FORMATS[dtype]
    _, e = np.frexp(x)
    q = np.ldexp(1.0, np.maximum(e, emin) - p)  # spacing of the format around each value
    r = np.round(x / q) * q  # x / q is exact (a power of two); np.round is half to even
    if dtype == "F16":
        return r.astype(np.float16).view(np.uint16)
    return (r.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # exact: r has 8 significant bits


def main(spec):
    base_file = os.path.join(spec["base_dir"], "model.safetensors")
    base, kinds = load_safetensors(base_file), dtypes(base_file)
    if spec.get("adapter_dir"):
        cfg = json.load(open(os.path.join(spec["adapter_dir"], "adapter_config.json")))
        scale = cfg["lora_alpha"] / cfg["r"]
        lora = load_safetensors(os.path.join(spec["adapter_dir"], "adapter_model.safetensors"))
        tuned = {n: t.clone() for n, t in base.items()}
        for name in lora:
            if name.endswith(".lora_A.weight"):
                module = name[len("base_model.model."):-len(".lora_A.weight")]
                b = lora[name.replace("lora_A", "lora_B")]
                tuned[module + ".weight"] += scale * (b @ lora[name])
    else:
        tuned = load_safetensors(os.path.join(spec["tuned_dir"], "model.safetensors"))
    a = spec["alpha"]
    out = {}
    for name, b in base.items():
        x = b.numpy()
        merged = x + a * (tuned[name].numpy() - x)
        out[name] = {"dtype": kinds[name], "bits": round_once(merged.reshape(-1), kinds[name]).tolist()}
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: merge_reference.py SPEC.json OUT.json")
    with open(sys.argv[2], "w") as f:
        json.dump(main(json.load(open(sys.argv[1]))), f)
