#include <gtest/gtest.h>

#include <fstream>
#include <tuple>
#include "tessera/arch/arch_spec.hpp"
#include "tessera/arch/units.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/target/arch.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;

namespace {

std::string preset_path(const std::string& name) {
  return std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + name + ".yaml";
}

std::string preset_text(const std::string& name) { return read_text_file(preset_path(name)); }

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST(Units, ParseWithUnits) {
  EXPECT_EQ(arch::parse_bytes("48KiB", "k"), 48 * 1024);
  EXPECT_EQ(arch::parse_bytes("1.5 MB", "k"), 1.5e6);
  EXPECT_EQ(arch::parse_frequency_hz("1.1GHz", "k"), 1.1e9);
  EXPECT_EQ(arch::parse_bytes_per_second("1.2Tb/s", "k"), 150e9);
  EXPECT_EQ(arch::parse_bytes_per_cycle("32bit/cycle", "k"), 4);
  EXPECT_EQ(arch::parse_cycles("2cycles", "k"), 2);
  EXPECT_EQ(arch::parse_energy_pj("300fJ", "k"), 0.3);
  EXPECT_EQ(arch::parse_energy_pj_per_byte("0.1pJ/bit", "k"), 0.8);
}

TEST(Units, BadValuesNameTheKey) {
  EXPECT_NE(error_of([] { arch::parse_bytes("48", "f.yaml: key 'core.sram'"); }).find("key 'core.sram'"),
            std::string::npos);
  EXPECT_NE(error_of([] { arch::parse_bytes("48", "k"); }).find("has no unit"), std::string::npos);
  EXPECT_NE(error_of([] { arch::parse_bytes("48Kb", "k"); }).find("unknown unit 'Kb'"), std::string::npos);
  EXPECT_NE(error_of([] { arch::parse_bytes("-4KiB", "k"); }).find(">= 0"), std::string::npos);
  EXPECT_NE(error_of([] { arch::parse_frequency_hz("fast", "k"); }).find("expected a number with a unit"),
            std::string::npos);
}

TEST(ArchSpec, PresetsLoadWithTheirPublishedFigures) {
  const auto wse2 = target::load_arch(preset_path("wse2"));
  EXPECT_EQ(wse2.grid_width, 757);
  EXPECT_EQ(wse2.grid_height, 996);
  EXPECT_EQ(wse2.usable.cores(), 750 * 994);
  EXPECT_EQ(wse2.core.sram_bytes, 48 * 1024);
  EXPECT_EQ(wse2.usable_sram_per_core(), 40 * 1024);
  EXPECT_EQ(wse2.link.bytes_per_cycle, 4);
  EXPECT_EQ(wse2.core.routes, 24);
  EXPECT_EQ(wse2.core.vector_op_cycles, 5);
  EXPECT_DOUBLE_EQ(wse2.energy.fabric_pj_per_byte_hop, 0.8);
  // 4 fp16 MACs x 1.1 GHz x 745,500 cores = 3.28e15 MAC/s = 6.6 PFLOP/s at the maximum clock (Cerebras:
  // 7.5 PF on 850k cores); the preset runs at the measured 0.85 GHz.
  EXPECT_NEAR(wse2.peak_macs_per_second("fp16") * 1.1 / 0.85, 3.28e15, 0.01e15);
  const auto wse3 = target::load_arch(preset_path("wse3"));
  EXPECT_EQ(wse3.core.macs_per_cycle.at("fp16"), 8);
  EXPECT_EQ(wse3.usable.cores(), 755 * 1170);
  const auto small = target::load_arch(preset_path("mesh-32x32"));
  EXPECT_EQ(small.usable.cores(), 1024);
}

TEST(ArchSpec, StrictParsing) {
  const std::string wse2 = preset_text("wse2");
  auto error = [](const std::string& text) { return error_of([&] { target::parse_arch(text, "a.yaml"); }); };
  EXPECT_NE(error(wse2 + "simd: 4\n").find("key 'simd': unknown key"), std::string::npos);
  EXPECT_NE(error(replaced(wse2, "sram: 48KiB", "sram: 48")).find("key 'core.sram'"), std::string::npos);
  EXPECT_NE(error(replaced(wse2, "sram: 48KiB", "sram: 48 parsecs")).find("unknown unit 'parsecs'"), std::string::npos);
  EXPECT_NE(error(replaced(wse2, "width: 750", "width: 754")).find("does not fit in the 757x996 grid"),
            std::string::npos);
  EXPECT_NE(error(replaced(wse2, "fabric: mesh2d", "fabric: torus")).find("unknown fabric 'torus'"), std::string::npos);
  EXPECT_NE(error(replaced(wse2, "fp16: 1.5pJ", "bf16: 1.5pJ")).find("energy.mac has no fp16 entry"),
            std::string::npos);
  EXPECT_NE(error(replaced(wse2, "fp16: 4 ", "fp8: 4 ")).find("key 'core.macs_per_cycle.fp8': unknown key"),
            std::string::npos);
  EXPECT_NE(error(replaced(wse2, "reserved: 8KiB", "reserved: 48KiB")).find("reserves all"), std::string::npos);
  EXPECT_NE(error(replaced(wse2, "routes: 24", "routes: -1")).find("must be a positive integer"), std::string::npos);
  EXPECT_NE(error(replaced(wse2, "vector_op_overhead: 5cycles", "vector_op_overhead: 5"))
                .find("key 'core.vector_op_overhead': '5' has no unit"),
            std::string::npos);
  EXPECT_NE(error(replaced(wse2, "vector_op_overhead: 5cycles", "vector_op_overhead: -1cycles")).find(">= 0"),
            std::string::npos);
  EXPECT_NE(error(replaced(preset_text("a100"), "  accumulate:", "  vector_op_overhead: 5cycles\n  accumulate:"))
                .find("key 'core.vector_op_overhead': unknown key"),
            std::string::npos);
  // Sizes beyond any machine are typos that would cost minutes (or overflow) to simulate.
  EXPECT_NE(error(replaced(wse2, "width: 757", "width: 65536")).find("65536 is more than tessera simulates"),
            std::string::npos);
  EXPECT_NE(error(replaced(replaced(wse2, "width: 757", "width: 16000"), "height: 996", "height: 16000"))
                .find("has more cores than tessera simulates"),
            std::string::npos);
  EXPECT_NE(error(replaced(preset_text("gc200"), "tiles: 1472", "tiles: 1000000000000")).find("key 'tiles'"),
            std::string::npos);
}

TEST(ArchSpec, PrecisionAndSparsityCapabilities) {
  const arch::ArchSpec wse2 = target::load_arch(preset_path("wse2"));
  EXPECT_EQ(wse2.core.accumulate, "fp32");
  EXPECT_TRUE(arch::check_precision(wse2, {"int4", 32, "fp16", "fp8_e4m3", "", "auto"}).is_ok());
  const Status bf16 = arch::check_precision(wse2, PrecisionPolicy::uniform("bf16"));
  EXPECT_FALSE(bf16.is_ok());
  EXPECT_NE(bf16.message().find("bf16 activations (its MACs take fp16, fp32)"), std::string::npos) << bf16.message();
  EXPECT_TRUE(arch::skips_weight_zeros(wse2, parse_sparsity("unstructured:0.5")));
  EXPECT_FALSE(arch::skips_weight_zeros(wse2, parse_sparsity("2:4"))) << "the wafer declares unstructured only";
  EXPECT_FALSE(arch::skips_weight_zeros(wse2, parse_sparsity("")));
  EXPECT_TRUE(wse2.sparsity.activations);

  // Without the optional keys a core stores only what its MACs take, and skips nothing.
  std::string text = preset_text("mesh-32x32");
  text = replaced(text, "  weight_formats: [fp32, fp16, bf16, fp8_e4m3, fp8_e5m2, int8, int4, ternary]", "");
  text =
      replaced(text, "sparsity: {weights: [unstructured], activations: true}", "sparsity: {weights: [2:4, block16]}");
  const arch::ArchSpec plain = target::parse_arch(text, "plain.yaml");
  EXPECT_EQ(plain.core.weight_formats, (std::vector<std::string>{"fp16", "fp32"}));
  EXPECT_FALSE(arch::check_precision(plain, {"int8", 32, "fp32", "fp32", "", "auto"}).is_ok());
  EXPECT_TRUE(arch::skips_weight_zeros(plain, parse_sparsity("2:4")));
  EXPECT_TRUE(arch::skips_weight_zeros(plain, parse_sparsity("block16:0.25")));
  EXPECT_FALSE(arch::skips_weight_zeros(plain, parse_sparsity("block8:0.25")));
  EXPECT_FALSE(plain.sparsity.activations);

  const std::string base = preset_text("mesh-32x32");
  for (const auto& [from, to, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"kv_formats: [fp32,", "kv_formats: [int4, fp32,", "unknown format 'int4'"},
           {"accumulate: fp32", "accumulate: fp16", "emulates fp32 accumulation only"},
           {"weights: [unstructured]", "weights: [diagonal]", "unknown pattern 'diagonal'"},
           {"weights: [unstructured]", "weights: unstructured", "expected a list of strings"},
           {"activations: true}", "activations: true, patterns: []}", "unknown key"}}) {
    const std::string bad = replaced(base, from, to);  // clang 14 cannot capture structured bindings
    const std::string error = error_of([&] { target::parse_arch(bad, "bad.yaml"); });
    EXPECT_NE(error.find(message), std::string::npos) << to << ": " << error;
  }
}

TEST(PrecisionPolicy, FilesAndValidation) {
  const std::string path = ::testing::TempDir() + "/policy.yaml";
  std::ofstream(path) << "weights: int4\ngroup: 64\nkv: fp8_e5m2\nprune: \"2:4\"\n";
  const PrecisionPolicy p = arch::load_precision_policy(path);
  EXPECT_EQ(p.describe(), "weights int4/g64, activations fp32, kv fp8_e5m2, pruned 2:4");
  std::ofstream(path) << "weights: int4\nkv_cache: fp8\n";
  EXPECT_NE(error_of([&] { arch::load_precision_policy(path); }).find(":2: key 'kv_cache': unknown key"),
            std::string::npos);
  std::ofstream(path) << "activations: int8\n";
  EXPECT_NE(error_of([&] { arch::load_precision_policy(path); }).find("need a per-token scale"), std::string::npos);
  std::ofstream(path) << "prune: unstructured:1.5\n";
  EXPECT_NE(error_of([&] { arch::load_precision_policy(path); }).find("density must be in (0, 1]"), std::string::npos);
}
