#include "tessera/ir/builders.hpp"

#include <fmt/core.h>

namespace tessera::ir {

namespace {

Graph build_gpt2(const ModelConfig& c) {
  Graph g;
  const int64_t d = c.d_model;
  const int tokens = g.add_input("tokens", DType::I32, Shape{{kSeq}});
  const int positions = g.add_input("positions", DType::I32, Shape{{kSeq}});
  const int wte = g.add_param("wte.weight", Shape{{c.vocab_size, d}});
  const int wpe = g.add_param("wpe.weight", Shape{{c.context_length, d}});
  int x = g.add(OpKind::Add, {g.add(OpKind::Embedding, {wte, tokens}), g.add(OpKind::Embedding, {wpe, positions})});
  const Attrs eps{{"eps", c.norm_eps}};
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    g.set_layer(layer);
    const std::string p = fmt::format("h.{}.", layer);
    auto param = [&](const std::string& name, Shape shape) { return g.add_param(p + name, std::move(shape)); };
    int h = g.add(OpKind::LayerNorm, {x, param("ln_1.weight", {{d}}), param("ln_1.bias", {{d}})}, eps, p + "ln_1");
    const int qkv =
        g.add(OpKind::MatMul, {h, param("attn.c_attn.weight", {{d, 3 * d}}), param("attn.c_attn.bias", {{3 * d}})}, {},
              p + "attn.c_attn");
    const int q = g.add(OpKind::SliceCols, {qkv}, {{"start", int64_t{0}}, {"size", d}}, p + "q");
    const int k = g.add(OpKind::SliceCols, {qkv}, {{"start", d}, {"size", d}}, p + "k");
    const int v = g.add(OpKind::SliceCols, {qkv}, {{"start", 2 * d}, {"size", d}}, p + "v");
    const int a = g.add(
        OpKind::Attention, {q, k, v},
        {{"n_heads", c.n_heads}, {"n_kv_heads", c.n_heads}, {"head_dim", c.head_dim()}, {"layer", layer}}, p + "attn");
    x = g.add(OpKind::Add,
              {x, g.add(OpKind::MatMul, {a, param("attn.c_proj.weight", {{d, d}}), param("attn.c_proj.bias", {{d}})},
                        {}, p + "attn.c_proj")},
              {}, p + "residual_1");
    h = g.add(OpKind::LayerNorm, {x, param("ln_2.weight", {{d}}), param("ln_2.bias", {{d}})}, eps, p + "ln_2");
    h = g.add(OpKind::MatMul, {h, param("mlp.c_fc.weight", {{d, c.d_ff}}), param("mlp.c_fc.bias", {{c.d_ff}})}, {},
              p + "mlp.c_fc");
    h = g.add(OpKind::Gelu, {h}, {}, p + "gelu");
    x = g.add(OpKind::Add,
              {x, g.add(OpKind::MatMul, {h, param("mlp.c_proj.weight", {{c.d_ff, d}}), param("mlp.c_proj.bias", {{d}})},
                        {}, p + "mlp.c_proj")},
              {}, p + "residual_2");
  }
  g.set_layer(-1);
  x = g.add(OpKind::LayerNorm, {x, g.add_param("ln_f.weight", {{d}}), g.add_param("ln_f.bias", {{d}})}, eps, "ln_f");
  g.mark_output(g.add(OpKind::Linear, {x, wte}, {}, "lm_head"));
  return g;
}

Graph build_llama(const ModelConfig& c) {
  Graph g;
  const int64_t d = c.d_model, hd = c.head_dim(), kv = c.n_kv_heads * hd;
  const int tokens = g.add_input("tokens", DType::I32, Shape{{kSeq}});
  const int positions = g.add_input("positions", DType::I32, Shape{{kSeq}});
  const int embed = g.add_param("model.embed_tokens.weight", Shape{{c.vocab_size, d}});
  int x = g.add(OpKind::Embedding, {embed, tokens});
  const Attrs eps{{"eps", c.norm_eps}};
  auto rope_attrs = [&](int64_t heads) {
    Attrs a{{"n_heads", heads}, {"head_dim", hd}, {"theta", c.rope_theta}};
    if (c.rope_scaling) {
      a["scaling_factor"] = c.rope_scaling->factor;
      a["low_freq_factor"] = c.rope_scaling->low_freq_factor;
      a["high_freq_factor"] = c.rope_scaling->high_freq_factor;
      a["original_context_length"] = c.rope_scaling->original_context_length;
    }
    return a;
  };
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    g.set_layer(layer);
    const std::string p = fmt::format("model.layers.{}.", layer);
    auto param = [&](const std::string& name, Shape shape) { return g.add_param(p + name, std::move(shape)); };
    int h = g.add(OpKind::RmsNorm, {x, param("input_layernorm.weight", {{d}})}, eps, p + "input_layernorm");
    int q = g.add(OpKind::Linear, {h, param("self_attn.q_proj.weight", {{d, d}})}, {}, p + "self_attn.q_proj");
    int k = g.add(OpKind::Linear, {h, param("self_attn.k_proj.weight", {{kv, d}})}, {}, p + "self_attn.k_proj");
    const int v = g.add(OpKind::Linear, {h, param("self_attn.v_proj.weight", {{kv, d}})}, {}, p + "self_attn.v_proj");
    q = g.add(OpKind::Rope, {q, positions}, rope_attrs(c.n_heads), p + "rope_q");
    k = g.add(OpKind::Rope, {k, positions}, rope_attrs(c.n_kv_heads), p + "rope_k");
    const int a = g.add(OpKind::Attention, {q, k, v},
                        {{"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads}, {"head_dim", hd}, {"layer", layer}},
                        p + "self_attn");
    x = g.add(OpKind::Add,
              {x, g.add(OpKind::Linear, {a, param("self_attn.o_proj.weight", {{d, d}})}, {}, p + "self_attn.o_proj")},
              {}, p + "residual_1");
    h = g.add(OpKind::RmsNorm, {x, param("post_attention_layernorm.weight", {{d}})}, eps,
              p + "post_attention_layernorm");
    if (c.n_experts > 0) {  // Mixtral's block-sparse MoE, with its Hugging Face tensor names
      const std::string moe = p + "block_sparse_moe.";
      std::vector<int> inputs = {
          h, g.add(OpKind::Linear, {h, param("block_sparse_moe.gate.weight", {{c.n_experts, d}})}, {}, moe + "gate")};
      for (int64_t e = 0; e < c.n_experts; ++e) {
        const std::string expert = fmt::format("block_sparse_moe.experts.{}.", e);
        inputs.push_back(param(expert + "w1.weight", {{c.d_ff, d}}));
        inputs.push_back(param(expert + "w3.weight", {{c.d_ff, d}}));
        inputs.push_back(param(expert + "w2.weight", {{d, c.d_ff}}));
      }
      x = g.add(OpKind::Add,
                {x, g.add(OpKind::MoeExperts, inputs, {{"n_experts", c.n_experts}, {"top_k", c.experts_per_token}},
                          p + "block_sparse_moe")},
                {}, p + "residual_2");
      continue;
    }
    const int gate = g.add(OpKind::Linear, {h, param("mlp.gate_proj.weight", {{c.d_ff, d}})}, {}, p + "mlp.gate_proj");
    const int up = g.add(OpKind::Linear, {h, param("mlp.up_proj.weight", {{c.d_ff, d}})}, {}, p + "mlp.up_proj");
    h = g.add(OpKind::Mul, {g.add(OpKind::Silu, {gate}, {}, p + "silu"), up}, {}, p + "silu_mul");
    x = g.add(OpKind::Add,
              {x, g.add(OpKind::Linear, {h, param("mlp.down_proj.weight", {{d, c.d_ff}})}, {}, p + "mlp.down_proj")},
              {}, p + "residual_2");
  }
  g.set_layer(-1);
  x = g.add(OpKind::RmsNorm, {x, g.add_param("model.norm.weight", {{d}})}, eps, "model.norm");
  const int head = c.tie_embeddings ? embed : g.add_param("lm_head.weight", Shape{{c.vocab_size, d}});
  g.mark_output(g.add(OpKind::Linear, {x, head}, {}, "lm_head"));
  return g;
}

}  // namespace

Graph build_model_graph(const ModelConfig& config) {
  return config.family == ModelFamily::Gpt2 ? build_gpt2(config) : build_llama(config);
}

}  // namespace tessera::ir
