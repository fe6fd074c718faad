#!/usr/bin/python3
"""PyTorch baseline trainer for `narrowtune bench --vs-torch` (benchmark-only, never part of the product runtime).

Usage: /usr/bin/python3 bench/torch_trainer.py SPEC.json OUT.json

The same model, loss and optimizer as test/reference/torch_reference.py (Hugging Face Llama/Qwen2/Qwen3, summed
cross-entropy / valid tokens, clip_grad_norm_, torch.optim.AdamW), but in float32 and written the way one would
write a fast eager PyTorch trainer: frozen tensors have requires_grad=False (no weight gradients for them),
grouped-query attention without copying K/V per query head, fused-for-each AdamW.

SPEC: {model_dir, data (pre-tokenized JSONL), trainable: [HF names], seq, batch_size, threads,
       lr, betas, eps, weight_decay, clip_norm: float|null, steps: [[example index per row] per optimizer step],
       device: "cpu" (default) | "cuda"}
OUT:  {losses, grad_norms, step_ms (every step, warm-up included), setup_ms, max_rss_kb, train_peak_kb, torch, threads,
       device, gpu_peak_mb (cuda only), samples: [{wall, own, busy} CPU-time samples before the first step and after each]}

On cuda, TF32 is switched off so both trainers do float32 arithmetic, and each step ends with loss.item(),
which waits for the GPU: step_ms is the step's real time.
"""
import json, math, os, resource, struct, sys, time
import numpy as np
import torch
import torch.nn.functional as F

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def load_safetensors(path):  # -> {name: float32 tensor}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base, out = 8 + n, {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            b, e = meta["data_offsets"]
            f.seek(base + b)
            dt = np.dtype(NP_DTYPES[meta["dtype"]])
            a = np.frombuffer(f.read(e - b), dt)
            if meta["dtype"] == "BF16":
                a = (a.astype(np.uint32) << 16).view(np.float32)
            out[name] = torch.from_numpy(a.astype(np.float32).reshape(meta["shape"]))
    return out


def read_config(model_dir):
    c = json.load(open(os.path.join(model_dir, "config.json")))
    mt = c["model_type"]
    if mt not in ("llama", "qwen2", "qwen3"):
        raise ValueError(f"unsupported model_type {mt}")
    if c.get("rope_scaling") is not None:
        raise ValueError("rope_scaling is not supported (must be null)")
    H = c["num_attention_heads"]
    return dict(
        type=mt, C=c["hidden_size"], L=c["num_hidden_layers"], H=H,
        KV=c.get("num_key_value_heads") or H, hd=c.get("head_dim") or c["hidden_size"] // H,
        eps=c.get("rms_norm_eps", 1e-6), theta=c.get("rope_theta", 10000.0), V=c["vocab_size"],
        tied=bool(c.get("tie_word_embeddings", False)),
    )


def rmsnorm(x, w, eps):  # HF LlamaRMSNorm (float32 throughout here)
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(P, name, x):
    return F.linear(x, P[name + ".weight"], P.get(name + ".bias"))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Model:
    def __init__(self, P, c, T, device):
        self.P, self.c = P, c
        hd = c["hd"]
        inv_freq = 1.0 / c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos().float().to(device), emb.sin().float().to(device)  # [T, hd]
        G = c["H"] // c["KV"]
        # Query heads of one KV group are stacked along the rows: row g*T + t may attend to keys 0..t.
        causal = torch.ones(T, T, dtype=torch.bool).tril().repeat(G, 1)  # [G*T, T]
        self.mask = torch.zeros(G * T, T).masked_fill(~causal, float("-inf")).to(device)

    def forward(self, ids):  # ids [B, T] -> logits [B*T, V]
        P, c = self.P, self.c
        B, T = ids.shape
        H, KV, hd, eps = c["H"], c["KV"], c["hd"], c["eps"]
        G = H // KV
        x = F.embedding(ids, P["model.embed_tokens.weight"])  # [B, T, C]
        for i in range(c["L"]):
            p = f"model.layers.{i}."
            n = rmsnorm(x, P[p + "input_layernorm.weight"], eps)
            q = linear(P, p + "self_attn.q_proj", n).view(B, T, H, hd)
            k = linear(P, p + "self_attn.k_proj", n).view(B, T, KV, hd)
            v = linear(P, p + "self_attn.v_proj", n).view(B, T, KV, hd)
            if c["type"] == "qwen3":
                q = rmsnorm(q, P[p + "self_attn.q_norm.weight"], eps)
                k = rmsnorm(k, P[p + "self_attn.k_norm.weight"], eps)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, hd]
            q = q * self.cos + rotate_half(q) * self.sin
            k = k * self.cos + rotate_half(k) * self.sin
            qg = q.reshape(B, KV, G * T, hd)  # heads h = kv*G + g share KV head kv (HF repeat_kv order)
            att = (qg @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + self.mask  # [B, KV, G*T, T]
            y = att.softmax(dim=-1) @ v  # [B, KV, G*T, hd]
            y = y.view(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)
            h = x + linear(P, p + "self_attn.o_proj", y)
            n = rmsnorm(h, P[p + "post_attention_layernorm.weight"], eps)
            x = h + linear(P, p + "mlp.down_proj", F.silu(linear(P, p + "mlp.gate_proj", n)) * linear(P, p + "mlp.up_proj", n))
        x = rmsnorm(x, P["model.norm.weight"], eps)
        head = P["model.embed_tokens.weight" if c["tied"] else "lm_head.weight"]
        return F.linear(x.view(B * T, -1), head)


def busy_seconds():  # the whole machine's busy CPU seconds (user nice system irq softirq steal), for contention accounting
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")


def sample():
    return {"wall": time.perf_counter(), "own": time.process_time(), "busy": busy_seconds()}


def peak_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(spec):
    t_setup = time.perf_counter()
    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    torch.set_grad_enabled(True)
    device = torch.device(spec.get("device", "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    c = read_config(spec["model_dir"])
    P = {n: t.to(device) for n, t in load_safetensors(os.path.join(spec["model_dir"], "model.safetensors")).items()}
    if c["tied"]:
        P.pop("lm_head.weight", None)
    trainable = spec["trainable"]
    bad = [n for n in trainable if n not in P]
    if bad:
        raise ValueError(f"unknown trainable names: {bad}")
    for n, t in P.items():
        t.requires_grad_(n in trainable)
    params = [P[n] for n in trainable]
    T, Bsz = spec["seq"], spec["batch_size"]
    rows = [json.loads(line)["input_ids"] for line in open(spec["data"]) if line.strip()]
    model = Model(P, c, T, device)
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                            weight_decay=spec["weight_decay"], foreach=True)
    setup_ms = (time.perf_counter() - t_setup) * 1000
    losses, grad_norms, step_ms, samples = [], [], [], [sample()]
    for step in spec["steps"]:
        t0 = time.perf_counter()
        ids = torch.zeros(Bsz, T, dtype=torch.long)
        tgt = torch.full((Bsz, T), -100, dtype=torch.long)
        for b, i in enumerate(step):  # right-padded; targets shifted (HF convention)
            r = rows[i][:T]
            ids[b, :len(r)] = torch.tensor(r)
            tgt[b, :len(r) - 1] = torch.tensor(r[1:])
        count = int((tgt != -100).sum())
        ids, tgt = ids.to(device), tgt.to(device)
        opt.zero_grad(set_to_none=True)
        logits = model.forward(ids)
        loss = F.cross_entropy(logits, tgt.view(-1), ignore_index=-100, reduction="sum") / count
        loss.backward()
        if spec.get("clip_norm") is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, spec["clip_norm"])
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        opt.step()
        losses.append(loss.item())
        grad_norms.append(float(norm))
        step_ms.append((time.perf_counter() - t0) * 1000)
        samples.append(sample())
    train_peak = peak_kb()
    out = {"losses": losses, "grad_norms": grad_norms, "step_ms": step_ms, "setup_ms": setup_ms,
           "train_peak_kb": train_peak, "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "samples": samples, "device": str(device)}
    if device.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_trainer.py SPEC.json OUT.json")
    out = run(json.load(open(sys.argv[1])))
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
