#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>

#include "tessera/base/formats.hpp"
#include "tessera/base/half.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/quantize.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;

TEST(Formats, Bf16RoundsToNearestEven) {
  EXPECT_EQ(encode_bf16(1.0f), 0x3F80);
  EXPECT_EQ(encode_bf16(1.0f + 0x1p-8f), 0x3F80) << "tie -> even";
  EXPECT_EQ(encode_bf16(1.0f + 3 * 0x1p-8f), 0x3F82) << "tie -> even (up)";
  EXPECT_EQ(encode_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81) << "just above a tie rounds up";
  EXPECT_EQ(encode_bf16(std::numeric_limits<float>::max()), 0x7F80) << "overflow -> inf";
  EXPECT_EQ(encode_bf16(-0.0f), 0x8000);
  // Every bf16 value survives a round trip.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float v = bf16_to_float(static_cast<uint16_t>(b));
    if (!std::isnan(v)) {
      ASSERT_EQ(encode_bf16(v), b) << std::hex << b;
    }
  }
}

TEST(Formats, Fp16EdgeCases) {
  EXPECT_EQ(encode_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(encode_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(encode_fp16(65520.0f), 0x7C00) << "halfway past the max rounds to infinity";
  EXPECT_EQ(encode_fp16(0x1p-24f), 0x0001) << "smallest subnormal";
  EXPECT_EQ(encode_fp16(0x1p-25f), 0x0000) << "tie -> even (zero)";
  EXPECT_EQ(encode_fp16(1.5f * 0x1p-25f), 0x0001);
  EXPECT_EQ(encode_fp16(-0.0f), 0x8000);
  EXPECT_EQ(encode_fp16(std::nanf("")) & 0x7E00, 0x7E00);
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float v = fp16_to_float(static_cast<uint16_t>(b));
    if (!std::isnan(v)) {
      ASSERT_EQ(encode_fp16(v), b) << std::hex << b;
    }
  }
}

TEST(Formats, Fp8E4M3FollowsOcp) {
  EXPECT_EQ(decode_fp8_e4m3(0x38), 1.0f);
  EXPECT_EQ(decode_fp8_e4m3(0x7E), 448.0f) << "largest finite";
  EXPECT_TRUE(std::isnan(decode_fp8_e4m3(0x7F))) << "S.1111.111 is NaN; no infinity";
  EXPECT_EQ(decode_fp8_e4m3(0x08), 0x1p-6f) << "smallest normal";
  EXPECT_EQ(decode_fp8_e4m3(0x01), 0x1p-9f) << "smallest subnormal";
  EXPECT_EQ(encode_fp8_e4m3(1000.0f), 0x7E) << "saturates";
  EXPECT_EQ(encode_fp8_e4m3(1000.0f, false), 0x7F) << "without saturation: NaN";
  EXPECT_EQ(encode_fp8_e4m3(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(encode_fp8_e4m3(464.0f), 0x7E) << "464 is a tie between 448 and 480: even";
  EXPECT_EQ(encode_fp8_e4m3(0x1p-10f), 0x00) << "half the smallest subnormal: tie -> zero";
  EXPECT_EQ(encode_fp8_e4m3(-0.0f), 0x80);
  for (int b = 0; b < 256; ++b) {
    const float v = decode_fp8_e4m3(static_cast<uint8_t>(b));
    if (!std::isnan(v)) {
      ASSERT_EQ(encode_fp8_e4m3(v), b) << b;
    }
  }
}

TEST(Formats, Fp8E5M2FollowsOcp) {
  EXPECT_EQ(decode_fp8_e5m2(0x3C), 1.0f);
  EXPECT_EQ(decode_fp8_e5m2(0x7B), 57344.0f);
  EXPECT_TRUE(std::isinf(decode_fp8_e5m2(0x7C)));
  EXPECT_TRUE(std::isnan(decode_fp8_e5m2(0x7E)));
  EXPECT_EQ(decode_fp8_e5m2(0x01), 0x1p-16f);
  EXPECT_EQ(encode_fp8_e5m2(1e6f), 0x7B) << "saturates";
  EXPECT_EQ(encode_fp8_e5m2(1e6f, false), 0x7C) << "without saturation: infinity";
  for (int b = 0; b < 256; ++b) {
    const float v = decode_fp8_e5m2(static_cast<uint8_t>(b));
    if (!std::isnan(v) && !std::isinf(v)) {
      ASSERT_EQ(encode_fp8_e5m2(v), b) << b;
    }
  }
}

TEST(Formats, RoundToFormatIsIdempotentAndOneUlpSensitive) {
  for (FloatFormat f : {FloatFormat::BF16, FloatFormat::F16, FloatFormat::F8E4M3, FloatFormat::F8E5M2}) {
    for (float x : {0.1f, -3.3f, 1234.5f, 7e-5f}) {
      const float r = round_to_format(x, f);
      EXPECT_EQ(round_to_format(r, f), r) << float_format_name(f) << " " << x;
    }
  }
  EXPECT_EQ(round_to_format(0.1f, FloatFormat::F32), 0.1f);
  // One ulp of fp16 at 1.0 is 2^-10: values just either side of the midpoint go different ways.
  EXPECT_EQ(round_to_format(1.0f + 0x1p-11f + 0x1p-23f, FloatFormat::F16), 1.0f + 0x1p-10f);
  EXPECT_EQ(round_to_format(1.0f + 0x1p-11f - 0x1p-23f, FloatFormat::F16), 1.0f);
  EXPECT_EQ(parse_float_format("fp8_e4m3"), FloatFormat::F8E4M3);
  EXPECT_NE(error_of([] { parse_float_format("fp6"); }).find("unknown number format 'fp6'"), std::string::npos);
}

TEST(Formats, IntegerQuantisation) {
  std::vector<int8_t> codes;
  const std::vector<float> w = {1.0f, -2.0f, 0.5f, 0.0f, 0.0f, 0.0f};
  const auto q8 = quantize_int8_per_row(w, 2, 3, &codes);
  EXPECT_EQ(codes, (std::vector<int8_t>{64, -127, 32, 0, 0, 0})) << "63.5 -> 64 (even), 31.75 -> 32";
  EXPECT_FLOAT_EQ(q8[0], 64 * (2.0f / 127.0f));
  const std::vector<float> v = {0.7f, -0.1f, 3.5f, 1.75f};
  const auto q4 = quantize_int4_groups(v, 1, 4, 2, &codes);
  EXPECT_EQ(codes, (std::vector<int8_t>{7, -1, 7, 4})) << "1.75 / 0.5 = 3.5 -> 4 (even)";
  EXPECT_FLOAT_EQ(q4[3], 4 * 0.5f);
  EXPECT_NE(error_of([&] { quantize_int4_groups(v, 1, 4, 3); }).find("must divide the row length 4"),
            std::string::npos);
  const auto t = quantize_ternary(std::vector<float>{0.5f, -1.5f, 0.1f, 0.0f}, &codes);
  EXPECT_EQ(codes, (std::vector<int8_t>{1, -1, 0, 0}));
  EXPECT_FLOAT_EQ(t[0], 0.525f);
  EXPECT_FLOAT_EQ(t[1], -0.525f);
}

TEST(Formats, WeightPolicyScalesPerOutputChannel) {
  const auto config = ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/models/default/config.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto weights = model::random_weights(graph, 4);
  const auto q = model::quantize_weights(graph, weights, "int8");
  // GPT-2's Conv1D stores [in, out]: each output channel is a column, whose largest magnitude the
  // per-channel scale preserves.
  const auto& w = weights.at("h.0.mlp.c_fc.weight");
  const auto& wq = q.at("h.0.mlp.c_fc.weight");
  const int64_t in = w.shape[0], out = w.shape[1];
  for (int64_t c = 0; c < out; c += 97) {
    float peak = 0, peak_q = 0;
    for (int64_t r = 0; r < in; ++r) {
      peak = std::max(peak, std::abs(w.values[static_cast<size_t>(r * out + c)]));
      peak_q = std::max(peak_q, std::abs(wq.values[static_cast<size_t>(r * out + c)]));
    }
    EXPECT_NEAR(peak_q, peak, 1e-6f * peak) << "column " << c;
  }
  EXPECT_EQ(q.at("h.0.ln_1.weight").values, weights.at("h.0.ln_1.weight").values) << "norms stay fp32";
  const auto f8 = model::quantize_weights(graph, weights, "fp8_e4m3");
  for (float v : f8.at("wte.weight").values) ASSERT_EQ(round_to_format(v, FloatFormat::F8E4M3), v);
}

TEST(Formats, ScaleGranularityIsWhatMakesLowPrecisionWork) {
  const auto config = ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/models/default/config.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto random = model::random_weights(graph, 4);
  // Shrink one output channel (column 3 of a Conv1D [in, out] matrix) to 1e-6 of its size.
  model::Tensor w = random.at("h.0.mlp.c_fc.weight");
  const int64_t in = w.shape[0], out = w.shape[1];
  for (int64_t r = 0; r < in; ++r) w.values[static_cast<size_t>(r * out + 3)] *= 1e-6f;
  model::Weights weights;
  for (const auto& node : graph.nodes())
    if (node.op == ir::OpKind::Param && !weights.find(node.name))
      weights.insert(node.name, node.name == "h.0.mlp.c_fc.weight" ? w : random.at(node.name));
  auto column_error = [&](const model::Weights& q) {
    double err = 0, norm = 0;
    for (int64_t r = 0; r < in; ++r) {
      const auto i = static_cast<size_t>(r * out + 3);
      err += std::abs(q.at("h.0.mlp.c_fc.weight").values[i] - w.values[i]), norm += std::abs(w.values[i]);
    }
    return err / norm;
  };
  // fp8 e4m3 without scales flushes the tiny channel to zero; a per-channel scale keeps it.
  EXPECT_EQ(column_error(model::quantize_weights(graph, weights, "fp8_e4m3")), 1.0);
  EXPECT_LT(column_error(model::quantize_weights(graph, weights, "fp8_e4m3", 32, "channel")), 0.05);
  // One int8 scale per tensor rounds the tiny channel to zero too; per channel it survives.
  EXPECT_EQ(column_error(model::quantize_weights(graph, weights, "int8", 32, "tensor")), 1.0);
  EXPECT_LT(column_error(model::quantize_weights(graph, weights, "int8", 32, "channel")), 0.01);
  const auto grouped = model::quantize_weights(graph, weights, "fp8_e5m2", 64, "group");
  for (float v : grouped.at("h.1.attn.c_attn.weight").values) ASSERT_TRUE(std::isfinite(v));
  EXPECT_NE(error_of([&] { model::quantize_weights(graph, weights, "int4", 32, "none"); }).find("need scales"),
            std::string::npos);
  EXPECT_NE(error_of([&] { model::quantize_weights(graph, weights, "int8", 32, "row"); }).find("weight scales format"),
            std::string::npos);
}

TEST(Pruning, PatternsKeepTheLargestAndTheRightCount) {
  const auto config = ir::load_model_config(std::string(TESSERA_SOURCE_DIR) + "/models/default/config.yaml");
  const auto graph = ir::build_model_graph(config);
  const auto weights = model::random_weights(graph, 6);
  const std::string name = "h.1.mlp.c_proj.weight";  // Conv1D [in 1024, out 256]
  const auto& w = weights.at(name);
  auto nonzeros = [](const std::vector<float>& v) {
    return std::count_if(v.begin(), v.end(), [](float x) { return x != 0; });
  };
  const auto half = model::prune_weights(graph, weights, "unstructured:0.5").at(name).values;
  EXPECT_EQ(nonzeros(half), static_cast<long>(w.values.size() / 2));
  float smallest_kept = INFINITY, largest_dropped = 0;
  for (size_t i = 0; i < half.size(); ++i) {
    if (half[i] != 0) {
      smallest_kept = std::min(smallest_kept, std::abs(w.values[i]));
    } else {
      largest_dropped = std::max(largest_dropped, std::abs(w.values[i]));
    }
  }
  EXPECT_GE(smallest_kept, largest_dropped) << "a wrongly skipped non-zero";
  // 2:4 along each output channel's inputs: the channel is a column of the [in, out] matrix.
  const auto nm = model::prune_weights(graph, weights, "2:4").at(name).values;
  const int64_t out = w.shape[1];
  for (int64_t ch = 0; ch < out; ch += 31)
    for (int64_t g = 0; g < w.shape[0]; g += 4) {
      int kept = 0;
      for (int64_t k = 0; k < 4; ++k) kept += nm[static_cast<size_t>((g + k) * out + ch)] != 0;
      ASSERT_EQ(kept, 2) << ch << " " << g;
    }
  const auto blocks = model::prune_weights(graph, weights, "block16:0.25").at(name).values;
  EXPECT_EQ(nonzeros(blocks), static_cast<long>(w.values.size() / 4));
  for (int64_t r = 0; r < w.shape[0]; r += 16)
    for (int64_t c = 0; c < out; c += 16) {
      const bool first = blocks[static_cast<size_t>(r * out + c)] != 0;
      for (int64_t k = 0; k < 16; ++k)
        ASSERT_EQ(blocks[static_cast<size_t>((r + k) * out + c + k)] != 0, first) << "blocks are all or nothing";
    }
  EXPECT_EQ(model::prune_weights(graph, weights, "2:4").at("wte.weight").values, weights.at("wte.weight").values)
      << "embeddings are not pruned";
  for (const auto& [pattern, message] :
       std::vector<std::pair<std::string, std::string>>{{"unstructured:0", "density must be in (0, 1]"},
                                                        {"block48:0.5", "do not tile"},
                                                        {"3:2", "need 1 <= N <= M"},
                                                        {"sparse", "expected unstructured:DENSITY"}}) {
    const std::string& spec = pattern;  // clang 14 cannot capture structured bindings
    EXPECT_NE(error_of([&] { model::prune_weights(graph, weights, spec); }).find(message), std::string::npos) << spec;
  }
}

TEST(Sparsity, StorageBitsAndCompression) {
  EXPECT_EQ(storage_bits("fp32"), 32);
  EXPECT_EQ(storage_bits("fp8_e5m2"), 8);
  EXPECT_EQ(storage_bits("int8", "auto", 32, 256), 8 + 32.0 / 256);
  EXPECT_EQ(storage_bits("int4", "auto", 32), 4.5);
  EXPECT_EQ(storage_bits("int4", "channel", 32, 512), 4 + 32.0 / 512);
  EXPECT_EQ(storage_bits("fp8_e4m3", "group", 64), 8.25);
  EXPECT_EQ(storage_bits("ternary"), 2);
  // (value, 16-bit index) pairs: fp16 at 25% density takes 8 bits per element; at 50% it would
  // take 16, no better than dense.
  EXPECT_EQ(compressed_bits(parse_sparsity("unstructured:0.25"), 16), 8);
  EXPECT_EQ(compressed_bits(parse_sparsity("unstructured:0.5"), 16), 16);
  EXPECT_EQ(compressed_bits(parse_sparsity("2:4"), 16), 9) << "2 values of 4, 2 bits of position each";
  EXPECT_EQ(compressed_bits(parse_sparsity("block16:0.25"), 8), 0.25 * (8 + 32.0 / 256));
  EXPECT_EQ(compressed_bits(parse_sparsity(""), 8), 8);
  for (const auto& [spec, message] :
       std::vector<std::pair<std::string, std::string>>{{"unstructured:0", "density must be in (0, 1]"},
                                                        {"unstructured:1.01", "density must be in (0, 1]"},
                                                        {"3:2", "need 1 <= N <= M"},
                                                        {"block0:0.5", "block size must be >= 1"},
                                                        {"blockx:0.5", "expected a block size"},
                                                        {"2:4x", "expected unstructured:DENSITY"},
                                                        {"half", "expected unstructured:DENSITY"}}) {
    const std::string& pattern = spec;  // clang 14 cannot capture structured bindings
    const std::string error = error_of([&] { parse_sparsity(pattern); });
    EXPECT_NE(error.find(message), std::string::npos) << spec << ": " << error;
  }
}

// The trainer's per-element roundings are round_to_format without saturation, bit for bit, over
// random bit patterns (every exponent, subnormals, infinities, NaNs) and the halfway cases.
TEST(Formats, FastBf16AndFp16RoundingEqualRoundToFormat) {
  std::mt19937 rng(7);
  auto same = [](float a, float b) {
    return std::isnan(a) ? std::isnan(b) : std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
  };
  for (int i = 0; i < 2'000'000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    ASSERT_TRUE(same(round_to_bf16(x), round_to_format(x, FloatFormat::BF16, false))) << x;
    ASSERT_TRUE(same(round_to_fp16(x), round_to_format(x, FloatFormat::F16, false))) << x;
  }
  for (float x : {1.0f + 0x1p-8f, 1.0f + 0x1p-11f, 65504.0f, 65520.0f, 65519.99f, 0x1p-25f, 0x1p-24f, 3 * 0x1p-26f,
                  0x1.fffffep127f, -0.0f}) {
    EXPECT_TRUE(same(round_to_bf16(x), round_to_format(x, FloatFormat::BF16, false))) << x;
    EXPECT_TRUE(same(round_to_fp16(x), round_to_format(x, FloatFormat::F16, false))) << x;
  }
}
