#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <functional>
#include <map>

#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/onnx/onnx_import.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;

namespace {

const std::string kExport = std::string(TESSERA_SOURCE_DIR) + "/tests/data/onnx/gpt2-tiny.onnx";

// The committed export with one change made to its graph, as bytes.
std::string edited(const std::function<void(onnx::GraphProto&)>& change) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(read_text_file(kExport)));
  change(*model.mutable_graph());
  return model.SerializeAsString();
}

onnx::NodeProto& node_named(onnx::GraphProto& g, const std::string& name) {
  for (auto& n : *g.mutable_node())
    if (n.name() == name) return n;
  throw std::runtime_error("no node " + name);
}

}  // namespace

// tools/gen_onnx_model.py exported a 2-layer GPT-2 (d 32, 4 heads, MLP 128, the default model's
// 2,048-token vocabulary, 64 positions) with random weights: raised, it is that model, its weights
// under GPT-2's names in GPT-2's [in, out] layout, and a model config tessera's graph loads them into.
TEST(Onnx, ATorchExportIsRaisedToTheGpt2ItDescribes) {
  const onnx_import::ImportedModel m = onnx_import::import_onnx(read_text_file(kExport), kExport);
  EXPECT_EQ(m.family, "gpt2");
  EXPECT_EQ(m.vocab_size, 2048);
  EXPECT_EQ(m.context_length, 64);
  EXPECT_EQ(m.d_model, 32);
  EXPECT_EQ(m.n_layers, 2);
  EXPECT_EQ(m.n_heads, 4);
  EXPECT_EQ(m.d_ff, 128);
  EXPECT_NEAR(m.norm_eps, 1e-5, 1e-12);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& t : m.tensors) {
    EXPECT_FALSE(shapes.contains(t.name)) << t.name << " twice";
    shapes[t.name] = t.shape;
    EXPECT_EQ(static_cast<int64_t>(t.values.size()), ir::Shape{t.shape}.elements()) << t.name;
  }
  EXPECT_EQ(shapes.size(), 2u + 2 * 12 + 2);
  EXPECT_EQ(shapes.at("h.1.attn.c_attn.weight"), (std::vector<int64_t>{32, 96}));
  EXPECT_EQ(shapes.at("h.0.mlp.c_proj.weight"), (std::vector<int64_t>{128, 32}));

  const std::string micro = std::string(TESSERA_SOURCE_DIR) + "/tests/data/onnx/micro.onnx";
  const onnx_import::ImportedModel small = onnx_import::import_onnx(read_text_file(micro), micro);
  EXPECT_EQ(std::vector<int64_t>(
                {small.vocab_size, small.context_length, small.d_model, small.n_layers, small.n_heads, small.d_ff}),
            std::vector<int64_t>({16, 8, 8, 1, 2, 16}));
  // Exported for 6 tokens with no dynamic axis: the position lookup folded to the table's first 6
  // rows, which are all the file says; the rest is the same model.
  const std::string fixed = std::string(TESSERA_SOURCE_DIR) + "/tests/data/onnx/micro-static.onnx";
  const onnx_import::ImportedModel folded = onnx_import::import_onnx(read_text_file(fixed), fixed);
  EXPECT_EQ(folded.context_length, 6);
  ASSERT_EQ(folded.tensors.size(), small.tensors.size());
  for (size_t i = 0; i < small.tensors.size(); ++i) {
    EXPECT_EQ(folded.tensors[i].name, small.tensors[i].name);
    if (folded.tensors[i].name == "wpe.weight")
      EXPECT_TRUE(std::equal(folded.tensors[i].values.begin(), folded.tensors[i].values.end(),
                             small.tensors[i].values.begin()));
    else
      EXPECT_EQ(folded.tensors[i].values, small.tensors[i].values) << folded.tensors[i].name;
  }

  const ir::ModelConfig config = ir::load_model_config(kExport);
  EXPECT_EQ(config.name, "gpt2-tiny");
  EXPECT_EQ(config.n_heads, 4);
  ASSERT_TRUE(config.weights_path.has_value());
  const model::Weights w = model::load_weights(ir::build_model_graph(config), *config.weights_path);
  EXPECT_EQ(w.size(), shapes.size());
  // A LayerNorm's scale of the export as torch stored it (h.0.ln_1.weight is an initializer of that name).
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(read_text_file(kExport)));
  for (const auto& t : proto.graph().initializer())
    if (t.name() == "h.1.ln_2.bias") {
      std::vector<float> stored(32);
      std::memcpy(stored.data(), t.raw_data().data(), 32 * sizeof(float));
      EXPECT_EQ(w.at("h.1.ln_2.bias").values, stored);
    }
}

// What the import refuses, each naming the file and, where one is to blame, the node and its op.
TEST(Onnx, GraphsThatAreNotAGpt2AreRefusedByNode) {
  const auto refused = [](const std::string& bytes) {
    return error_of([&] { onnx_import::import_onnx(bytes, "m.onnx"); });
  };
  const std::string whole = read_text_file(kExport);
  EXPECT_NE(refused(whole.substr(0, whole.size() / 3)).find("m.onnx: "), std::string::npos);
  EXPECT_NE(refused("not a model").find("not an ONNX model"), std::string::npos);
  EXPECT_NE(refused(read_text_file(std::string(TESSERA_SOURCE_DIR) + "/tests/data/onnx/unsupported.onnx"))
                .find("node '/h.0/Erf' (Erf): exact (erf) GELU"),
            std::string::npos);
  EXPECT_NE(refused(edited([](onnx::GraphProto& g) {
              node_named(g, "/h.1/Tanh").set_op_type("Cos");
            })).find("node '/h.1/Tanh' (Cos): tessera does not import Cos nodes"),
            std::string::npos);
  EXPECT_NE(refused(edited([](onnx::GraphProto& g) {
              node_named(g, "/h.0/Softmax").set_domain("com.microsoft");
            })).find("is from operator set 'com.microsoft'"),
            std::string::npos);
  // Scores scaled by 1/head_dim instead of 1/sqrt(head_dim).
  EXPECT_NE(refused(edited([](onnx::GraphProto& g) {
              auto& c = node_named(g, "/h.0/Constant_8");
              auto* t = c.mutable_attribute(0)->mutable_t();
              t->clear_float_data();
              const float eight = 8;
              t->set_raw_data(std::string(reinterpret_cast<const char*>(&eight), 4));
            })).find("scales its scores by 0.125, not 1/sqrt(head_dim) = 0.353553"),
            std::string::npos);
  // A mask that keeps every key: bidirectional attention is not a decoder's.
  EXPECT_NE(refused(edited([](onnx::GraphProto& g) {
              for (auto& t : *g.mutable_initializer())
                if (t.name() == "h.0.mask") t.set_raw_data(std::string(64 * 64, '\1'));
            })).find("keeps query 0's key 1, which a causal mask hides"),
            std::string::npos);
  // An LM head of its own.
  EXPECT_NE(refused(edited([](onnx::GraphProto& g) {
              for (auto& t : *g.mutable_initializer())
                if (t.name() == "onnx::MatMul_295") (*t.mutable_raw_data())[0] ^= 1;
            })).find("the LM head is a matrix of its own"),
            std::string::npos);
  // A weight that does not hold what its shape says.
  EXPECT_NE(refused(edited([](onnx::GraphProto& g) {
              for (auto& t : *g.mutable_initializer())
                if (t.name() == "h.0.c_fc.bias") t.mutable_raw_data()->resize(100);
            })).find("tensor 'h.0.c_fc.bias' holds 100 bytes of data for 128 elements"),
            std::string::npos);
}
