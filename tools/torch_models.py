"""Functional PyTorch implementations of the GPT-2, Llama and Mixtral decoders and the BERT
encoder tessera builds.

These are the oracle the C++ reference executor is checked against. They are written from the
published architectures (GPT-2: Radford et al. 2019 / HF `modeling_gpt2.py`; Llama 3: Meta's
`model.py` / HF `modeling_llama.py`; Mixtral: Jiang et al. 2024, its routing as HF
`modeling_mixtral.py` describes it; BERT: Devlin et al. 2019 / HF `modeling_bert.py`'s
BertForMaskedLM), take a dict of weights keyed by Hugging Face tensor names, and
compute in fp32. They do not share code with tessera.
"""
import math

import torch
import torch.nn.functional as F


def gpt2_param_shapes(cfg):
    """HF GPT-2 tensor names and shapes (Conv1D weights are stored [in, out])."""
    d, ff, v, ctx = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"], cfg["context_length"]
    shapes = {"wte.weight": (v, d), "wpe.weight": (ctx, d)}
    for i in range(cfg["n_layers"]):
        p = f"h.{i}."
        shapes.update({
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, ff), p + "mlp.c_fc.bias": (ff,),
            p + "mlp.c_proj.weight": (ff, d), p + "mlp.c_proj.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return shapes


def llama_param_shapes(cfg):
    """HF Llama tensor names and shapes (nn.Linear weights are stored [out, in])."""
    d, ff, v = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    hd = d // cfg["n_heads"]
    kv = cfg["n_kv_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, d)}
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (d,),
            p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
            p + "post_attention_layernorm.weight": (d,),
        })
        if cfg.get("n_experts", 0):  # Mixtral's block-sparse MoE
            shapes[p + "block_sparse_moe.gate.weight"] = (cfg["n_experts"], d)
            for e in range(cfg["n_experts"]):
                q = p + f"block_sparse_moe.experts.{e}."
                shapes.update({q + "w1.weight": (ff, d), q + "w3.weight": (ff, d), q + "w2.weight": (d, ff)})
        else:
            shapes.update({p + "mlp.gate_proj.weight": (ff, d), p + "mlp.up_proj.weight": (ff, d),
                           p + "mlp.down_proj.weight": (d, ff)})
    shapes["model.norm.weight"] = (d,)
    if not cfg.get("tie_embeddings", False):
        shapes["lm_head.weight"] = (v, d)
    return shapes


def _causal_attention(q, k, v, n_heads, n_kv_heads):
    """q: [..., T, H*hd], k/v: [..., T, KV*hd] -> [..., T, H*hd], causal, grouped-query."""
    *lead, t, _ = q.shape
    hd = q.shape[-1] // n_heads
    q = q.view(*lead, t, n_heads, hd).transpose(-3, -2)
    k = k.view(*lead, t, n_kv_heads, hd).transpose(-3, -2).repeat_interleave(n_heads // n_kv_heads, dim=-3)
    v = v.view(*lead, t, n_kv_heads, hd).transpose(-3, -2).repeat_interleave(n_heads // n_kv_heads, dim=-3)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(-3, -2).reshape(*lead, t, n_heads * hd)


def gpt2_forward(w, cfg, tokens):
    """tokens: LongTensor [..., T] -> logits [..., T, vocab]."""
    d, eps = cfg["d_model"], cfg["norm_eps"]
    t = tokens.shape[-1]
    x = w["wte.weight"][tokens] + w["wpe.weight"][:t]
    for i in range(cfg["n_layers"]):
        p = f"h.{i}."
        h = F.layer_norm(x, (d,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(d, dim=-1)
        a = _causal_attention(q, k, v, cfg["n_heads"], cfg["n_heads"])
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (d,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (d,), w["ln_f.weight"], w["ln_f.bias"], eps)
    return x @ w["wte.weight"].T


def _rope_inv_freq(cfg, hd):
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    sc = cfg.get("rope_scaling")
    if sc:  # Llama 3.1 "llama3" frequency scaling (Meta's apply_scaling)
        factor, lo, hi, old = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"], sc[
            "original_context_length"]
        wavelen = 2 * math.pi / inv_freq
        smooth = (old / wavelen - lo) / (hi - lo)
        scaled = torch.where(wavelen > old / lo, inv_freq / factor,
                             (1 - smooth) * inv_freq / factor + smooth * inv_freq)
        inv_freq = torch.where(wavelen < old / hi, inv_freq, scaled)
    return inv_freq


def _rope(x, n_heads, positions, inv_freq):
    """HF 'rotate_half' RoPE on x: [T, n_heads*hd]."""
    t = x.shape[0]
    hd = x.shape[1] // n_heads
    ang = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], dim=1).to(torch.float32)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], dim=1).to(torch.float32)[:, None, :]
    x = x.view(t, n_heads, hd)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rot * sin).reshape(t, n_heads * hd)


def _rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


# The smallest gap between a token's k-th and (k+1)-th router logit seen since it was cleared: a
# reference with a tiny gap could route differently under another summation order.
ROUTER_GAPS = []


def router_choice(logits, top_k):
    """Mixtral's routing: softmax over all experts, the top_k kept and renormalised."""
    ranked = torch.sort(logits, dim=-1, descending=True).values
    ROUTER_GAPS.append(float((ranked[:, top_k - 1] - ranked[:, top_k]).min()))
    probs = torch.softmax(logits, dim=-1)
    weights, chosen = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(-1, keepdim=True), chosen


def _sparse_moe(h, w, p, n_experts, top_k):
    """Each token through its top_k SwiGLU experts, their outputs summed in expert order."""
    weights, chosen = router_choice(h @ w[p + "gate.weight"].T, top_k)
    out = torch.zeros_like(h)
    for e in range(n_experts):
        rows, slot = (chosen == e).nonzero(as_tuple=True)
        if rows.numel() == 0:
            continue
        q = p + f"experts.{e}."
        xe = h[rows]
        ye = (F.silu(xe @ w[q + "w1.weight"].T) * (xe @ w[q + "w3.weight"].T)) @ w[q + "w2.weight"].T
        out.index_add_(0, rows, ye * weights[rows, slot, None])
    return out


def llama_forward(w, cfg, tokens):
    d, eps = cfg["d_model"], cfg["norm_eps"]
    nh, nkv = cfg["n_heads"], cfg["n_kv_heads"]
    hd = d // nh
    t = tokens.shape[0]
    inv_freq = _rope_inv_freq(cfg, hd)
    pos = torch.arange(t)
    x = w["model.embed_tokens.weight"][tokens]
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        h = _rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = _rope(h @ w[p + "self_attn.q_proj.weight"].T, nh, pos, inv_freq)
        k = _rope(h @ w[p + "self_attn.k_proj.weight"].T, nkv, pos, inv_freq)
        v = h @ w[p + "self_attn.v_proj.weight"].T
        x = x + _causal_attention(q, k, v, nh, nkv) @ w[p + "self_attn.o_proj.weight"].T
        h = _rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if cfg.get("n_experts", 0):
            x = x + _sparse_moe(h, w, p + "block_sparse_moe.", cfg["n_experts"], cfg["experts_per_token"])
            continue
        g = F.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        x = x + g @ w[p + "mlp.down_proj.weight"].T
    x = _rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_embeddings", False) else w["lm_head.weight"]
    return x @ head.T


def bert_param_shapes(cfg):
    """HF BertForMaskedLM tensor names and shapes (nn.Linear weights are stored [out, in]); the
    masked-LM decoder is the word embeddings (tied), with a bias of its own."""
    d, ff, v, ctx = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"], cfg["context_length"]
    e = "bert.embeddings."
    shapes = {e + "word_embeddings.weight": (v, d), e + "position_embeddings.weight": (ctx, d),
              e + "token_type_embeddings.weight": (cfg["type_vocab_size"], d),
              e + "LayerNorm.weight": (d,), e + "LayerNorm.bias": (d,)}

    def linear(name, n, k):
        shapes.update({name + ".weight": (n, k), name + ".bias": (n,)})

    for i in range(cfg["n_layers"]):
        p = f"bert.encoder.layer.{i}."
        for part in ("query", "key", "value"):
            linear(p + "attention.self." + part, d, d)
        linear(p + "attention.output.dense", d, d)
        shapes.update({p + "attention.output.LayerNorm.weight": (d,), p + "attention.output.LayerNorm.bias": (d,)})
        linear(p + "intermediate.dense", ff, d)
        linear(p + "output.dense", d, ff)
        shapes.update({p + "output.LayerNorm.weight": (d,), p + "output.LayerNorm.bias": (d,)})
    linear("cls.predictions.transform.dense", d, d)
    shapes.update({"cls.predictions.transform.LayerNorm.weight": (d,), "cls.predictions.transform.LayerNorm.bias": (d,),
                   "cls.predictions.bias": (v,)})
    return shapes


def bert_forward(w, cfg, tokens):
    """tokens: LongTensor [T] (one segment: token type 0) -> masked-LM logits [T, vocab]."""
    d, eps, nh = cfg["d_model"], cfg["norm_eps"], cfg["n_heads"]
    hd = d // nh
    t = tokens.shape[0]
    e = "bert.embeddings."

    def lin(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    def ln(x, name):
        return F.layer_norm(x, (d,), w[name + ".weight"], w[name + ".bias"], eps)

    x = w[e + "word_embeddings.weight"][tokens] + w[e + "position_embeddings.weight"][:t] + \
        w[e + "token_type_embeddings.weight"][torch.zeros(t, dtype=torch.long)]
    x = ln(x, e + "LayerNorm")
    for i in range(cfg["n_layers"]):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (lin(x, p + "attention.self." + n).view(t, nh, hd).transpose(0, 1) for n in ("query", "key", "value"))
        a = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v).transpose(0, 1).reshape(t, d)
        x = ln(x + lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = F.gelu(lin(x, p + "intermediate.dense"))  # the erf form
        x = ln(x + lin(h, p + "output.dense"), p + "output.LayerNorm")
    h = ln(F.gelu(lin(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    return h @ w[e + "word_embeddings.weight"].T + w["cls.predictions.bias"]


def forward(w, cfg, tokens):
    if cfg["family"] == "bert":
        return bert_forward(w, cfg, tokens)
    return gpt2_forward(w, cfg, tokens) if cfg["family"] == "gpt2" else llama_forward(w, cfg, tokens)
