#!/usr/bin/env python3
"""Writes a small Hugging Face BERT directory and what PyTorch computes with it
(tests/data/hf/bert/), for the tests that `tessera run -m DIR` fills masks as BertForMaskedLM does:

  /usr/bin/python3 tools/gen_bert_dir.py

  config.json            model_type bert (BertForMaskedLM): 2 layers, d 32, 4 heads, d_ff 128
  vocab.txt              a WordPiece vocabulary built here: the special tokens, every character
                         of the text below and its "##" form, then its most frequent words
                         (lower-cased; the text is the end of Austen's Persuasion, public domain,
                         tests/data/text/persuasion-end.txt)
  tokenizer_config.json  do_lower_case: true
  model.safetensors      seeded random weights (fp16; the reference computes in fp32 on the
                         rounded values) under BertForMaskedLM's names, with the tensors real
                         checkpoints also carry: the position-id buffer (I64), the pooler, the
                         next-sentence head and the decoder's tied copies
  expected.json          for each prompt: its WordPiece ids (by the BertTokenizer algorithm
                         written out below with Python's unicodedata), each [MASK]'s five most
                         likely tokens and the logits of the [CLS] and [MASK] positions (PyTorch, fp32); and
                         tokenizer cases (accents, punctuation, unknown words)
"""
import collections
import json
import os
import shutil
import sys
import unicodedata

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402
from gen_hf_dirs import write_safetensors  # noqa: E402
from gen_reference import random_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "hf", "bert")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = 400
PROMPTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in "
    "want of a [MASK].",
    "Anne was [MASK] to see Captain [MASK] again.",
]
TOKENIZER_CASES = ["Émile's CAFÉ, naïve!", "qwxz unknownword", "tab\tand\nnewline [SEP] [MASK]", "Ünïcödé Ωmega 中文"]


# --- BertTokenizer (BasicTokenizer + WordpieceTokenizer), written from the algorithm ---------------

def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text, lower):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r"):
            continue
        out.append(" " if ch.isspace() or ch in "\t\n\r" else (f" {ch} " if is_cjk(cp) else ch))
    words = []
    for word in "".join(out).split():
        if lower:
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if is_punctuation(ch):
                if current:
                    words.append(current)
                words.append(ch)
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    return words


def wordpiece(word, vocab):
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start and (("##" if start else "") + word[start:end]) not in vocab:
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(("##" if start else "") + word[start:end])
        start = end
    return pieces


def encode(text, vocab, lower=True):
    ids = []
    while text:
        hits = [(text.find(s), s) for s in SPECIALS if text.find(s) >= 0]
        at, special = min(hits) if hits else (len(text), None)
        for word in basic_tokenize(text[:at], lower):
            ids += [vocab[p] for p in wordpiece(word, vocab)]
        if special is None:
            break
        ids.append(vocab[special])
        text = text[at + len(special):]
    return ids


# --- files --------------------------------------------------------------------------------------

def build_vocab(text):
    words = basic_tokenize(text, True)
    chars = sorted({c for w in words for c in w})
    tokens = SPECIALS + chars + ["##" + c for c in chars]
    for word, _ in collections.Counter(w for w in words if len(w) > 1).most_common():
        if len(tokens) >= len(SPECIALS) + 2 * len(chars) + WORDS:
            break
        tokens.append(word)
    # Word endings as "##" pieces, so unknown words split into more than characters.
    for suffix in ("##ing", "##ed", "##ly", "##ness", "##s"):
        if suffix not in tokens:
            tokens.append(suffix)
    return tokens


def write_json(path, payload):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    torch.set_num_threads(2)
    with open(os.path.join(ROOT, "tests", "data", "text", "persuasion-end.txt"), encoding="utf-8") as f:
        tokens = build_vocab(f.read())
    vocab = {t: i for i, t in enumerate(tokens)}
    cfg = {"family": "bert", "vocab_size": len(tokens), "context_length": 64, "d_model": 32, "n_layers": 2,
           "n_heads": 4, "d_ff": 128, "norm_eps": 1e-12, "type_vocab_size": 2}
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with open(os.path.join(OUT, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    write_json(os.path.join(OUT, "tokenizer_config.json"), {"do_lower_case": True, "model_max_length": 64})
    write_json(os.path.join(OUT, "config.json"), {
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": len(tokens),
        "max_position_embeddings": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "type_vocab_size": 2,
        "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "pad_token_id": 0, "classifier_dropout": None, "use_cache": True,
        "torch_dtype": "float16", "transformers_version": "4.43.0"})
    w = {n: random_tensor(n, s, 7).half().float() for n, s in torch_models.bert_param_shapes(cfg).items()}
    stored = dict(w)
    stored["bert.embeddings.position_ids"] = torch.arange(64, dtype=torch.int64).view(1, 64)
    stored["bert.pooler.dense.weight"] = random_tensor("bert.pooler.dense.weight", (32, 32), 7)
    stored["bert.pooler.dense.bias"] = torch.zeros(32)
    stored["cls.seq_relationship.weight"] = random_tensor("cls.seq_relationship.weight", (2, 32), 7)
    stored["cls.seq_relationship.bias"] = torch.zeros(2)
    stored["cls.predictions.decoder.weight"] = w["bert.embeddings.word_embeddings.weight"]
    stored["cls.predictions.decoder.bias"] = w["cls.predictions.bias"]
    write_safetensors(os.path.join(OUT, "model.safetensors"), stored)

    prompts = []
    with torch.no_grad():
        for text in PROMPTS:
            ids = [vocab["[CLS]"]] + encode(text, vocab) + [vocab["[SEP]"]]
            logits = torch_models.bert_forward(w, cfg, torch.tensor(ids))
            masks = [i for i, t in enumerate(ids) if t == vocab["[MASK]"]]
            prompts.append({
                "prompt": text, "ids": ids, "masks": masks,
                "top5": [logits[i].topk(5).indices.tolist() for i in masks],
                "top5_tokens": [[tokens[t] for t in logits[i].topk(5).indices.tolist()] for i in masks],
                "logits": {str(i): [round(float(v), 6) for v in logits[i]] for i in [0] + masks}})
    write_json(os.path.join(OUT, "expected.json"), {
        "prompts": prompts,
        "tokenizer": [{"text": t, "ids": encode(t, vocab)} for t in TOKENIZER_CASES]})


if __name__ == "__main__":
    main()
