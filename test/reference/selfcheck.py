#!/usr/bin/python3
"""Self-check of torch_reference.py against an independent NumPy forward + central finite differences.

Usage: /usr/bin/python3 test/reference/selfcheck.py   (exit 0 = pass)
Builds tiny random llama/qwen2/qwen3 checkpoints (F32, F16 and BF16 tensors) in a temp dir, runs the
reference as a subprocess and checks: loss == NumPy loss, SGD update == -lr * FD gradient (with and
without clipping + weight decay), grad_norm == FD gradient norm, and that AdamW lowers the loss.
"""
import json, os, struct, subprocess, sys, tempfile, time
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "torch_reference.py")
rng = np.random.default_rng(0)


def write_safetensors(path, tensors):  # tensors: {name: (dtype, float array)} -> returns stored float64 values
    header, blobs, off, stored = {}, [], 0, {}
    for name, (dt, a) in tensors.items():
        a32 = np.ascontiguousarray(a, np.float32)
        if dt == "BF16":
            raw = (a32.view(np.uint32) >> 16).astype(np.uint16)
            stored[name] = (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raw = a32.astype({"F32": np.float32, "F16": np.float16}[dt])
            stored[name] = raw.astype(np.float64)
        b = raw.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return stored


def make_model(d, cfg):
    C, H, KV, I, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or C // H
    mt, ab = cfg["model_type"], cfg.get("attention_bias", False)
    r = lambda *s: rng.normal(0, 0.3, s)
    t = {"model.embed_tokens.weight": ("F32", r(V, C)), "model.norm.weight": ("BF16", 1 + r(C))}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = ("F32", r(V, C))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = ("F16", 1 + r(C))
        t[p + "post_attention_layernorm.weight"] = ("BF16", 1 + r(C))
        for proj, out, inp in [("q", H * hd, C), ("k", KV * hd, C), ("v", KV * hd, C), ("o", C, H * hd)]:
            t[f"{p}self_attn.{proj}_proj.weight"] = ("F32", r(out, inp))
            if (mt == "qwen2" and proj != "o") or (mt != "qwen2" and ab):
                t[f"{p}self_attn.{proj}_proj.bias"] = ("F32", r(out))
        for proj, out, inp in [("gate", I, C), ("up", I, C), ("down", C, I)]:
            t[f"{p}mlp.{proj}_proj.weight"] = ("F32", r(out, inp))
            if mt == "llama" and cfg.get("mlp_bias"):
                t[f"{p}mlp.{proj}_proj.bias"] = ("F32", r(out))
        if mt == "qwen3":
            t[p + "self_attn.q_norm.weight"] = ("F16", 1 + r(hd))
            t[p + "self_attn.k_norm.weight"] = ("BF16", 1 + r(hd))
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    return write_safetensors(os.path.join(d, "model.safetensors"), t)


# ---- independent NumPy float64 forward/loss (no torch) ----
def np_loss(W, cfg, micro_batches):
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, L = cfg.get("head_dim") or C // H, cfg["rms_norm_eps"], cfg["num_hidden_layers"]
    norm = lambda x, w: x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
    lin = lambda x, n: x @ W[n + ".weight"].T + (W[n + ".bias"] if n + ".bias" in W else 0)
    total, count = 0.0, 0
    for mb in micro_batches:
        ids, tgt = np.array(mb["input_ids"]), np.array(mb["targets"])
        B, T = ids.shape
        ang = np.arange(T)[:, None] * (cfg["rope_theta"] ** (-np.arange(0, hd, 2) / hd))[None]  # [T,hd/2]
        def rot(x):  # x [B,T,n,hd]; rotate pairs (j, j+hd/2)
            a, b = x[..., : hd // 2], x[..., hd // 2:]
            c_, s_ = np.cos(ang)[None, :, None], np.sin(ang)[None, :, None]
            return np.concatenate([a * c_ - b * s_, b * c_ + a * s_], -1)
        x = W["model.embed_tokens.weight"][ids]
        for i in range(L):
            p = f"model.layers.{i}."
            n = norm(x, W[p + "input_layernorm.weight"])
            q = lin(n, p + "self_attn.q_proj").reshape(B, T, H, hd)
            k = lin(n, p + "self_attn.k_proj").reshape(B, T, KV, hd)
            v = lin(n, p + "self_attn.v_proj").reshape(B, T, KV, hd)
            if cfg["model_type"] == "qwen3":
                q, k = norm(q, W[p + "self_attn.q_norm.weight"]), norm(k, W[p + "self_attn.k_norm.weight"])
            q, k = rot(q), rot(k)
            y = np.zeros((B, T, H, hd))
            for h in range(H):
                kv = h // (H // KV)
                s = np.einsum("btd,bsd->bts", q[:, :, h], k[:, :, kv]) / np.sqrt(hd)
                s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
                s = np.exp(s - s.max(-1, keepdims=True))
                y[:, :, h] = np.einsum("bts,bsd->btd", s / s.sum(-1, keepdims=True), v[:, :, kv])
            h_ = x + lin(y.reshape(B, T, H * hd), p + "self_attn.o_proj")
            n = norm(h_, W[p + "post_attention_layernorm.weight"])
            g = lin(n, p + "mlp.gate_proj")
            x = h_ + lin(g / (1 + np.exp(-g)) * lin(n, p + "mlp.up_proj"), p + "mlp.down_proj")
        x = norm(x, W["model.norm.weight"])
        logits = x @ W["model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"].T
        m = logits.max(-1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
        valid = tgt != -100
        total -= logp[valid, tgt[valid]].sum()
        count += valid.sum()
    return total / count


def fd_grad(W, cfg, mbs, name, h=1e-6):
    g = np.zeros_like(W[name])
    for idx in np.ndindex(*W[name].shape):
        old = W[name][idx]
        W[name][idx] = old + h; lp = np_loss(W, cfg, mbs)
        W[name][idx] = old - h; lm = np_loss(W, cfg, mbs)
        W[name][idx] = old
        g[idx] = (lp - lm) / (2 * h)
    return g


def batch(V, B, T, pad):  # right-padded random batch, targets shifted, -100 on padding
    ids = rng.integers(0, V, (B, T))
    tgt = np.concatenate([ids[:, 1:], rng.integers(0, V, (B, 1))], 1)
    for b in range(B):
        n = T - int(rng.integers(0, pad + 1))
        if n < T:
            ids[b, n:], tgt[b, n - 1:] = 0, -100
    return {"input_ids": ids.tolist(), "targets": tgt.tolist()}


def run_ref(tmp, spec):
    sp, op = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
    json.dump(spec, open(sp, "w"))
    t0 = time.time()
    subprocess.run([sys.executable, REF, sp, op], check=True)
    return json.load(open(op)), time.time() - t0


def close(a, b, rtol=1e-6, atol=1e-9):
    return np.allclose(a, b, rtol=rtol, atol=atol)


def check_model(tmp, cfg, trainable):
    d = os.path.join(tmp, cfg["model_type"])
    W = make_model(d, cfg)
    V = cfg["vocab_size"]
    mbs = [batch(V, 2, 7, 3), batch(V, 3, 5, 2)]  # two micro-batches of different shapes
    loss0 = np_loss(W, cfg, mbs)
    G = {n: fd_grad(W, cfg, mbs, n) for n in trainable}
    gnorm = np.sqrt(sum((g * g).sum() for g in G.values()))
    base = dict(model_dir=d, trainable=trainable, optimizer="sgd", lrs=[0.1], weight_decay=0.0,
                betas=[0.9, 0.999], eps=1e-8, clip_norm=None, steps=[{"micro_batches": mbs}])
    ok = True
    out, secs = run_ref(tmp, base)
    ok &= check(f"{cfg['model_type']} loss", close(out["losses"][0], loss0, 1e-10, 0), out["losses"][0], loss0)
    ok &= check(f"{cfg['model_type']} grad_norm", close(out["grad_norms"][0], gnorm), out["grad_norms"][0], gnorm)
    for n in trainable:
        got = np.array(out["params"][n]["values"]).reshape(out["params"][n]["shape"])
        ok &= check(f"{cfg['model_type']} sgd update {n}", got.shape == W[n].shape and close(got - W[n], -0.1 * G[n]),
                    np.abs(got - W[n] + 0.1 * G[n]).max())
    clip, wd = 0.5 * gnorm, 0.01
    out, _ = run_ref(tmp, dict(base, clip_norm=clip, weight_decay=wd))
    coef = min(1.0, clip / (gnorm + 1e-6))  # torch.nn.utils.clip_grad_norm_
    for n in trainable:
        got = np.array(out["params"][n]["values"]).reshape(W[n].shape)
        ok &= check(f"{cfg['model_type']} clipped sgd+wd update {n}", close(got - W[n], -0.1 * (coef * G[n] + wd * W[n])),
                    np.abs(got - W[n] + 0.1 * (coef * G[n] + wd * W[n])).max())
    out, _ = run_ref(tmp, dict(base, optimizer="adamw", lrs=[1e-2] * 5, weight_decay=0.01, clip_norm=1.0,
                               steps=[{"micro_batches": mbs}] * 5))
    L = out["losses"]
    ok &= check(f"{cfg['model_type']} adamw loss decreases", all(b < a for a, b in zip(L, L[1:])), L)
    return ok, secs


def check(what, cond, *info):
    print(("PASS " if cond else "FAIL ") + what + ("" if cond else "  " + " ".join(map(str, info))))
    return bool(cond)


if __name__ == "__main__":
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=24, vocab_size=32, rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None)
    models = [
        (dict(common, model_type="qwen2", tie_word_embeddings=True),
         ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
          "model.layers.1.self_attn.k_proj.bias", "model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
          "model.layers.0.mlp.down_proj.weight", "model.layers.1.post_attention_layernorm.weight", "model.norm.weight"]),
        (dict(common, model_type="qwen3", tie_word_embeddings=False, attention_bias=True, head_dim=6),
         ["lm_head.weight", "model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight",
          "model.layers.0.self_attn.o_proj.bias", "model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.gate_proj.weight",
          "model.layers.0.input_layernorm.weight"]),
        (dict(common, model_type="llama", tie_word_embeddings=False, attention_bias=True, mlp_bias=True, num_key_value_heads=1),
         ["model.embed_tokens.weight", "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.bias",
          "model.layers.0.self_attn.v_proj.bias", "model.layers.0.mlp.down_proj.bias", "model.layers.1.self_attn.q_proj.weight"]),
    ]
    ok, times = True, []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg, trainable in models:
            r, s = check_model(tmp, cfg, trainable)
            ok &= r
            times.append(s)
    print(f"reference run time per call (tiny model, 1 step): {', '.join(f'{s:.2f}s' for s in times)}")
    print("ALL PASS" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)
