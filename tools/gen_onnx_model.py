#!/usr/bin/env python3
"""Writes a small GPT-2-style model exported with torch.onnx, and what PyTorch generates with it
(tests/data/onnx/), for the test that `tessera run -m FILE.onnx` reads it:

  /usr/bin/python3 tools/gen_onnx_model.py

  gpt2-tiny.onnx     a GPT-2 written with torch.nn modules (nn.Embedding, nn.LayerNorm, nn.Linear,
                     a registered causal-mask buffer, tanh GELU, tied LM head), seeded random
                     weights, exported by Debian's torch 1.13 at opset 17 with a dynamic sequence
                     axis; the vocabulary is the shipped default model's (models/default)
  expected.json      the prompt, its token ids and PyTorch's greedy continuation (up to
                     <|endoftext|>, where generation stops) and its text
  micro.onnx         a one-block model of width 8 (16 tokens, 8 positions): the fuzzer's seed
  micro-static.onnx  the same exported for 6 tokens with no dynamic axis: torch.onnx folds the
                     position lookup, so only the first 6 positions are in the file
  unsupported.onnx   micro.onnx with exact (erf) GELU, which tessera does not model: the import
                     must refuse it naming the op and the node
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import torch_models  # noqa: E402
from gen_reference import random_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "onnx")
PROMPT = "It is a truth universally acknowledged, that a single man"
GENERATED = 12


class Block(nn.Module):
    def __init__(self, d, heads, ff, ctx, approximate):
        super().__init__()
        self.heads, self.approximate = heads, approximate
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, ff), nn.Linear(ff, d)
        self.register_buffer("mask", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)))

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        a = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.c_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate=self.approximate))


class Gpt2(nn.Module):
    def __init__(self, cfg, approximate="tanh"):
        super().__init__()
        d = cfg["d_model"]
        self.wte, self.wpe = nn.Embedding(cfg["vocab_size"], d), nn.Embedding(cfg["context_length"], d)
        self.h = nn.ModuleList(Block(d, cfg["n_heads"], cfg["d_ff"], cfg["context_length"], approximate)
                               for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(d, eps=cfg["norm_eps"])

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[-1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T

    def load(self, w):
        """Hugging Face GPT-2 names; Conv1D weights are [in, out], nn.Linear's [out, in]."""
        with torch.no_grad():
            self.wte.weight.copy_(w["wte.weight"]), self.wpe.weight.copy_(w["wpe.weight"])
            self.ln_f.weight.copy_(w["ln_f.weight"]), self.ln_f.bias.copy_(w["ln_f.bias"])
            for i, block in enumerate(self.h):
                p = f"h.{i}."
                for ours, theirs in [("ln_1", "ln_1"), ("ln_2", "ln_2"), ("c_attn", "attn.c_attn"),
                                     ("c_proj", "attn.c_proj"), ("c_fc", "mlp.c_fc"), ("mlp_proj", "mlp.c_proj")]:
                    module = getattr(block, ours)
                    weight = w[p + theirs + ".weight"]
                    module.weight.copy_(weight.T if weight.dim() == 2 else weight)
                    module.bias.copy_(w[p + theirs + ".bias"])


def export(model, path, dynamic=True):
    torch.onnx.export(model, (torch.zeros(1, 6, dtype=torch.long),), path, opset_version=17,
                      input_names=["input_ids"], output_names=["logits"],
                      dynamic_axes={"input_ids": {1: "sequence"}, "logits": {1: "sequence"}} if dynamic else None)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    pkg = os.path.join(ROOT, "models", "default")
    tokenizer = bpe.load(os.path.join(pkg, "encoder.json"), os.path.join(pkg, "vocab.bpe"))
    encoder = tokenizer.encoder
    cfg = {"family": "gpt2", "vocab_size": len(encoder), "context_length": 64, "d_model": 32, "n_layers": 2,
           "n_heads": 4, "n_kv_heads": 4, "d_ff": 128, "norm_eps": 1e-5, "tie_embeddings": True}
    w = {n: random_tensor(n, s, 7) for n, s in torch_models.gpt2_param_shapes(cfg).items()}
    os.makedirs(OUT, exist_ok=True)
    model = Gpt2(cfg).eval()
    model.load(w)
    export(model, os.path.join(OUT, "gpt2-tiny.onnx"))
    micro = dict(cfg, vocab_size=16, context_length=8, d_model=8, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=16)
    micro_weights = {n: random_tensor(n, s, 7) for n, s in torch_models.gpt2_param_shapes(micro).items()}
    for name, approximate, dynamic in [("micro.onnx", "tanh", True), ("micro-static.onnx", "tanh", False),
                                       ("unsupported.onnx", "none", True)]:
        small = Gpt2(micro, approximate=approximate).eval()
        small.load(micro_weights)
        export(small, os.path.join(OUT, name), dynamic)

    ids = tokenizer.encode(PROMPT)
    seq = list(ids)
    with torch.no_grad():
        for _ in range(GENERATED):
            logits = model(torch.tensor([seq]))[0, -1]
            # The module and tessera's functional reference agree on the same weights.
            assert torch.allclose(logits, torch_models.forward(w, cfg, torch.tensor(seq))[-1], atol=1e-4)
            seq.append(int(logits.argmax()))
            if seq[-1] == encoder["<|endoftext|>"]:  # generation stops there, as tessera's does
                seq.pop()
                break
    expected = {"prompt": PROMPT, "prompt_ids": ids, "greedy": seq[len(ids):],
                "text": tokenizer.decode(seq[len(ids):])}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
