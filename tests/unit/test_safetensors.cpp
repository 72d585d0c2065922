#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <bit>
#include <filesystem>
#include <fstream>
#include <random>

#include "tessera/base/error.hpp"
#include "tessera/base/half.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/safetensors.hpp"
#include "tessera/model/weights.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;
namespace fs = std::filesystem;

namespace {

fs::path temp_path(const std::string& name) { return fs::temp_directory_path() / ("tessera_test_" + name); }

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string raw_file(const std::string& header) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header;
}

ir::ModelConfig tiny_llama() {
  return ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/tests/data/llama-tiny.yaml");
}

// Writes the tiny Llama's random weights to a file, optionally dropping or reshaping one tensor.
fs::path write_model_file(const std::string& name, const std::string& drop = "", const std::string& extra = "") {
  const ir::Graph graph = ir::build_model_graph(tiny_llama());
  const model::Weights w = model::random_weights(graph, 3);
  std::vector<model::NamedTensor> tensors;
  for (const auto& node : graph.nodes())
    if (node.op == ir::OpKind::Param && node.name != drop)
      tensors.push_back({node.name, node.type.shape.dims, w.at(node.name).values});
  std::vector<float> extra_values(4, 1.0f);
  if (!extra.empty()) tensors.push_back({extra, {4}, extra_values});
  const fs::path path = temp_path(name);
  model::write_safetensors_f32(path, tensors);
  return path;
}

}  // namespace

TEST(Half, KnownBitPatterns) {
  EXPECT_EQ(fp16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_float(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x0001), 0x1p-24f) << "smallest subnormal";
  EXPECT_EQ(fp16_to_float(0x03ff), 0x3ffp-24f) << "largest subnormal";
  EXPECT_EQ(std::bit_cast<uint32_t>(fp16_to_float(0x8000)), 0x80000000u) << "-0";
  EXPECT_TRUE(std::isinf(fp16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7e00)));
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc0a0), -5.0f);
}

TEST(Safetensors, RoundTripThroughLoadWeights) {
  const fs::path path = write_model_file("ok.safetensors");
  const ir::Graph graph = ir::build_model_graph(tiny_llama());
  const model::Weights loaded = model::load_weights(graph, path);
  const model::Weights expected = model::random_weights(graph, 3);
  EXPECT_EQ(loaded.at("model.layers.1.mlp.down_proj.weight").values,
            expected.at("model.layers.1.mlp.down_proj.weight").values);
  EXPECT_EQ(loaded.size(), expected.size());
}

TEST(Safetensors, MissingTensorNamesTensorAndFile) {
  const fs::path path = write_model_file("missing.safetensors", "model.layers.1.self_attn.v_proj.weight");
  const std::string msg = error_of([&] { model::load_weights(ir::build_model_graph(tiny_llama()), path); });
  EXPECT_NE(msg.find("missing tensor 'model.layers.1.self_attn.v_proj.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
}

TEST(Safetensors, UnexpectedTensorsMeanTheConfigDisagrees) {
  const fs::path path = write_model_file("extra.safetensors", "", "model.layers.2.input_layernorm.weight");
  const std::string msg = error_of([&] { model::load_weights(ir::build_model_graph(tiny_llama()), path); });
  EXPECT_NE(msg.find("'model.layers.2.input_layernorm.weight'"), std::string::npos) << msg;
}

// Weights that hold NaN or infinity would still generate text; they are refused, naming the tensor.
TEST(Safetensors, NonFiniteWeightsAreRefused) {
  const ir::Graph graph = ir::build_model_graph(tiny_llama());
  const model::Weights w = model::random_weights(graph, 3);
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    std::vector<model::NamedTensor> tensors;
    for (const auto& node : graph.nodes())
      if (node.op == ir::OpKind::Param) tensors.push_back({node.name, node.type.shape.dims, w.at(node.name).values});
    std::vector<float> poisoned(tensors[3].values.begin(), tensors[3].values.end());
    poisoned[7] = bad;
    tensors[3].values = poisoned;
    const fs::path path = temp_path("nonfinite.safetensors");
    model::write_safetensors_f32(path, tensors);
    const std::string msg = error_of([&] { model::load_weights(graph, path); });
    EXPECT_NE(msg.find("tensor '" + tensors[3].name + "' holds " + (std::isnan(bad) ? "NaN" : "an infinity") +
                       " at element 7"),
              std::string::npos)
        << msg;
  }
}

TEST(Safetensors, WrongShapeIsReported) {
  ir::ModelConfig config = tiny_llama();
  config.d_ff = 320;
  const fs::path path = write_model_file("shape.safetensors");
  const std::string msg = error_of([&] { model::load_weights(ir::build_model_graph(config), path); });
  EXPECT_NE(msg.find("has shape [352,128] but the model config needs [320,128]"), std::string::npos) << msg;
}

TEST(Safetensors, HeaderErrors) {
  auto parse = [](const std::string& bytes) {
    return error_of([&] {
      model::parse_safetensors({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "f.st");
    });
  };
  EXPECT_NE(parse("abc").find("8-byte header length"), std::string::npos);
  EXPECT_NE(parse(raw_file("{\"a\":").substr(0, 10)).find("truncated"), std::string::npos);
  EXPECT_NE(parse(raw_file("{\"a\": [1,")).find("not valid JSON"), std::string::npos);
  EXPECT_NE(parse(raw_file("[1,2]")).find("must be an object"), std::string::npos);
  EXPECT_NE(parse(raw_file(R"({"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})") + "abcd").find("unknown dtype"),
            std::string::npos);
  EXPECT_NE(parse(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})") + "abcd").find("need 8 bytes"),
            std::string::npos);
  EXPECT_NE(parse(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})") + "abcd").find("truncated"),
            std::string::npos);
  EXPECT_NE(parse(raw_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})")).find("non-negative"),
            std::string::npos);
  EXPECT_NE(parse(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})") +
                  "abcdefgh")
                .find("overlap"),
            std::string::npos);
}

TEST(Safetensors, UnsupportedDtypeNamesTheTensor) {
  const fs::path path = temp_path("int8.safetensors");
  write_bytes(path, raw_file(R"({"model.norm.weight":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})") + "abcd");
  model::SafetensorsFile file(path);
  std::vector<float> out(4);
  const std::string msg = error_of([&] { file.read_f32(*file.find("model.norm.weight"), out); });
  EXPECT_NE(msg.find("'model.norm.weight' has dtype I8"), std::string::npos) << msg;
}

TEST(Safetensors, MissingAndTruncatedFiles) {
  EXPECT_NE(error_of([] { model::SafetensorsFile f(temp_path("does-not-exist")); }).find("cannot open"),
            std::string::npos);
  const std::string good = read_bytes(write_model_file("trunc-src.safetensors"));
  const fs::path cut = temp_path("trunc.safetensors");
  for (size_t len : {size_t{0}, size_t{5}, size_t{100}, good.size() / 2, good.size() - 1}) {
    write_bytes(cut, good.substr(0, len));
    EXPECT_THROW(model::load_weights(ir::build_model_graph(tiny_llama()), cut), Error) << "length " << len;
  }
}

// Random corruption: every mutated file must either load or throw Error, never crash or hang.
// (The libFuzzer target fuzz/fuzz_safetensors.cpp explores this further under ASan.)
TEST(Safetensors, RandomCorruptionNeverCrashes) {
  const std::vector<float> a(6, 1.5f), b(16, -2.0f);
  const fs::path path = temp_path("fuzz-src.safetensors");
  model::write_safetensors_f32(path, {{"a", {2, 3}, a}, {"b.weight", {16}, b}});
  const std::string good = read_bytes(path);
  const size_t header_end = 8 + static_cast<uint8_t>(good[0]);
  std::mt19937_64 rng(42);
  int rejected = 0, accepted = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      const size_t pos = trial % 10 == 0 ? rng() % 8 : 8 + rng() % (header_end - 8);
      bytes[pos] = rng() % 2 ? "0123456789[]{},:\"-eE."[rng() % 19] : static_cast<char>(rng());
    }
    if (trial % 7 == 0) bytes.resize(rng() % bytes.size());
    try {
      const auto index = model::parse_safetensors({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "m");
      for (const auto& e : index.entries) ASSERT_LE(index.data_start + e.end, bytes.size());
      ++accepted;
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 10000);
  EXPECT_GT(accepted, 100) << "some mutations (e.g. inside names) stay valid";
}
