#!/usr/bin/env python3
"""Trains tessera's shipped default model: a small GPT-2 on Jane Austen's six novels.

Text: Debian package r-cran-janeaustenr (the novels are public domain; the package is MIT), read
through Rscript. Writes models/default/{model.safetensors, encoder.json, vocab.bpe, config.yaml,
TRAINING.md}. Deterministic for a given --seed and thread count.

  apt-get install r-cran-janeaustenr python3-torch
  /usr/bin/python3 tools/train_default_model.py            # ~25 min on 2 cores
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import torch_models  # noqa: E402

CONFIG = {
    "name": "default", "family": "gpt2", "vocab_size": 2048, "context_length": 256,
    "d_model": 256, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "d_ff": 1024,
    "norm_eps": 1e-5, "tie_embeddings": True,
}


def austen_text():
    script = ("library(janeaustenr); b <- austen_books();"
              "for (k in levels(b$book)) { cat(paste(b$text[b$book == k], collapse='\\n')); cat('\\x01') }")
    out = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True).stdout
    return [t for t in out.decode("utf-8").split("\x01") if t.strip()]


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        data = tensors[name].contiguous().to(torch.float16).numpy().tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "default"))
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    cfg = CONFIG

    books = austen_text()
    text = "<|endoftext|>".join(books)
    cut = int(len(text) * 0.95)  # the last 5% (the end of the last novel) is held out
    train_text, held_text = text[:cut], text[cut:]
    t0 = time.time()
    encoder, merges = bpe.train("".join(train_text.split("<|endoftext|>")), cfg["vocab_size"])
    assert len(encoder) == cfg["vocab_size"], len(encoder)
    tok = bpe.Tokenizer(encoder, merges)
    eot = encoder["<|endoftext|>"]

    def encode_docs(t):
        ids = []
        for i, part in enumerate(t.split("<|endoftext|>")):
            if i:
                ids.append(eot)
            ids += tok.encode(part)
        return torch.tensor(ids, dtype=torch.long)

    train_ids, held_ids = encode_docs(train_text), encode_docs(held_text)
    print(f"bpe: {len(merges)} merges, {len(train_ids)} train / {len(held_ids)} held-out tokens "
          f"({time.time() - t0:.0f}s)", flush=True)

    shapes = torch_models.gpt2_param_shapes(cfg)
    params = {}
    for name, shape in shapes.items():
        if name.endswith(".bias"):
            p = torch.zeros(shape)
        elif "ln_" in name:
            p = torch.ones(shape)
        else:
            std = 0.02 / math.sqrt(2 * cfg["n_layers"]) if name.endswith("c_proj.weight") else 0.02
            p = torch.randn(shape) * std
        params[name] = p.requires_grad_()
    decay = [p for n, p in params.items() if p.dim() == 2]
    no_decay = [p for n, p in params.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)

    def batch_loss(ids, starts):
        x = torch.stack([ids[s:s + args.seq] for s in starts])
        y = torch.stack([ids[s + 1:s + 1 + args.seq] for s in starts])
        logits = torch_models.gpt2_forward(params, cfg, x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), y.reshape(-1))

    def held_out_loss():
        with torch.no_grad():
            starts = list(range(0, len(held_ids) - args.seq - 1, args.seq))
            losses = [batch_loss(held_ids, starts[i:i + 64]).item() * len(starts[i:i + 64])
                      for i in range(0, len(starts), 64)]
            return sum(losses) / len(starts)

    warmup = 100
    t0 = time.time()
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train_ids) - args.seq - 1, (args.batch,), generator=gen)
        loss = batch_loss(train_ids, starts)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)

    # Held-out loss is measured on the fp16-rounded weights that ship.
    with torch.no_grad():
        for p in params.values():
            p.copy_(p.to(torch.float16).to(torch.float32))
    held = held_out_loss()
    print(f"held-out loss {held:.4f} nats/token (perplexity {math.exp(held):.1f})", flush=True)

    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "model.safetensors"), {n: p.detach() for n, p in params.items()},
                      {"format": "pt", "source": "tools/train_default_model.py"})
    bpe.save(encoder, merges, os.path.join(args.out, "encoder.json"), os.path.join(args.out, "vocab.bpe"))
    with open(os.path.join(args.out, "config.yaml"), "w") as f:
        f.write("# The shipped default model; written by tools/train_default_model.py\n")
        for k, v in cfg.items():
            text = str(v).lower() if isinstance(v, bool) else f"{v:.1e}" if isinstance(v, float) else v
            f.write(f"{k}: {text}\n")
        f.write("weights: model.safetensors\ntokenizer: {encoder: encoder.json, merges: vocab.bpe}\n")
    with open(os.path.join(args.out, "TRAINING.md"), "w") as f:
        f.write(f"steps {args.steps}, batch {args.batch} x {args.seq} tokens, lr {args.lr}, seed {args.seed}\n"
                f"train tokens {len(train_ids)}, held-out tokens {len(held_ids)}\n"
                f"held-out loss {held:.4f} nats/token (perplexity {math.exp(held):.1f}), fp16 weights\n"
                f"training wall time {time.time() - t0:.0f}s on {torch.get_num_threads()} threads\n")


if __name__ == "__main__":
    main()
