#include <gtest/gtest.h>

#include "tessera/ir/builders.hpp"

using namespace tessera;
using namespace tessera::ir;

TEST(OpTable, EveryOpHasItsRowInOrder) {
  const auto& table = op_table();
  for (size_t i = 0; i < table.size(); ++i) EXPECT_EQ(static_cast<size_t>(table[i].kind), i);
  EXPECT_EQ(table.back().kind, OpKind::SgdMomentum);
  EXPECT_FALSE(op_info(OpKind::Attention).training);
  EXPECT_TRUE(op_info(OpKind::AttentionGrad).training);
}

TEST(Graph, ShapeRulesRejectMismatchedMatmul) {
  Graph g;
  const int ids = g.add_input("tokens", DType::I32, Shape{{kSeq}});
  const int table = g.add_param("emb", Shape{{10, 16}});
  const int x = g.add(OpKind::Embedding, {table, ids});
  const int w = g.add_param("w", Shape{{8, 4}});
  EXPECT_THROW(g.add(OpKind::MatMul, {x, w}), Error);
  const int w2 = g.add_param("w2", Shape{{16, 4}});
  const int y = g.add(OpKind::MatMul, {x, w2});
  EXPECT_EQ(g.node(y).type.shape, (Shape{{kSeq, 4}}));
  EXPECT_THROW(g.add(OpKind::Linear, {x, w2}), Error) << "linear wants [out,in] = [N,16]";
  EXPECT_THROW(g.add(OpKind::SliceCols, {y}, {{"start", int64_t{2}}, {"size", int64_t{3}}}), Error);
  EXPECT_THROW(g.add(OpKind::Attention, {y, y, y}), Error) << "missing attributes";
}

TEST(Graph, VerifierCatchesCorruptedGraphs) {
  const auto config = load_model_config(std::string(TESSERA_SOURCE_DIR) + "/tests/data/llama-tiny.yaml");
  Graph g = build_model_graph(config);
  ASSERT_TRUE(g.verify().is_ok()) << g.verify().message();
  EXPECT_FALSE(Graph().verify().is_ok()) << "a graph without outputs is invalid";
}

TEST(Graph, DumpIsReadable) {
  const auto config = load_model_config(std::string(TESSERA_SOURCE_DIR) + "/tests/data/llama-tiny.yaml");
  const std::string dump = build_model_graph(config).dump();
  EXPECT_NE(dump.find("param \"model.layers.0.self_attn.k_proj.weight\""), std::string::npos);
  EXPECT_NE(dump.find("f32[64,128]"), std::string::npos) << "k_proj: 2 kv heads x 32 = 64 rows";
  EXPECT_NE(dump.find("attention("), std::string::npos);
  EXPECT_NE(dump.find("n_kv_heads=2"), std::string::npos);
  EXPECT_NE(dump.find("scaling_factor=8"), std::string::npos);
  EXPECT_NE(dump.find(": f32[seq,512]"), std::string::npos) << "logits";
}
