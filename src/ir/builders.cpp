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

// BertForMaskedLM with its Hugging Face tensor names: word, position and token-type embeddings
// summed and normalised; post-LayerNorm blocks (x = LN(x + attention(x)), x = LN(x + MLP(x)))
// with bidirectional attention and the erf GELU; the masked-LM head (dense, GELU, LayerNorm, then
// the word embeddings transposed plus a bias), or BertForQuestionAnswering's start and end logits.
Graph build_bert(const ModelConfig& c) {
  Graph g;
  const int64_t d = c.d_model;
  const int tokens = g.add_input("tokens", DType::I32, Shape{{kSeq}});
  const int positions = g.add_input("positions", DType::I32, Shape{{kSeq}});
  const int token_types = g.add_input("token_types", DType::I32, Shape{{kSeq}});
  const std::string e = "bert.embeddings.";
  const int words = g.add_param(e + "word_embeddings.weight", Shape{{c.vocab_size, d}});
  const int x0 = g.add(
      OpKind::Add, {g.add(OpKind::Embedding, {words, tokens}),
                    g.add(OpKind::Embedding,
                          {g.add_param(e + "position_embeddings.weight", Shape{{c.context_length, d}}), positions})});
  const int types = g.add_param(e + "token_type_embeddings.weight", Shape{{c.type_vocab_size, d}});
  const Attrs eps{{"eps", c.norm_eps}};
  auto layer_norm = [&](int in, const std::string& name) {
    return g.add(OpKind::LayerNorm,
                 {in, g.add_param(name + ".weight", Shape{{d}}), g.add_param(name + ".bias", Shape{{d}})}, eps, name);
  };
  int x = layer_norm(g.add(OpKind::Add, {x0, g.add(OpKind::Embedding, {types, token_types})}), e + "LayerNorm");
  auto linear = [&](int in, const std::string& name, int64_t n, int64_t k) {
    return g.add(OpKind::Linear,
                 {in, g.add_param(name + ".weight", Shape{{n, k}}), g.add_param(name + ".bias", Shape{{n}})}, {}, name);
  };
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    g.set_layer(layer);
    const std::string p = fmt::format("bert.encoder.layer.{}.", layer);
    const int q = linear(x, p + "attention.self.query", d, d);
    const int k = linear(x, p + "attention.self.key", d, d);
    const int v = linear(x, p + "attention.self.value", d, d);
    const int a = g.add(OpKind::Attention, {q, k, v},
                        {{"n_heads", c.n_heads},
                         {"n_kv_heads", c.n_heads},
                         {"head_dim", c.head_dim()},
                         {"layer", layer},
                         {"causal", int64_t{0}}},
                        p + "attention.self");
    x = layer_norm(g.add(OpKind::Add, {x, linear(a, p + "attention.output.dense", d, d)}, {}, p + "residual_1"),
                   p + "attention.output.LayerNorm");
    const int h = g.add(OpKind::Gelu, {linear(x, p + "intermediate.dense", c.d_ff, d)}, {{"exact", int64_t{1}}},
                        p + "intermediate.gelu");
    x = layer_norm(g.add(OpKind::Add, {x, linear(h, p + "output.dense", d, c.d_ff)}, {}, p + "residual_2"),
                   p + "output.LayerNorm");
  }
  g.set_layer(-1);
  if (c.head == ModelConfig::EncoderHead::QuestionAnswering) {  // BertForQuestionAnswering: start | end logits
    g.mark_output(linear(x, "qa_outputs", 2, d));
    return g;
  }
  const std::string t = "cls.predictions.transform.";
  x = g.add(OpKind::Gelu, {linear(x, t + "dense", d, d)}, {{"exact", int64_t{1}}}, t + "gelu");
  x = layer_norm(x, t + "LayerNorm");
  g.mark_output(
      g.add(OpKind::Linear, {x, words, g.add_param("cls.predictions.bias", Shape{{c.vocab_size}})}, {}, "lm_head"));
  return g;
}

}  // namespace

Graph build_model_graph(const ModelConfig& config) {
  switch (config.family) {
    case ModelFamily::Gpt2:
      return build_gpt2(config);
    case ModelFamily::Llama:
      return build_llama(config);
    case ModelFamily::Bert:
      return build_bert(config);
  }
  fail("unknown model family");
}

}  // namespace tessera::ir
