// Every op kind on every target (as ggml's test-backend-ops): a small graph whose one transformer
// layer holds the op under test (with the projections it needs around it), compiled for every
// preset in configs/arch/ in every uniform precision the chip supports, run by the target's own
// executor (a mesh's per-core data plane; a GPU's or IPU's arithmetic in its plan's order) and
// checked against the host reference on the prompt's logits and three decoded steps. Every
// target lowers every op (mixtures of experts included, which targets declare as a capability). A
// new preset file, or a new op kind in the op table without a case here, is noticed without
// editing a list.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <set>

#include "tessera/base/fs.hpp"
#include "tessera/model/quantize.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/target/registry.hpp"
#include "test_util.hpp"

using namespace tessera;
using ir::OpKind;

namespace {

constexpr int64_t kVocab = 64, kContext = 32, kDim = 16, kHeads = 2, kHeadDim = 8, kFf = 32, kExperts = 4, kTopK = 2;

// The sizes every case's graph shares, as a model description (plans embed it).
std::string config_yaml(int64_t kv_heads, bool experts) {
  return fmt::format(
      "name: op-test\nfamily: llama\nvocab_size: {}\ncontext_length: {}\nd_model: {}\nn_layers: 1\nn_heads: {}\n"
      "n_kv_heads: {}\nd_ff: {}\nnorm_eps: 1.0e-5\nrope_theta: 10000.0\ntie_embeddings: true\n{}",
      kVocab, kContext, kDim, kHeads, kv_heads, kFf,
      experts ? fmt::format("n_experts: {}\nexperts_per_token: {}\n", kExperts, kTopK) : "");
}

using Layer = std::function<int(ir::Graph&, int x, int positions)>;

struct OpCase {
  std::string name;
  Layer layer;
  int64_t kv_heads = kHeads;
  bool position_table = false;  // the embedding sums a second table looked up by position
  bool experts = false;         // a mixture of experts (the config says so)
};

int param(ir::Graph& g, const std::string& name, std::vector<int64_t> shape) {
  return g.add_param(name, ir::Shape{std::move(shape)});
}

int linear(ir::Graph& g, int x, const std::string& name, int64_t out, int64_t in) {
  return g.add(OpKind::Linear, {x, param(g, name + ".weight", {out, in})}, {}, name);
}

ir::Attrs attention_attrs(int64_t kv_heads, bool causal = true) {
  return {{"n_heads", kHeads},
          {"n_kv_heads", kv_heads},
          {"head_dim", kHeadDim},
          {"layer", int64_t{0}},
          {"causal", int64_t{causal ? 1 : 0}}};
}

ir::Attrs rope_attrs(int64_t heads) { return {{"n_heads", heads}, {"head_dim", kHeadDim}, {"theta", 10000.0}}; }

// q, k, v projections (GQA when kv_heads < kHeads), RoPE on q and k if asked, attention (an
// encoder's, every query seeing every key, unless causal), output.
Layer attention(int64_t kv_heads, bool rope, bool causal = true) {
  return [=](ir::Graph& g, int x, int positions) {
    int q = linear(g, x, "q_proj", kDim, kDim), k = linear(g, x, "k_proj", kv_heads * kHeadDim, kDim);
    const int v = linear(g, x, "v_proj", kv_heads * kHeadDim, kDim);
    if (rope) {
      q = g.add(OpKind::Rope, {q, positions}, rope_attrs(kHeads), "rope_q");
      k = g.add(OpKind::Rope, {k, positions}, rope_attrs(kv_heads), "rope_k");
    }
    return linear(g, g.add(OpKind::Attention, {q, k, v}, attention_attrs(kv_heads, causal), "attention"), "o_proj",
                  kDim, kDim);
  };
}

std::vector<OpCase> cases() {
  const ir::Attrs eps{{"eps", 1e-5}};
  return {
      {"add",
       [](ir::Graph& g, int x, int) {
         return g.add(OpKind::Add, {x, x}, {}, "add");
       }},
      {"mul",
       [](ir::Graph& g, int x, int) {
         return g.add(OpKind::Mul, {x, x}, {}, "mul");
       }},
      {"layernorm",
       [=](ir::Graph& g, int x, int) {
         return g.add(OpKind::LayerNorm, {x, param(g, "ln.weight", {kDim}), param(g, "ln.bias", {kDim})}, eps, "ln");
       }},
      {"rmsnorm",
       [=](ir::Graph& g, int x, int) {
         return g.add(OpKind::RmsNorm, {x, param(g, "norm.weight", {kDim})}, eps, "norm");
       }},
      {"gelu", [](ir::Graph& g, int x, int) { return g.add(OpKind::Gelu, {x}, {}, "gelu"); }},
      {"gelu_exact",
       [](ir::Graph& g, int x, int) {
         return g.add(OpKind::Gelu, {x}, {{"exact", int64_t{1}}}, "gelu");
       }},
      // BERT's head inside a layer: a norm of a projection's output (split over a mesh's columns).
      {"layernorm_of_projection",
       [=](ir::Graph& g, int x, int) {
         const int h = g.add(OpKind::Gelu, {linear(g, x, "up", kFf, kDim)}, {{"exact", int64_t{1}}}, "gelu");
         const int n =
             g.add(OpKind::LayerNorm, {h, param(g, "ln.weight", {kFf}), param(g, "ln.bias", {kFf})}, eps, "ln");
         return linear(g, n, "down", kDim, kFf);
       }},
      {"silu", [](ir::Graph& g, int x, int) { return g.add(OpKind::Silu, {x}, {}, "silu"); }},
      {"matmul",
       [](ir::Graph& g, int x, int) {
         const int h =
             g.add(OpKind::MatMul, {x, param(g, "fc.weight", {kDim, kFf}), param(g, "fc.bias", {kFf})}, {}, "fc");
         return g.add(OpKind::MatMul, {h, param(g, "proj.weight", {kFf, kDim}), param(g, "proj.bias", {kDim})}, {},
                      "proj");
       }},
      {"linear", [](ir::Graph& g, int x, int) { return linear(g, linear(g, x, "up", kFf, kDim), "down", kDim, kFf); }},
      {"swiglu",
       [](ir::Graph& g, int x, int) {
         const int gate = linear(g, x, "gate_proj", kFf, kDim), up = linear(g, x, "up_proj", kFf, kDim);
         const int h = g.add(OpKind::Mul, {g.add(OpKind::Silu, {gate}, {}, "silu"), up}, {}, "silu_mul");
         return linear(g, h, "down_proj", kDim, kFf);
       }},
      {"slice_cols",
       [](ir::Graph& g, int x, int) {
         const int qkv =
             g.add(OpKind::MatMul, {x, param(g, "qkv.weight", {kDim, 3 * kDim}), param(g, "qkv.bias", {3 * kDim})}, {},
                   "qkv");
         std::vector<int> s;
         for (int64_t i = 0; i < 3; ++i)
           s.push_back(g.add(OpKind::SliceCols, {qkv}, {{"start", i * kDim}, {"size", kDim}}, fmt::format("s{}", i)));
         const int sum = g.add(OpKind::Add, {g.add(OpKind::Add, {s[0], s[1]}, {}, "s01"), s[2]}, {}, "s012");
         return g.add(OpKind::MatMul, {sum, param(g, "out.weight", {kDim, kDim}), param(g, "out.bias", {kDim})}, {},
                      "out");
       }},
      {"rope",
       [](ir::Graph& g, int x, int positions) {
         const int q = linear(g, x, "q_proj", kDim, kDim);
         return linear(g, g.add(OpKind::Rope, {q, positions}, rope_attrs(kHeads), "rope"), "o_proj", kDim, kDim);
       }},
      {"attention", attention(kHeads, false)},
      {"attention_gqa", attention(1, false), 1},
      {"attention_gqa_rope", attention(1, true), 1},
      {"attention_bidirectional", attention(kHeads, false, false)},
      {"embedding_positions", [](ir::Graph& g, int x, int) { return g.add(OpKind::Gelu, {x}, {}, "gelu"); }, kHeads,
       true},
      {"moe_experts",
       [](ir::Graph& g, int x, int) {
         std::vector<int> in = {x, linear(g, x, "moe.gate", kExperts, kDim)};
         for (int64_t e = 0; e < kExperts; ++e) {
           const std::string w = fmt::format("moe.experts.{}.", e);
           in.push_back(param(g, w + "w1.weight", {kFf, kDim}));
           in.push_back(param(g, w + "w3.weight", {kFf, kDim}));
           in.push_back(param(g, w + "w2.weight", {kDim, kFf}));
         }
         return g.add(OpKind::MoeExperts, in, {{"n_experts", kExperts}, {"top_k", kTopK}}, "moe");
       },
       kHeads, false, true},
  };
}

// tokens -> embedding (+ positions) -> layer 0: the case -> tied LM head.
ir::Graph build(const OpCase& c) {
  ir::Graph g;
  const int tokens = g.add_input("tokens", ir::DType::I32, ir::Shape{{ir::kSeq}});
  const int positions = g.add_input("positions", ir::DType::I32, ir::Shape{{ir::kSeq}});
  const int table = param(g, "wte.weight", {kVocab, kDim});
  int x = g.add(OpKind::Embedding, {table, tokens});
  if (c.position_table)
    x = g.add(OpKind::Add, {x, g.add(OpKind::Embedding, {param(g, "wpe.weight", {kContext, kDim}), positions})});
  g.set_layer(0);
  x = c.layer(g, x, positions);
  g.set_layer(-1);
  g.mark_output(g.add(OpKind::Linear, {x, table}, {}, "lm_head"));
  return g;
}

}  // namespace

TEST(TargetOps, TheCasesCoverEveryOpKind) {
  std::set<OpKind> used;
  for (const auto& c : cases()) {
    const ir::Graph graph = build(c);
    for (const auto& node : graph.nodes()) used.insert(node.op);
  }
  for (const auto& info : ir::op_table()) {
    if (info.training) continue;  // run by the reference trainer; checked against PyTorch (test_training_reference)
    EXPECT_TRUE(used.contains(info.kind)) << info.name << " has no case";
  }
}

TEST(TargetOps, EveryOpOnEveryTargetMatchesTheReference) {
  const std::vector<int32_t> prompt = {3, 17, 42, 5, 61, 8};
  int runs = 0;
  for (const auto& file : tessera::testing::arch_presets()) {
    const auto target = target::load_target(file);
    for (const char* format : {"fp32", "fp16", "bf16"}) {
      const PrecisionPolicy policy = PrecisionPolicy::uniform(format);
      if (!target->supports(policy)) continue;
      for (const OpCase& c : cases()) {
        SCOPED_TRACE(fmt::format("{} on {} in {}", c.name, target->arch().name, format));
        const std::string yaml = config_yaml(c.kv_heads, c.experts);
        auto graph = std::make_shared<const ir::Graph>(build(c));
        ASSERT_TRUE(graph->verify());
        const target::ModelSource model{ir::parse_model_config(yaml, "op-test"), yaml, "op-test", graph};
        EXPECT_TRUE(!c.experts || target->capabilities().mixture_of_experts);
        const auto compiled = target->compile(model, {.prompt_tokens = 6, .max_new_tokens = 3, .precision = policy});
        ASSERT_TRUE(compiled.status) << compiled.status.message();
        model::Weights weights = model::random_weights(*graph, 7);
        if (policy.weights != "fp32") weights = model::quantize_weights(*graph, weights, policy.weights);
        const auto machine = target->executor(*compiled.plan, *graph, weights, kContext);
        ref::ReferenceExecutor reference(*graph, weights, kContext, policy);
        // Formats narrower than fp32 round values the two compute in different summation orders.
        const double tolerance = policy.activations == "fp32" ? 1e-5 : 1e-2;
        EXPECT_LT(tessera::testing::max_relative_error(machine->forward(prompt), reference.forward(prompt)), tolerance);
        for (const int32_t next : {9, 33, 1}) {
          const std::span<const int32_t> one(&next, 1);
          EXPECT_LT(tessera::testing::max_relative_error(machine->forward(one), reference.forward(one)), tolerance);
        }
        ++runs;
      }
    }
  }
  EXPECT_GE(runs, 9 * static_cast<int>(cases().size() - 1) + 3) << "every case, experts on the GPUs";
}
