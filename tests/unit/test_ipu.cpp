// The IPU (exchange fabric) model against first principles on every exchange preset.
#include <gtest/gtest.h>

#include "tessera/base/fs.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/exchange/bsp_timing.hpp"
#include "tessera/target/exchange/exchange_compiler.hpp"
#include "test_util.hpp"

using namespace tessera;

namespace {

std::string source(const std::string& path) { return read_text_file(std::string(TESSERA_SOURCE_DIR) + "/" + path); }

compiler::ExchangeCompileResult compile(const std::string& model, const std::string& arch_yaml,
                                        const compiler::ExchangeCompileOptions& options) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/configs/models/" + model + ".yaml";
  return compiler::compile_for_exchange(ir::load_model_config(path), read_text_file(path), path,
                                        target::parse_arch(arch_yaml, "ipu.yaml"), arch_yaml, "ipu.yaml", options);
}

// `yaml` with the value after `key` (a "NB/cycle" rate) doubled.
std::string doubled(std::string yaml, const std::string& key, double value) {
  const size_t at = yaml.find(key);
  const size_t end = yaml.find(' ', at + key.size());
  yaml.replace(at, end - at, key + std::to_string(static_cast<int64_t>(2 * value)) + "B/cycle");
  return yaml;
}

}  // namespace

TEST(IpuModel, NothingBeatsPeakComputeSramOrExchange) {
  for (const std::string name : {"gc200", "bow"}) {
    const std::string yaml = source("configs/arch/" + name + ".yaml");
    const arch::ArchSpec a = target::parse_arch(yaml, name);
    for (const int64_t batch : {1, 16}) {
      const compiler::ExchangeCompileOptions o{128, 16, batch, PrecisionPolicy::uniform("fp16")};
      const auto result = compile("gpt2-small", yaml, o);
      ASSERT_TRUE(result.status) << result.status.message();
      const program::BspPlan& p = result.plan;
      const sim::BspReport r = sim::simulate_bsp(p);
      const double peak = a.peak_macs_per_second("fp16");
      EXPECT_GE(r.prefill.seconds, r.prefill.macs / peak) << name;
      EXPECT_GE(r.decode.seconds, r.decode.macs / peak) << name;
      EXPECT_LE(r.decode_utilization, 1.0);
      // Every decode pass reads every weight from tile SRAM once, at most at the chip's SRAM rate.
      const double sram_rate = a.core.sram_bytes_per_cycle * a.clock_hz * static_cast<double>(a.usable.cores());
      EXPECT_GE(r.decode.seconds / 15, p.chip_weight_bytes / sram_rate) << name;
      // And no pass is shorter than its syncs.
      EXPECT_GE(r.decode.seconds / 15, r.decode.sync_s / 15);
      // No weight is lost by the split: the tiles together hold at least the chip's weights.
      EXPECT_GE(p.weight_bytes * static_cast<double>(a.usable.cores()), p.chip_weight_bytes);
      EXPECT_LE(p.weight_bytes + p.kv_cache_bytes + p.activation_bytes, a.usable_sram_per_core());
      // Doubling the exchange or the SRAM bandwidth never slows a phase; exchange-bound decode speeds up.
      for (const auto& [key, value] : {std::pair<std::string, double>{"  bandwidth: ", a.exchange.bytes_per_cycle},
                                       {"sram_bandwidth: ", a.core.sram_bytes_per_cycle}}) {
        const auto fast = sim::simulate_bsp(compile("gpt2-small", doubled(yaml, key, value), o).plan);
        EXPECT_LE(fast.prefill.seconds, r.prefill.seconds) << name << " " << key;
        EXPECT_LE(fast.decode.seconds, r.decode.seconds) << name << " " << key;
        if (key == "  bandwidth: " && r.decode.exchange_s > 0.2 * r.decode.seconds) {
          EXPECT_LT(fast.decode.seconds, r.decode.seconds - 0.4 * r.decode.exchange_s) << name;
        }
      }
    }
  }
}

TEST(IpuModel, BatchingRaisesThroughputAndBlockSparsityIsCreditedWhereDeclared) {
  const std::string yaml = source("configs/arch/gc200.yaml");
  const auto one = sim::simulate_bsp(compile("gpt2-small", yaml, {64, 16, 1, PrecisionPolicy::uniform("fp16")}).plan);
  const auto many = sim::simulate_bsp(compile("gpt2-small", yaml, {64, 16, 16, PrecisionPolicy::uniform("fp16")}).plan);
  EXPECT_GT(many.decode_tokens_per_s, 4 * one.decode_tokens_per_s);
  EXPECT_LE(many.decode_tokens_per_s_per_user, one.decode_tokens_per_s_per_user);

  PrecisionPolicy blocks = PrecisionPolicy::uniform("fp16"), pairs = blocks;
  blocks.prune = "block16:0.25";
  pairs.prune = "2:4";
  const auto sparse = compile("gpt2-small", yaml, {64, 16, 1, blocks});
  const auto dense = compile("gpt2-small", yaml, {64, 16, 1, PrecisionPolicy::uniform("fp16")});
  const auto nm = compile("gpt2-small", yaml, {64, 16, 1, pairs});
  EXPECT_TRUE(sparse.plan.skip_weight_zeros);
  EXPECT_FALSE(nm.plan.skip_weight_zeros) << "gc200 declares block16 only";
  EXPECT_LT(sparse.plan.chip_weight_bytes, 0.3 * dense.plan.chip_weight_bytes);
  EXPECT_DOUBLE_EQ(nm.plan.chip_weight_bytes, dense.plan.chip_weight_bytes);
  const auto s = sim::simulate_bsp(sparse.plan), d = sim::simulate_bsp(dense.plan);
  EXPECT_LT(s.decode.macs, 0.5 * d.decode.macs);
}

TEST(IpuModel, ModelsThatDoNotFitSayWhatWould) {
  const auto result =
      compile("llama3-8b", source("configs/arch/gc200.yaml"), {128, 128, 1, PrecisionPolicy::uniform("fp16")});
  ASSERT_FALSE(result.status);
  EXPECT_EQ(result.status.failure().resource, "SRAM per tile");
  EXPECT_GT(result.status.failure().needed, result.status.failure().available);
  const std::string m = result.status.message();
  EXPECT_NE(m.find("does not fit on one gc200"), std::string::npos) << m;
  EXPECT_NE(m.find("KiB usable"), std::string::npos) << m;
  EXPECT_NE(m.find("--arch Nxgc200"), std::string::npos) << m;
}

TEST(IpuModel, PlansRoundTripThroughJsonAndRejectCorruptFiles) {
  const auto result =
      compile("gpt2-small", source("configs/arch/gc200.yaml"), {32, 8, 2, PrecisionPolicy::uniform("fp16")});
  ASSERT_TRUE(result.status);
  const std::string text = program::to_json(result.plan);
  const program::BspPlan back = program::bsp_plan_from_json(text, "plan.json");
  EXPECT_EQ(program::to_json(back), text);
  EXPECT_DOUBLE_EQ(sim::simulate_bsp(back).decode.seconds, sim::simulate_bsp(result.plan).decode.seconds);
  EXPECT_THROW(program::bsp_plan_from_json("{\"format\": \"tessera-gpu-plan\"}", "p.json"), Error);
  std::string negative = text;
  negative.replace(negative.find("\"sram_bytes\": "), 14, "\"sram_bytes\": -");
  EXPECT_THROW(program::bsp_plan_from_json(negative, "p.json"), Error);
  std::string no_tiles = text;
  no_tiles.replace(no_tiles.find("\"tiles\": "), 9, "\"tiles\": -");
  EXPECT_THROW(program::bsp_plan_from_json(no_tiles, "p.json"), Error);
  EXPECT_THROW(program::bsp_plan_from_json(text.substr(0, text.size() / 2), "p.json"), Error);
}

// A mixture of experts on an IPU (tests/data/mixtral-tiny.yaml: 4 experts of d_ff 96, 2 per
// token): the chip holds every expert's matrices; a step's expert supersteps carry the busiest
// expert's tokens on that expert's tiles, and their MAC totals every routed token's; balanced
// routing is never slower than uniform.
TEST(IpuModel, MixtureOfExpertsSpreadsTheExpertsOverTheTiles) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/tests/data/mixtral-tiny.yaml";
  const std::string yaml = source("configs/arch/gc200.yaml");
  const auto plan_for = [&](int64_t batch, compiler::Routing routing) {
    compiler::ExchangeCompileOptions o{32, 8, batch, PrecisionPolicy::uniform("fp16")};
    o.routing = routing;
    const auto result = compiler::compile_for_exchange(ir::load_model_config(path), read_text_file(path), path,
                                                       target::parse_arch(yaml, "gc200"), yaml, "gc200", o);
    EXPECT_TRUE(result.status) << result.status.message();
    return result.plan;
  };
  const program::BspPlan one = plan_for(1, compiler::Routing::Uniform);
  // Per layer: q|k|v 128 x (128 + 2 x 64), o 128 x 128, router 128 x 4, experts 4 x 3 x 128 x 96;
  // the head 128 x 512.
  const double matrices = 2 * (128.0 * 256 + 128 * 128 + 128 * 4 + 4 * 3 * 128 * 96) + 128 * 512;
  EXPECT_DOUBLE_EQ(one.chip_weight_bytes, matrices * 2);
  int64_t expert_steps = 0;
  for (const program::Superstep& st : one.decode) {
    if (st.op != "experts") continue;
    ++expert_steps;
    const bool gate_up = st.name.ends_with("w1_w3");
    EXPECT_DOUBLE_EQ(st.total.macs, 2.0 * 128 * (gate_up ? 192 : 96)) << st.name << ": one token, 2 experts";
    EXPECT_LE(st.tiles, 1472 / 2) << "the two chosen experts' tiles";
  }
  EXPECT_EQ(expert_steps, 4) << "gate|up and down in each of 2 layers";
  for (const int64_t batch : {1, 16}) {
    const sim::BspReport u = sim::simulate_bsp(plan_for(batch, compiler::Routing::Uniform));
    const sim::BspReport b = sim::simulate_bsp(plan_for(batch, compiler::Routing::Balanced));
    EXPECT_LE(b.decode.seconds, u.decode.seconds) << batch;
    EXPECT_LE(b.prefill.seconds, u.prefill.seconds) << batch;
  }
  // A chip of a group of 2 splitting the experts (expert parallelism over chips): half of each
  // layer's experts, the layers' other weights whole, twice the tiles per expert, half the MACs.
  const auto shard = [&](int64_t shards) {
    compiler::ExchangeCompileOptions o{32, 8, 1, PrecisionPolicy::uniform("fp16")};
    o.slice = {2, true, false, 1, shards};
    return compiler::compile_for_exchange(ir::load_model_config(path), read_text_file(path), path,
                                          target::parse_arch(yaml, "gc200"), yaml, "gc200", o);
  };
  const auto whole = shard(1), half = shard(2);
  ASSERT_TRUE(whole.status && half.status) << half.status.message();
  EXPECT_DOUBLE_EQ(whole.plan.chip_weight_bytes - half.plan.chip_weight_bytes, 2 * (2 * 3 * 128.0 * 96) * 2);
  double whole_macs = 0, half_macs = 0;
  for (const auto& st : whole.plan.decode) whole_macs += st.op == "experts" ? st.total.macs : 0;
  for (const auto& st : half.plan.decode) half_macs += st.op == "experts" ? st.total.macs : 0;
  EXPECT_DOUBLE_EQ(half_macs, whole_macs / 2);
  EXPECT_NE(tessera::testing::error_of([&] { (void)shard(8); }).find("mixtral-tiny has 4 experts"), std::string::npos);
}
