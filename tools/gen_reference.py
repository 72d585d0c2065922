#!/usr/bin/env python3
"""Writes the PyTorch reference outputs the C++ tests compare against (tests/data/reference/).

  /usr/bin/python3 tools/gen_reference.py

Four cases: the shipped default model (its safetensors, fixed prompts encoded with tools/bpe.py),
a gpt2-small-shaped model, a tiny Llama-shaped model (GQA, RoPE with Llama 3.1 scaling) and a tiny
Mixtral-shaped one (4 experts, 2 per token; the smallest router gap is printed), all
with the seeded random weights that src/model/weights.cpp generates (the rule is mirrored below,
bit for bit). For each prompt we store logits at a fixed sample of vocabulary ids for every
position, the full-vocabulary logsumexp and argmax per position, and a greedy continuation computed
by re-running the whole sequence each step (no KV cache), so the executor's cache is checked too.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import torch_models  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "reference")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def random_tensor(name, shape, seed):
    """Mirror of tessera::model::random_weights (see include/tessera/model/weights.hpp)."""
    n = int(np.prod(shape))
    key = np.uint64(fnv1a64(name) ^ ((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
    with np.errstate(over="ignore"):
        z = key + (np.arange(1, n + 1, dtype=np.uint64) * GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    v = u * np.float32(2) - np.float32(1)
    is_norm = len(shape) == 1 and name.endswith(".weight") and ("ln_" in name or "norm" in name or "LayerNorm" in name)
    if is_norm:
        out = np.float32(1) + v * np.float32(0.1)
    elif len(shape) == 1:
        out = v * np.float32(0.02)
    else:
        out = v * np.float32(np.sqrt(3.0 / min(shape)))
    return torch.from_numpy(out.reshape(shape).astype(np.float32))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[8 + n + b:8 + n + end]
        dt = {"F32": np.float32, "F16": np.float16}[e["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(raw, dtype=dt).astype(np.float32).reshape(e["shape"]))
    return out


def load_config(path):
    with open(path) as f:
        cfg = yaml.safe_load(f)
    cfg.setdefault("n_kv_heads", cfg["n_heads"])
    return cfg


def reference_case(w, cfg, tokens, n_greedy, sample_ids, prompt=None):
    with torch.no_grad():
        logits = torch_models.forward(w, cfg, torch.tensor(tokens))
        seq = list(tokens)
        margins = []
        for _ in range(n_greedy):
            last = torch_models.forward(w, cfg, torch.tensor(seq))[-1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            seq.append(int(last.argmax()))
    case = {
        "tokens": tokens,
        "logit_ids": sample_ids,
        "logits": [[float(x) for x in row[sample_ids]] for row in logits],
        "logsumexp": [float(x) for x in torch.logsumexp(logits.double(), dim=-1)],
        "argmax": [int(x) for x in logits.argmax(-1)],
        "greedy": seq[len(tokens):],
    }
    if prompt is not None:
        case["prompt"] = prompt
    gap = f", smallest router gap {min(torch_models.ROUTER_GAPS):.2e}" if torch_models.ROUTER_GAPS else ""
    torch_models.ROUTER_GAPS.clear()
    print(f"  {len(tokens)} tokens, greedy {case['greedy']}, smallest top-2 margin {min(margins):.4f}{gap}")
    return case


def write(name, payload):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")


def main():
    torch.set_num_threads(2)
    rng = np.random.default_rng(2024)

    # (a) The shipped default model on fixed prompts.
    pkg = os.path.join(ROOT, "models", "default")
    cfg = load_config(os.path.join(pkg, "config.yaml"))
    w = read_safetensors(os.path.join(pkg, "model.safetensors"))
    tok = bpe.load(os.path.join(pkg, "encoder.json"), os.path.join(pkg, "vocab.bpe"))
    ids = sorted(rng.choice(cfg["vocab_size"], 256, replace=False).tolist())
    prompts = ["It is a truth universally acknowledged, that",
               "Mr. Darcy's  letter\n\narrived at Longbourn; Elizabeth read it 3 times!",
               "\"Oh!\" cried she, 'tis"]
    print("default")
    write("default", {"model": "models/default/config.yaml", "weights": "shipped",
                      "cases": [reference_case(w, cfg, tok.encode(p), 8, ids, prompt=p) for p in prompts]})

    # (b) gpt2-small shapes, seeded random weights.
    for name, config_path, seed, lengths, n_greedy in [
            ("gpt2-small-random", "configs/models/gpt2-small.yaml", 7, [1, 13], 5),
            ("llama-tiny-random", "tests/data/llama-tiny.yaml", 11, [1, 24], 8),
            ("mixtral-tiny-random", "tests/data/mixtral-tiny.yaml", 13, [1, 24], 8)]:
        print(name)
        cfg = load_config(os.path.join(ROOT, config_path))
        shapes = (torch_models.gpt2_param_shapes if cfg["family"] == "gpt2" else torch_models.llama_param_shapes)(cfg)
        w = {n: random_tensor(n, list(s), seed) for n, s in shapes.items()}
        ids = sorted(rng.choice(cfg["vocab_size"], 256, replace=False).tolist())
        cases = [reference_case(w, cfg, rng.integers(0, cfg["vocab_size"], n).tolist(), n_greedy, ids)
                 for n in lengths]
        write(name, {"model": config_path, "weights": "random", "seed": seed, "cases": cases})


if __name__ == "__main__":
    main()
