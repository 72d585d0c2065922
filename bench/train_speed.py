#!/usr/bin/env python3
"""Training speed on this host: the reference trainer (`tessera train`) against PyTorch, one run.

  /usr/bin/python3 bench/train_speed.py [--steps 10] [--batch 16] [--seq 128]

Both train the default model's shape (4 layers, d_model 256, vocab 2,048) from the same GPT-2-style
start with AdamW, clipping and fp32 on 2 threads, on the same text; each reports optimizer steps
only (tokens/s), the first step left out as warm-up. PyTorch runs tools/torch_models.py's forward
(the model tessera is checked against) under autograd.
"""
import argparse
import os
import re
import subprocess
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gen_reference  # noqa: E402
import torch_models  # noqa: E402


def pytorch_tokens_per_s(steps, batch, seq):
    torch.set_num_threads(2)
    cfg = gen_reference.load_config(os.path.join(ROOT, "models", "default", "config.yaml"))
    params = {n: (torch.randn(s) * 0.02).requires_grad_() for n, s in torch_models.gpt2_param_shapes(cfg).items()}
    opt = torch.optim.AdamW(list(params.values()), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(1)
    timed = 0.0
    for step in range(steps + 1):
        x = torch.randint(0, cfg["vocab_size"], (batch, seq + 1), generator=gen)
        began = time.perf_counter()
        logits = torch_models.gpt2_forward(params, cfg, x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        if step > 0:
            timed += time.perf_counter() - began
    return steps * batch * seq / timed


def tessera_tokens_per_s(steps, batch, seq):
    text = os.path.join(ROOT, "tests", "data", "text", "persuasion-end.txt")
    out = subprocess.run([os.path.join(ROOT, "build", "tessera"), "train", "--text", text, "--steps", str(steps + 1),
                          "--batch", str(batch), "--seq", str(seq), "--eval-every", "0", "--eval-windows", "1", "-q"],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"([0-9.]+) tokens/s on this host", out).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args()
    t = tessera_tokens_per_s(a.steps, a.batch, a.seq)
    p = pytorch_tokens_per_s(a.steps, a.batch, a.seq)
    print(f"default model, {a.batch} x {a.seq} tokens per step, {a.steps} steps, fp32, 2 threads")
    print(f"  tessera reference trainer  {t:8.0f} tokens/s")
    print(f"  PyTorch {torch.__version__:<18} {p:8.0f} tokens/s")
    print(f"  ratio                      {t / p:8.2f}x")


if __name__ == "__main__":
    main()
