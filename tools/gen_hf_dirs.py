#!/usr/bin/env python3
"""Writes three small Hugging Face model directories and what PyTorch generates with them
(tests/data/hf/), for the test that `tessera run -m DIR` reads them:

  /usr/bin/python3 tools/gen_hf_dirs.py

  gpt2/   config.json (model_type gpt2), model.safetensors with GPT2LMHeadModel's names
          ("transformer." prefix, the causal-mask buffers "attn.bias", no duplicate of the tied
          lm_head), vocab.json + merges.txt
  llama/  config.json (model_type llama, grouped-query attention, Llama 3.1 rope_scaling), the
          weights sharded over two files with model.safetensors.index.json, and the same vocabulary
          as a tokenizers-library tokenizer.json (byte-level BPE, GPT-2's pre-tokenizer)
  mixtral/ as llama/, with model_type mixtral: 4 experts per layer, 2 per token
          (MixtralForCausalLM's block_sparse_moe tensor names)

Both use the shipped default model's 2,048-token GPT-2-style vocabulary (models/default) and
seeded random weights stored in fp16 (the reference computes in fp32 on the same rounded values).
expected.json holds the prompt, its token ids and the greedy continuation and its text.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import torch_models  # noqa: E402
from gen_reference import random_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "hf")
PROMPT = "It is a truth universally acknowledged, that a single man"
GENERATED = 12


def write_safetensors(path, tensors):
    """fp16 safetensors (int64 for integer tensors), tensors in the given order."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        if t.dtype == torch.int64:
            raw, dtype = t.numpy().astype(np.int64).tobytes(), "I64"
        else:
            raw, dtype = t.numpy().astype(np.float16).tobytes(), "F16"
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


def generate(w, cfg, tokenizer):
    ids = tokenizer.encode(PROMPT)
    seq = list(ids)
    with torch.no_grad():
        for _ in range(GENERATED):
            seq.append(int(torch_models.forward(w, cfg, torch.tensor(seq))[-1].argmax()))
    return {"prompt": PROMPT, "prompt_ids": ids, "greedy": seq[len(ids):], "text": tokenizer.decode(seq[len(ids):])}


def main():
    torch.set_num_threads(2)
    pkg = os.path.join(ROOT, "models", "default")
    tokenizer = bpe.load(os.path.join(pkg, "encoder.json"), os.path.join(pkg, "vocab.bpe"))
    encoder = tokenizer.encoder
    vocab = len(encoder)

    cases = {
        "gpt2": ({"family": "gpt2", "vocab_size": vocab, "context_length": 64, "d_model": 32, "n_layers": 2,
                  "n_heads": 4, "n_kv_heads": 4, "d_ff": 128, "norm_eps": 1e-5, "tie_embeddings": True},
                 {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_positions": 64,
                  "n_ctx": 64, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": None,
                  "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1,
                  "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02, "bos_token_id": 0,
                  "eos_token_id": 0, "torch_dtype": "float16", "transformers_version": "4.40.0"}),
        "llama": ({"family": "llama", "vocab_size": vocab, "context_length": 64, "d_model": 32, "n_layers": 2,
                   "n_heads": 4, "n_kv_heads": 2, "d_ff": 88, "norm_eps": 1e-5, "rope_theta": 500000.0,
                   "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_context_length": 16},
                   "tie_embeddings": False},
                  {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
                   "max_position_embeddings": 64, "hidden_size": 32, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 88,
                   "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                   "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                   "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
                   "attention_dropout": 0.0, "pretraining_tp": 1, "bos_token_id": 0, "eos_token_id": 0,
                   "torch_dtype": "float16", "transformers_version": "4.43.0", "use_cache": True}),
        "mixtral": ({"family": "llama", "vocab_size": vocab, "context_length": 64, "d_model": 32, "n_layers": 2,
                     "n_heads": 4, "n_kv_heads": 2, "d_ff": 48, "n_experts": 4, "experts_per_token": 2,
                     "norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_embeddings": False},
                    {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": vocab,
                     "max_position_embeddings": 64, "hidden_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48,
                     "num_local_experts": 4, "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02,
                     "output_router_logits": False, "router_jitter_noise": 0.0, "hidden_act": "silu",
                     "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "sliding_window": None,
                     "tie_word_embeddings": False, "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 0,
                     "torch_dtype": "float16", "transformers_version": "4.43.0", "use_cache": True}),
    }
    for name, (cfg, hf_config) in cases.items():
        out = os.path.join(OUT, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        shapes = torch_models.gpt2_param_shapes(cfg) if name == "gpt2" else torch_models.llama_param_shapes(cfg)
        # Stored in fp16; the reference computes on the rounded values.
        w = {n: random_tensor(n, s, 5).half().float() for n, s in shapes.items()}
        write_json(os.path.join(out, "config.json"), hf_config)
        if name == "gpt2":
            shutil.copy(os.path.join(pkg, "encoder.json"), os.path.join(out, "vocab.json"))
            shutil.copy(os.path.join(pkg, "vocab.bpe"), os.path.join(out, "merges.txt"))
        else:
            write_json(os.path.join(out, "tokenizer.json"), {
                "version": "1.0", "truncation": None, "padding": None,
                "added_tokens": [{"id": encoder["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                                  "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
                "normalizer": None,
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                  "use_regex": True},
                "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                   "use_regex": True},
                "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                          "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                          "vocab": encoder, "merges": [" ".join(m) for m in tokenizer.merges]}})
        if name == "gpt2":
            stored = {"transformer." + n: t for n, t in w.items()}
            for i in range(cfg["n_layers"]):  # the causal-mask buffer older GPT-2 checkpoints carry
                stored[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
            write_safetensors(os.path.join(out, "model.safetensors"), stored)
        else:
            names = list(w)
            half = len(names) // 2
            weight_map = {}
            for k, part in enumerate([names[:half], names[half:]]):
                shard = f"model-{k + 1:05d}-of-00002.safetensors"
                write_safetensors(os.path.join(out, shard), {n: w[n] for n in part})
                weight_map.update({n: shard for n in part})
            write_json(os.path.join(out, "model.safetensors.index.json"),
                       {"metadata": {"total_size": sum(t.numel() * 2 for t in w.values())}, "weight_map": weight_map})
        expected = generate(w, cfg, tokenizer)
        write_json(os.path.join(out, "expected.json"), expected)
        print(f"{name}: prompt ids {expected['prompt_ids']}, greedy {expected['greedy']} -> {expected['text']!r}")


if __name__ == "__main__":
    main()
