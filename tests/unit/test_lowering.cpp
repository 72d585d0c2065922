// The target-independent lowering driver: what it groups and fuses, read from the graph alone.
#include <gtest/gtest.h>

#include "tessera/compiler/lowering.hpp"
#include "tessera/ir/builders.hpp"

using namespace tessera;
using compiler::LoweredKind;

namespace {

std::string kinds(const std::vector<compiler::LoweredOp>& ops) {
  std::string s;
  for (const auto& op : ops) s += std::string(s.empty() ? "" : " ") + compiler::lowered_kind_name(op.kind);
  return s;
}

ir::ModelConfig shipped(const char* name) {
  return ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/configs/models/" + name + ".yaml");
}

}  // namespace

TEST(Lowering, Gpt2LayersKeepCAttnWithItsThreeSlices) {
  const auto config = shipped("gpt2-small");
  const auto low = compiler::lower_graph(ir::build_model_graph(config));
  ASSERT_EQ(low.layers.size(), 12u);
  EXPECT_EQ(kinds(low.embedding), "embedding");
  EXPECT_EQ(low.embedding[0].tables, 2);  // tokens and positions, summed
  const auto& layer = low.layers[3];
  EXPECT_EQ(layer.prefix, "h.3.");
  EXPECT_EQ(kinds(layer.ops), "norm projection attention projection add norm projection activation projection add");
  const auto& qkv = layer.ops[1];
  EXPECT_EQ(qkv.local, "attn.c_attn");
  EXPECT_EQ(qkv.part_widths, (std::vector<int64_t>{768, 768, 768}));
  EXPECT_TRUE(qkv.bias);
  EXPECT_FALSE(qkv.split_input);
  EXPECT_TRUE(layer.ops[3].split_input);  // c_proj reads the heads' outputs
  EXPECT_FALSE(layer.ops[6].split_input);
  EXPECT_TRUE(layer.ops[8].split_input);  // mlp.c_proj reads the activation of c_fc's columns
  EXPECT_EQ(layer.ops[7].op, ir::OpKind::Gelu);
  EXPECT_EQ(kinds(low.head), "norm projection");
  EXPECT_EQ(low.lm_head().n, config.vocab_size);
  EXPECT_EQ(low.lm_head().weights, (std::vector<std::string>{"wte.weight"}));  // tied
}

TEST(Lowering, LlamaFusesSiblingProjectionsRopeAndTheGatedActivation) {
  const auto config = shipped("llama3-8b");
  const auto low = compiler::lower_graph(ir::build_model_graph(config));
  ASSERT_EQ(low.layers.size(), 32u);
  const auto& layer = low.layers[31];
  EXPECT_EQ(layer.prefix, "model.layers.31.");
  EXPECT_EQ(kinds(layer.ops),
            "norm projection rope attention projection add norm projection activation projection add");
  const auto& qkv = layer.ops[1];
  EXPECT_EQ(qkv.name, "model.layers.31.self_attn.qkv_proj");
  EXPECT_EQ(qkv.part_widths, (std::vector<int64_t>{4096, 1024, 1024}));  // GQA: k and v are not expanded
  EXPECT_EQ(qkv.weights.size(), 3u);
  EXPECT_EQ(layer.ops[2].width, 4096 + 1024);
  EXPECT_EQ(layer.ops[2].name, "model.layers.31.rope");
  EXPECT_EQ(layer.ops[3].kv_heads, 8);
  EXPECT_EQ(layer.ops[7].local, "mlp.gate_up_proj");
  EXPECT_EQ(layer.ops[7].n, 2 * config.d_ff);
  EXPECT_TRUE(layer.ops[8].gated);
  EXPECT_EQ(layer.ops[8].local, "silu_mul");
  EXPECT_TRUE(layer.ops[9].split_input);
  EXPECT_EQ(low.projection("model.layers.31.mlp.gate_up_proj"), &layer.ops[7]);
  EXPECT_EQ(low.projection("model.layers.31.mlp.gate_proj"), nullptr);
}

TEST(Lowering, LayersOutOfOrderAreAnError) {
  ir::Graph g;
  const int ids = g.add_input("tokens", ir::DType::I32, ir::Shape{{ir::kSeq}});
  g.set_layer(1);
  const int x = g.add(ir::OpKind::Embedding, {g.add_param("t", ir::Shape{{8, 4}}), ids});
  g.mark_output(x);
  EXPECT_THROW(compiler::lower_graph(g), Error);
}
