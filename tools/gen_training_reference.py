#!/usr/bin/env python3
"""Writes the PyTorch training references the C++ tests compare against (tests/data/reference/training-*.json).

  /usr/bin/python3 tools/gen_training_reference.py

Four models: the shipped default model (its safetensors), a tiny GPT-2, a tiny Llama (GQA, RoPE
with Llama 3.1 scaling, untied head) and the tiny BERT of tests/data/hf/bert (masked-LM: about 15%
of each batch's positions replaced by [MASK], the loss over those only, PyTorch's ignore_index -100
elsewhere), the last three with the seeded random weights of src/model/weights.cpp (mirrored in
gen_reference.py). For each, on fixed random token batches:
  - one step: the loss and, for every parameter, its gradient's L2 norm and 48 sampled elements;
  - 20 AdamW steps (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only, gradients clipped
    to global norm 1.0, a warmup-then-cosine learning rate given per step, two micro-batches per
    step whose gradients are averaged): the loss of every step and, for every parameter, the final
    value's norm and sampled elements;
  - for the tiny Llama, 5 SGD steps (momentum 0.9, weight decay 0.01, no clipping) the same way.
The models are tools/torch_models.py's functional forward passes; autograd gives the gradients.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_reference  # noqa: E402  (random_tensor, read_safetensors, load_config)
import torch_models  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "reference")
SAMPLES = 48


def batch_loss(w, cfg, inputs, targets):
    """Mean cross-entropy over every token of a batch of sequences ([B, T] long tensors)."""
    if cfg["family"] == "gpt2":
        logits = torch_models.gpt2_forward(w, cfg, inputs)
    else:  # the functional Llama and BERT take one sequence at a time
        forward = torch_models.bert_forward if cfg["family"] == "bert" else torch_models.llama_forward
        logits = torch.stack([forward(w, cfg, seq) for seq in inputs])
    return F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1), ignore_index=-100)


def sample(tensor, rng):
    flat = tensor.detach().reshape(-1)
    idx = sorted(rng.choice(flat.numel(), min(SAMPLES, flat.numel()), replace=False).tolist())
    return {"norm": float(flat.double().norm()), "indices": idx, "values": [float(flat[i]) for i in idx]}


def make_batches(rng, vocab, count, sequences, length, mask=None):
    """Next-token batches, or (mask: the [MASK] id) masked-LM ones."""
    out = []
    for _ in range(count):
        ids = rng.integers(0, vocab, (sequences, length + 1))
        if mask is None:
            out.append({"sequences": sequences, "inputs": ids[:, :-1].reshape(-1).tolist(),
                        "targets": ids[:, 1:].reshape(-1).tolist()})
            continue
        ids = ids[:, :-1]
        chosen = rng.random(ids.shape) < 0.15
        chosen[:, 0] |= ~chosen.any(axis=1)  # every sequence predicts at least one token
        out.append({"sequences": sequences, "inputs": np.where(chosen, mask, ids).reshape(-1).tolist(),
                    "targets": np.where(chosen, ids, -100).reshape(-1).tolist()})
    return out


def as_tensors(batch):
    s = batch["sequences"]
    return (torch.tensor(batch["inputs"]).view(s, -1), torch.tensor(batch["targets"]).view(s, -1))


def lr_at(step, steps, base, warmup):
    return base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))


def train(w0, cfg, batches, optimizer, steps, micro, base_lr, clip):
    params = {n: t.clone().requires_grad_() for n, t in w0.items()}
    matrices = [p for p in params.values() if p.dim() >= 2]
    vectors = [p for p in params.values() if p.dim() < 2]
    if optimizer == "adamw":
        opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}],
                                lr=base_lr, betas=(0.9, 0.95), eps=1e-8)
    else:
        opt = torch.optim.SGD([{"params": matrices, "weight_decay": 0.01}, {"params": vectors, "weight_decay": 0.0}],
                              lr=base_lr, momentum=0.9)
    losses, lrs = [], []
    for step in range(steps):
        lr = lr_at(step, steps, base_lr, 5)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total = 0.0
        for m in range(micro):
            x, y = as_tensors(batches[(step * micro + m) % len(batches)])
            loss = batch_loss(params, cfg, x, y)
            (loss / micro).backward()
            total += loss.item() / micro
        if clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
        opt.step()
        losses.append(total)
        lrs.append(lr)
    return params, losses, lrs


def case(name, cfg, config_path, w, weights_desc, seed, rng, sequences, length, mask=None):
    print(name, flush=True)
    batches = make_batches(rng, cfg["vocab_size"], 4, sequences, length, mask)
    params = {n: t.clone().requires_grad_() for n, t in w.items()}
    x, y = as_tensors(batches[0])
    loss = batch_loss(params, cfg, x, y)
    loss.backward()
    one_step = {"loss": float(loss), "gradients": {n: sample(p.grad, rng) for n, p in params.items()}}
    print(f"  one step: loss {float(loss):.6f}", flush=True)
    runs = []
    for optimizer, steps, micro, base_lr, clip in [("adamw", 20, 2, 3e-3, 1.0)] + (
            [("sgd", 5, 1, 0.05, 0.0)] if cfg["family"] == "llama" else []):
        final, losses, lrs = train(w, cfg, batches, optimizer, steps, micro, base_lr, clip)
        print(f"  {optimizer}: losses {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)
        runs.append({"optimizer": optimizer, "steps": steps, "micro_batches": micro, "learning_rates": lrs,
                     "clip_norm": clip, "losses": losses,
                     "final": {n: sample(p, rng) for n, p in final.items()}})
    payload = {"model": config_path, "weights": weights_desc, "batches": batches, "one_step": one_step,
               "training": runs}
    if seed is not None:
        payload["seed"] = seed
    with open(os.path.join(OUT, f"training-{name}.json"), "w") as f:
        json.dump(payload, f)
        f.write("\n")


def bert_case():
    """The masked-LM case, with a generator of its own (the other files do not change with it)."""
    path = "tests/data/hf/bert/config.json"
    with open(os.path.join(ROOT, path)) as f:
        hf = json.load(f)
    cfg = {"family": "bert", "vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
           "d_model": hf["hidden_size"], "n_layers": hf["num_hidden_layers"], "n_heads": hf["num_attention_heads"],
           "d_ff": hf["intermediate_size"], "norm_eps": hf["layer_norm_eps"], "type_vocab_size": hf["type_vocab_size"]}
    with open(os.path.join(ROOT, "tests/data/hf/bert/vocab.txt")) as f:
        mask = f.read().split("\n").index("[MASK]")
    w = {n: gen_reference.random_tensor(n, list(s), 11) for n, s in torch_models.bert_param_shapes(cfg).items()}
    case("bert-tiny", cfg, path, w, "random", 11, np.random.default_rng(2027), 3, 16, mask)


def main():
    torch.set_num_threads(2)
    if sys.argv[1:] == ["bert-tiny"]:
        bert_case()
        return
    rng = np.random.default_rng(2026)
    for name, config_path, seed in [("gpt2-tiny", "tests/data/gpt2-tiny.yaml", 3),
                                    ("llama-tiny", "tests/data/llama-tiny.yaml", 5)]:
        cfg = gen_reference.load_config(os.path.join(ROOT, config_path))
        shapes = (torch_models.gpt2_param_shapes if cfg["family"] == "gpt2" else torch_models.llama_param_shapes)(cfg)
        w = {n: gen_reference.random_tensor(n, list(s), seed) for n, s in shapes.items()}
        case(name, cfg, config_path, w, "random", seed, rng, 3, 16)
    pkg = os.path.join(ROOT, "models", "default")
    cfg = gen_reference.load_config(os.path.join(pkg, "config.yaml"))
    w = gen_reference.read_safetensors(os.path.join(pkg, "model.safetensors"))
    case("default", cfg, "models/default/config.yaml", w, "shipped", None, rng, 2, 48)
    bert_case()


if __name__ == "__main__":
    main()
