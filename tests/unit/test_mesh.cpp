#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tessera/base/fs.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/mesh2d/layout.hpp"
#include "tessera/target/mesh2d/mesh_compiler.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "test_util.hpp"

using namespace tessera;
using tessera::testing::error_of;

namespace {

struct Inputs {
  std::string model_path, arch_path, model_yaml, arch_yaml;
};

Inputs inputs(const std::string& model, const std::string& arch) {
  const std::string root = TESSERA_SOURCE_DIR;
  Inputs in{root + "/configs/models/" + model + ".yaml", root + "/configs/arch/" + arch + ".yaml", "", ""};
  if (model == "default") in.model_path = root + "/models/default/config.yaml";
  in.model_yaml = read_text_file(in.model_path);
  in.arch_yaml = read_text_file(in.arch_path);
  return in;
}

compiler::MeshCompileResult compile(const Inputs& in, compiler::MeshCompileOptions options) {
  return compiler::compile_for_mesh(ir::load_model_config(in.model_path), in.model_yaml, in.model_path,
                                    target::parse_arch(in.arch_yaml, in.arch_path), in.arch_yaml, in.arch_path,
                                    options);
}

program::Program compiled(const std::string& model, const std::string& arch, compiler::MeshCompileOptions options) {
  auto result = compile(inputs(model, arch), options);
  EXPECT_TRUE(result.status) << result.status.message();
  return result.program;
}

}  // namespace

TEST(MeshCompiler, PlacementIsDisjointInsideTheUsableRegionAndFits) {
  for (const auto& [model, arch] : std::vector<std::pair<std::string, std::string>>{
           {"gpt2-small", "wse2"}, {"default", "mesh-32x32"}, {"llama3-8b", "wse3"}}) {
    const auto plan = compiled(model, arch, {32, 32, PrecisionPolicy::uniform(model == "llama3-8b" ? "fp16" : "fp32")});
    const auto a = target::parse_arch(plan.arch_yaml, plan.arch_origin);
    std::set<std::pair<int64_t, int64_t>> used;
    for (const auto& s : plan.stages) {
      EXPECT_LE(static_cast<double>(s.bytes_per_core()), a.usable_sram_per_core()) << model << " " << s.name;
      EXPECT_GE(s.region.x, a.usable.x);
      EXPECT_LE(s.region.x + s.region.width, a.usable.x + a.usable.width);
      EXPECT_LE(s.region.y + s.region.height, a.usable.y + a.usable.height);
      // Corners are enough to detect overlap of these axis-aligned rectangles laid out in bands.
      EXPECT_TRUE(used.insert({s.region.x, s.region.y}).second) << model << ": two stages share a corner";
    }
    const auto config = ir::load_model_config(inputs(model, arch).model_path);
    EXPECT_EQ(plan.stages.size(), static_cast<size_t>(config.n_layers + 1));
  }
}

TEST(MeshCompiler, ModelsThatDoNotFitSayWhatWould) {
  const auto result = compile(inputs("llama3-70b", "wse3"), {128, 128, PrecisionPolicy::uniform("fp16")});
  ASSERT_FALSE(result.status);
  const compiler::FitFailure& failure = result.status.failure();
  EXPECT_EQ(failure.resource, "SRAM per core");
  EXPECT_EQ(failure.unit, "bytes");
  EXPECT_GT(failure.needed, failure.available);
  EXPECT_NEAR(failure.available, 48 * 1024 - 8 * 1024, 1) << "wse3's usable SRAM per core";
  const std::string msg = result.status.message();
  EXPECT_NE(msg.find("llama3-70b does not fit on wse3"), std::string::npos) << msg;
  // (34.08 GB left after the LM head) / (1711.3 MB of weights + 1 MB of KV cache per layer); k and v are
  // stored once per KV head.
  EXPECT_NE(msg.find("at most 19 layers"), std::string::npos) << msg;
  const auto tiny = compile(inputs("gpt2-small", "mesh-32x32"), {16, 16, {}});
  ASSERT_FALSE(tiny.status);
  EXPECT_NE(tiny.status.message().find("GB over"), std::string::npos) << tiny.status.message();
}

TEST(MeshCompiler, BadOptionsAreErrors) {
  EXPECT_NE(error_of([] {
              compile(inputs("gpt2-small", "wse2"), {16, 16, PrecisionPolicy::uniform("fp8")});
            }).find("format 'fp8' is not one tessera knows"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              compile(inputs("gpt2-small", "wse2"), {1000, 100, {}});
            }).find("context of 1024"),
            std::string::npos);
}

TEST(MeshProgram, JsonRoundTripsAndRejectsCorruptPlans) {
  const auto plan = compiled("default", "mesh-32x32", {16, 16, {}});
  const std::string text = program::to_json(plan);
  EXPECT_EQ(program::to_json(program::from_json(text, "p.json")), text);
  EXPECT_NE(error_of([] { program::from_json("{", "p.json"); }).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of([] { program::from_json("{\"a\": 1}", "p.json"); }).find("not a tessera plan"), std::string::npos);
  std::string bad = text;
  bad.replace(bad.find("\"to_stage\": 1"), 13, "\"to_stage\": 99");
  EXPECT_NE(error_of([&] { program::from_json(bad, "p.json"); }).find("stage that does not exist"), std::string::npos);
  std::string outside = text;
  outside.replace(outside.find("\"x\": "), 5, "\"x\": 4000");
  EXPECT_NE(error_of([&] { program::from_json(outside, "p.json"); }).find("is not inside mesh-32x32's usable"),
            std::string::npos);
  std::string kernel = text;
  kernel.replace(kernel.find("\"kernel\": \"projection\""), 22, "\"kernel\": \"convolve!\"");
  EXPECT_NE(error_of([&] { program::from_json(kernel, "p.json"); }).find("names kernel 'convolve!'"),
            std::string::npos);
  // An allreduce's segments must lie on its lines (32 columns here) and only an allreduce has them.
  const auto with_segments = [&](const std::string& step_kernel, const nlohmann::json& segments) {
    nlohmann::json doc = nlohmann::json::parse(text);
    for (auto& step : doc["decode"])
      if (step["kernel"] == step_kernel) {
        step["segments"] = segments;
        break;
      }
    return doc.dump(1);
  };
  const auto refused = [&](const std::string& plan_text) {
    return error_of([&] { program::from_json(plan_text, "p.json"); });
  };
  EXPECT_NE(refused(with_segments("add", {{0, 1}})).find("has segments but is not an allreduce"), std::string::npos);
  EXPECT_NE(refused(with_segments("attention.scores", {{0, 32}})).find("runs past its stage's lines of 32 cores"),
            std::string::npos);
  EXPECT_NE(refused(with_segments("attention.scores", {{3, 1}})).find("is not a span of positions"), std::string::npos);
  EXPECT_NE(refused(with_segments("attention.scores", {{3}})).find("must be [first, last]"), std::string::npos);
}

TEST(MeshTiming, DeterministicAndWithinFirstPrinciplesBounds) {
  const auto plan = compiled("gpt2-small", "wse2", {32, 32, {}});
  const auto a = sim::simulate_mesh_timing(plan);
  const auto b = sim::simulate_mesh_timing(plan);
  EXPECT_EQ(a.decode.cycles, b.decode.cycles);
  EXPECT_EQ(a.prefill.cycles, b.prefill.cycles);
  ASSERT_EQ(a.decode.passes, 31);
  // Every weight is used once per token and no core holds less than its tile: a decode pass
  // cannot beat the busiest core of each stage doing its tile at one fp32 MAC per cycle.
  double bound = 0;
  for (const auto& s : plan.stages) bound += static_cast<double>(s.weight_bytes) / 4;
  EXPECT_GT(a.decode.cycles / static_cast<double>(a.decode.passes), bound * 0.9);
  // Nor can it beat the whole wafer's peak arithmetic on the model's MACs.
  const double macs = 124e6;
  EXPECT_GT(a.decode.cycles / 31, macs / static_cast<double>(a.cores_used));
  EXPECT_GT(a.time_to_first_token_s, 0);
  EXPECT_GT(a.decode_energy_per_token.total_pj(), macs * 4.6) << "at least the MAC energy";
  EXPECT_NEAR(a.decode.compute_core_fraction + a.decode.comm_core_fraction + a.decode.idle_core_fraction, 1.0, 1e-9);
}

// Prefill chunks flow through the layer stages as a pipeline: with one chunk the phase is the
// stages' work one after another; with several it is shorter than their summed work but no shorter
// than that work spread over every stage at once, nor than one chunk's trip through the stages.
TEST(MeshTiming, PrefillChunksPipelineThroughTheLayerStages) {
  const auto work = [](const sim::PhaseReport& p) { return p.compute_cycles + p.comm_cycles + p.host_cycles; };
  const auto plan = compiled("llama3-8b", "wse3", {256, 2, PrecisionPolicy::uniform("fp16")});
  const auto many = sim::simulate_mesh_timing(plan);
  ASSERT_GT(many.prefill.passes, 4) << "chunks of " << plan.prefill_chunk_tokens;
  // One chunk alone: its trip through every stage, one after another.
  auto single = plan;
  single.prompt_tokens = plan.prefill_chunk_tokens;
  const auto one = sim::simulate_mesh_timing(single);
  ASSERT_EQ(one.prefill.passes, 1);
  EXPECT_NEAR(one.prefill.cycles, work(one.prefill), 1e-6 * one.prefill.cycles);
  const auto stages = static_cast<double>(plan.stages.size());
  EXPECT_LT(many.prefill.cycles, work(many.prefill) / 4) << "chunks overlap across the stages";
  EXPECT_GE(many.prefill.cycles, work(many.prefill) / stages);
  EXPECT_GE(many.prefill.cycles, one.prefill.cycles);
}

// The timer sums repeated work once (prefill passes stage by stage, decode passes that repeat the
// one before, steps of equal shape costed once); asking for link loads makes it walk and cost every
// step of every pass, so both must report the same run, hotspots included.
TEST(MeshTiming, ReusedCostsGiveTheStepByStepWalksResults) {
  for (const auto fabric : {sim::FabricModel::Analytic, sim::FabricModel::Fast}) {
    const auto plan = compiled("llama3-8b", "wse3", {300, 40, PrecisionPolicy::uniform("fp16")});
    ASSERT_GT((plan.prompt_tokens + plan.prefill_chunk_tokens - 1) / plan.prefill_chunk_tokens, 4);
    sim::TimingOptions reused, walked;
    reused.fabric = walked.fabric = fabric;
    walked.link_loads = true;
    const auto a = sim::simulate_mesh_timing(plan, reused), b = sim::simulate_mesh_timing(plan, walked);
    const auto near = [](double x, double y) { return std::abs(x - y) <= 1e-9 * std::max(std::abs(x), std::abs(y)); };
    for (const auto& [x, y] : {std::pair{&a.prefill, &b.prefill}, std::pair{&a.decode, &b.decode}}) {
      EXPECT_TRUE(near(x->cycles, y->cycles)) << x->cycles << " vs " << y->cycles;
      EXPECT_TRUE(near(x->compute_cycles, y->compute_cycles));
      EXPECT_TRUE(near(x->comm_cycles, y->comm_cycles));
      EXPECT_TRUE(near(x->energy.total_pj(), y->energy.total_pj()));
      EXPECT_TRUE(near(x->idle_core_fraction, y->idle_core_fraction));
      EXPECT_EQ(x->passes, y->passes);
    }
    for (size_t i = 0; i < plan.stages.size(); ++i) {
      EXPECT_TRUE(near(a.stage_prefill_cycles[i], b.stage_prefill_cycles[i])) << plan.stages[i].name;
      EXPECT_TRUE(near(a.stage_compute_cycles[i], b.stage_compute_cycles[i])) << plan.stages[i].name;
      EXPECT_TRUE(near(a.stage_decode_energy_pj[i], b.stage_decode_energy_pj[i])) << plan.stages[i].name;
    }
    ASSERT_EQ(a.busiest_steps.size(), b.busiest_steps.size());
    for (size_t i = 0; i < a.busiest_steps.size(); ++i) {
      EXPECT_EQ(a.busiest_steps[i].step, b.busiest_steps[i].step);
      EXPECT_EQ(a.busiest_steps[i].busiest_port_words, b.busiest_steps[i].busiest_port_words);
      EXPECT_EQ(a.busiest_steps[i].port, b.busiest_steps[i].port) << a.busiest_steps[i].step;
    }
    ASSERT_EQ(a.decode_steps.size(), b.decode_steps.size());
    for (size_t i = 0; i < a.decode_steps.size(); ++i)
      EXPECT_EQ(a.decode_steps[i].comm_cycles, b.decode_steps[i].comm_cycles) << a.decode_steps[i].name;
  }
}

// The compiler times every prefill chunk size that fits (the prompt halved down to one token) and
// keeps the one that finishes the prompts of the requests in flight first: a 16-token prompt on
// wse2 is fastest in 1-token chunks that fill the 33-stage pipeline at once, although 4 fit; with
// 8 requests in flight, whose prompts wait for the busiest stage, 2-token chunks (less fixed
// latency per token) win. A chunk given that does not fit is refused.
TEST(MeshCompiler, PrefillChunksAreChosenByTheTimingModel) {
  for (const int64_t batch : {1, 8}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    compiler::MeshCompileOptions options{16, 2, PrecisionPolicy::uniform("fp16")};
    options.requests_in_flight = batch;
    const auto chosen = compiled("llama3-8b", "wse2", options);
    const auto done = [&](const program::Program& plan) {
      const auto r = sim::simulate_mesh_timing(plan);
      const double busiest = *std::max_element(r.stage_prefill_cycles.begin(), r.stage_prefill_cycles.end());
      return r.time_to_first_token_s + static_cast<double>(batch - 1) * busiest / r.clock_hz;
    };
    const double best = done(chosen);
    std::map<int64_t, double> times;
    for (const int64_t chunk : {16, 8, 4, 2, 1}) {
      options.prefill_chunk_tokens = chunk;
      if (chunk > 4) {  // each core's activations and attention scores for 8 tokens overflow its SRAM
        EXPECT_NE(error_of([&] { compile(inputs("llama3-8b", "wse2"), options); }).find("do not fit"),
                  std::string::npos);
        continue;
      }
      const auto forced = compiled("llama3-8b", "wse2", options);
      ASSERT_EQ(forced.prefill_chunk_tokens, chunk);
      times[chunk] = done(forced);
      EXPECT_GE(times[chunk], best * (1 - 1e-12)) << chunk << "-token chunks";
    }
    EXPECT_EQ(times.at(chosen.prefill_chunk_tokens), best);
    EXPECT_EQ(chosen.prefill_chunk_tokens, batch == 1 ? 1 : 2);
    if (batch == 1) {
      EXPECT_LT(times.at(1), 0.7 * times.at(4)) << "filling the pipeline wins";
    }
  }
  compiler::MeshCompileOptions too_big{4096, 2, PrecisionPolicy::uniform("fp16")};
  too_big.prefill_chunk_tokens = 64;
  EXPECT_NE(error_of([&] {
              compile(inputs("llama3-8b", "wse2"), too_big);
            }).find("prefill chunks of 64 tokens do not fit the activation buffers"),
            std::string::npos);
  too_big.prefill_chunk_tokens = 5000;
  EXPECT_NE(error_of([&] { compile(inputs("llama3-8b", "wse2"), too_big); }).find("give 1..4096"), std::string::npos);
}

TEST(MeshTiming, MoreLinkBandwidthNeverSlowsDecode) {
  auto plan = compiled("gpt2-small", "wse2", {32, 32, {}});
  const double base = sim::simulate_mesh_timing(plan).decode.cycles;
  plan.arch_yaml.replace(plan.arch_yaml.find("bandwidth: 32bit/cycle"), 22, "bandwidth: 64bit/cycle");
  const double faster = sim::simulate_mesh_timing(plan).decode.cycles;
  EXPECT_LE(faster, base);
  EXPECT_LT(faster, base) << "decode on a wafer is communication-heavy; wider links must help";
}

// The fidelity tiers (issue #13): the flow tier within 5% of the cycle tier on mesh-32x32 plans
// (whole phases; each phase's communication within 10%).
TEST(MeshTiming, FastFabricModelAgreesWithCycleLevelOnAWholePlan) {
  for (const char* model : {"default", "llama-tiny", "gpt2-tiny"}) {
    SCOPED_TRACE(model);
    Inputs in = inputs("default", "mesh-32x32");
    if (std::string(model) != "default") {
      in.model_path = std::string(TESSERA_SOURCE_DIR) + "/tests/data/" + model + ".yaml";
      in.model_yaml = read_text_file(in.model_path);
    }
    const auto result = compile(in, {16, 16, {}});
    ASSERT_TRUE(result.status) << result.status.message();
    const auto fast = sim::simulate_mesh_timing(result.program);
    sim::TimingOptions cycle_level;
    cycle_level.fabric = sim::FabricModel::CycleLevel;
    const auto cycle = sim::simulate_mesh_timing(result.program, cycle_level);
    EXPECT_EQ(cycle.fabric_model, "cycle-level");
    for (const auto& [f, c] : {std::pair{fast.prefill, cycle.prefill}, std::pair{fast.decode, cycle.decode}}) {
      EXPECT_NEAR(f.cycles, c.cycles, 0.05 * c.cycles);
      EXPECT_NEAR(f.comm_cycles, c.comm_cycles, 0.10 * c.comm_cycles);
      EXPECT_EQ(f.compute_cycles, c.compute_cycles);
    }
  }
}

// A region at the cycle tier inside a run at another tier: one stage's collectives are costed
// wavelet by wavelet whatever the run's tier (the same cycle-level total under the analytic and the
// flow tier), and their error against the run's tier is reported; on a wafer larger than the cycle
// tier's whole-run limit, a stage still can be.
TEST(MeshTiming, CycleRegionTimesOneStageWaveletByWaveletInsideARun) {
  const auto result = compile(inputs("default", "mesh-32x32"), {16, 16, {}});
  ASSERT_TRUE(result.status) << result.status.message();
  const std::string stage = result.program.stages.at(1).name;
  sim::TimingOptions flow, analytic;
  flow.cycle_region = analytic.cycle_region = stage;
  analytic.fabric = sim::FabricModel::Analytic;
  const auto at_flow = sim::simulate_mesh_timing(result.program, flow);
  const auto at_analytic = sim::simulate_mesh_timing(result.program, analytic);
  EXPECT_EQ(at_flow.cycle_region.stage, stage);
  EXPECT_GT(at_flow.cycle_region.collectives, 0);
  EXPECT_EQ(at_flow.cycle_region.collectives, at_analytic.cycle_region.collectives);
  EXPECT_EQ(at_flow.cycle_region.cycle_level_cycles, at_analytic.cycle_region.cycle_level_cycles);
  EXPECT_NE(at_flow.cycle_region.reference_cycles, at_analytic.cycle_region.reference_cycles);
  EXPECT_LT(std::abs(at_flow.cycle_region.error()), 0.05);
  EXPECT_GT(std::abs(at_analytic.cycle_region.error()), std::abs(at_flow.cycle_region.error()))
      << "the closed forms are further from the wavelets than routed flows are";
  EXPECT_TRUE(sim::simulate_mesh_timing(result.program).cycle_region.stage.empty());
  flow.cycle_region = "layer 99";
  EXPECT_NE(error_of([&] { sim::simulate_mesh_timing(result.program, flow); }).find("its stages are 'layer 0'"),
            std::string::npos);

  const auto wafer = compile(inputs("default", "wse2"), {16, 8, {}});
  ASSERT_TRUE(wafer.status) << wafer.status.message();
  sim::TimingOptions whole;
  whole.fabric = sim::FabricModel::CycleLevel;
  EXPECT_NE(error_of([&] { sim::simulate_mesh_timing(wafer.program, whole); }).find("--cycle-region STAGE"),
            std::string::npos);
  sim::TimingOptions one;
  one.cycle_region = wafer.program.stages.front().name;
  const auto region = sim::simulate_mesh_timing(wafer.program, one);
  EXPECT_GT(region.cycle_region.collectives, 0);
  EXPECT_LT(std::abs(region.cycle_region.error()), 0.05);
}

// The analytic tier (closed forms, nothing routed) within 10% of the flow tier on every shipped
// mesh preset and every shipped model that fits it: time to first token and decode.
TEST(MeshTiming, AnalyticTierAgreesWithTheFlowTierOnEveryPresetAndModel) {
  const std::string root = TESSERA_SOURCE_DIR;
  std::vector<std::string> models = {"default"};
  for (const auto& f : std::filesystem::directory_iterator(root + "/configs/models"))
    models.push_back(f.path().stem().string());
  std::sort(models.begin(), models.end());
  int compared = 0;
  for (const char* preset : {"mesh-32x32", "wse2", "wse3"})
    for (const std::string& model : models) {
      const auto result = compile(inputs(model, preset), {200, 8, PrecisionPolicy::uniform("fp16")});
      if (!result.status) continue;  // too large for one wafer
      SCOPED_TRACE(fmt::format("{} on {}", model, preset));
      const auto flow = sim::simulate_mesh_timing(result.program);
      sim::TimingOptions analytic;
      analytic.fabric = sim::FabricModel::Analytic;
      const auto fast = sim::simulate_mesh_timing(result.program, analytic);
      EXPECT_EQ(fast.fabric_model, "analytic");
      EXPECT_NEAR(fast.time_to_first_token_s, flow.time_to_first_token_s, 0.10 * flow.time_to_first_token_s);
      EXPECT_NEAR(fast.decode.cycles, flow.decode.cycles, 0.10 * flow.decode.cycles);
      ++compared;
    }
  EXPECT_GE(compared, 8) << "the shipped small and medium models fit the wafers";
}

namespace {

struct Totals {
  double macs = 0, unpack_ops = 0, weight_bytes = 0;
};

// Decode matmul MACs and stored weight bytes over the whole machine: independent of placement.
Totals totals(const program::Program& plan) {
  Totals t;
  for (const auto& s : plan.decode)
    if (s.op == "matmul")
      t.macs += static_cast<double>(s.total_macs), t.unpack_ops += static_cast<double>(s.elementwise);
  for (const auto& s : plan.stages) t.weight_bytes += static_cast<double>(s.total_weight_bytes);
  return t;
}

}  // namespace

TEST(MeshCompiler, SparsityAndFormatsChangeBytesAndMacsOnlyWhereTheArchSupportsThem) {
  const Totals dense = totals(compiled("gpt2-small", "wse2", {32, 32, PrecisionPolicy::uniform("fp16")}));
  PrecisionPolicy quarter = PrecisionPolicy::uniform("fp16");
  quarter.prune = "unstructured:0.25";
  const Totals skipped = totals(compiled("gpt2-small", "wse2", {32, 32, quarter}));
  // The wafer skips unstructured zeros: a quarter of the MACs; (value, index) pairs take 8 bits.
  EXPECT_NEAR(skipped.macs / dense.macs, 0.25, 1e-3);
  EXPECT_NEAR(skipped.weight_bytes / dense.weight_bytes, 0.5, 0.01);
  PrecisionPolicy two_four = PrecisionPolicy::uniform("fp16");
  two_four.prune = "2:4";
  const Totals not_skipped = totals(compiled("gpt2-small", "wse2", {32, 32, two_four}));
  EXPECT_EQ(not_skipped.macs, dense.macs) << "the wafer does not declare 2:4";
  EXPECT_EQ(not_skipped.weight_bytes, dense.weight_bytes);
  EXPECT_EQ(dense.unpack_ops, 0 + not_skipped.unpack_ops);

  PrecisionPolicy int4 = PrecisionPolicy::uniform("fp16");
  int4.weights = "int4";
  const Totals packed = totals(compiled("gpt2-small", "wse2", {32, 32, int4}));
  EXPECT_NEAR(packed.weight_bytes / dense.weight_bytes, 4.5 / 16, 0.01);
  EXPECT_EQ(packed.macs, dense.macs);
  EXPECT_GT(packed.unpack_ops, dense.unpack_ops) << "int4 weights are unpacked into fp16 operands";

  const auto kv8 = compiled("default", "mesh-32x32", {16, 16, {"fp32", 32, "fp32", "fp8_e4m3", "", "auto"}});
  const auto kv32 = compiled("default", "mesh-32x32", {16, 16, {}});
  EXPECT_EQ(kv8.stages[0].kv_cache_bytes * 4, kv32.stages[0].kv_cache_bytes);
  EXPECT_EQ(kv8.skip_zero_activations, true);
}

TEST(MeshTiming, ZeroActivationsAreSkippedOnlyWhereTheArchSaysSo) {
  auto plan = compiled("gpt2-small", "wse2", {32, 8, {}});
  const auto dense = sim::simulate_mesh_timing(plan);
  sim::TimingOptions measured;
  measured.activation_density = {{"mlp.c_proj", 0.25}};
  const auto sparse = sim::simulate_mesh_timing(plan, measured);
  EXPECT_LT(sparse.decode.compute_cycles, dense.decode.compute_cycles);
  EXPECT_LT(sparse.decode_energy_per_token.compute_pj, dense.decode_energy_per_token.compute_pj);
  // Three quarters of mlp.c_proj's MACs (at 4.6 pJ in fp32) are not done.
  double c_proj_macs = 0;
  for (const auto& s : plan.decode)
    if (s.name.ends_with("mlp.c_proj")) c_proj_macs += static_cast<double>(s.total_macs);
  EXPECT_NEAR(dense.decode_energy_per_token.compute_pj - sparse.decode_energy_per_token.compute_pj,
              0.75 * c_proj_macs * 4.6, 1e-6 * c_proj_macs);
  plan.arch_yaml.replace(plan.arch_yaml.find("activations: true"), 17, "activations: false");
  const auto no_skipping = sim::simulate_mesh_timing(plan, measured);
  EXPECT_EQ(no_skipping.decode.compute_cycles, dense.decode.compute_cycles);
}

// Every step's vector instructions (counted by the compiler) cost the arch's vector_op_overhead
// each, on top of their elements: one multiply-add instruction per row of a projection's tile and
// token (its bias one more), and for a chunk of tokens per row and column of the tile where the
// tokens are more. Only the compute cycles change, by exactly that.
TEST(MeshTiming, EveryVectorInstructionPaysTheArchsOverhead) {
  auto plan = compiled("gpt2-small", "wse2", {32, 8, {}});
  const auto& region = plan.stages.front().region;
  const int64_t tile_k = (768 + region.height - 1) / region.height;  // c_attn's input over the rows
  int projections = 0;
  for (const auto& s : plan.decode) {
    if (!s.name.ends_with("attn.c_attn")) continue;
    EXPECT_EQ(s.vector_ops, tile_k + 1) << s.name;  // the rows, and a bias
    ++projections;
  }
  EXPECT_EQ(projections, 12);
  const int64_t chunk = plan.prefill_chunk_tokens;
  ASSERT_GT(chunk, 1);
  for (const auto& s : plan.prefill) {
    if (!s.name.ends_with("attn.c_attn")) continue;
    const int64_t tile_n = s.macs / (tile_k * chunk), along = std::min(chunk, tile_n);
    EXPECT_EQ(s.vector_ops, tile_k * along + along) << s.name;
  }
  const double overhead = target::parse_arch(plan.arch_yaml, plan.arch_origin).core.vector_op_cycles;
  ASSERT_EQ(overhead, 5);
  const auto with = sim::simulate_mesh_timing(plan);
  plan.arch_yaml.replace(plan.arch_yaml.find("vector_op_overhead: 5cycles"), 27, "vector_op_overhead: 0cycles");
  const auto without = sim::simulate_mesh_timing(plan);
  ASSERT_EQ(with.decode_steps.size(), without.decode_steps.size());
  for (size_t i = 0; i < with.decode_steps.size(); ++i) {
    const auto &a = with.decode_steps[i], &b = without.decode_steps[i];
    const auto& step = plan.decode.at(i);
    ASSERT_EQ(a.name, step.name);
    if (step.vector_ops_per_slot == 0) {
      EXPECT_EQ(a.compute_cycles - b.compute_cycles, overhead * static_cast<double>(step.vector_ops)) << a.name;
    } else {
      EXPECT_GT(a.compute_cycles, b.compute_cycles) << a.name;
    }
    EXPECT_EQ(a.words, b.words) << a.name;
  }
  EXPECT_GT(with.decode.compute_cycles, without.decode.compute_cycles);
  // The report says how much of the compute was the instructions' overhead: all of the difference.
  EXPECT_EQ(without.decode.issue_cycles, 0);
  EXPECT_EQ(with.decode.compute_cycles - without.decode.compute_cycles, with.decode.issue_cycles);
}

// Placement the simulator agrees with (issue #13): the compiler scores its candidate placements
// with the timing model that times the plan, and a stage may take more slots than it needs, so
// more link bandwidth, SRAM, MACs or clock, or a cheaper vector instruction, never makes a preset
// decode slower, its placement re-chosen each time. (Before, doubling wse3's link bandwidth made
// llama3-8b decode slower, 5,550 vs 5,884 tokens/s, and doubling the SRAM 1.3% slower.) The
// placement optimises decode latency, not the prompt's: more SRAM lets it pick smaller regions
// that decode faster and prefill slower (wse3, 512 tokens: TTFT +25%), so time to first token is
// held only against the others.
TEST(MeshPlacement, MoreOfAnyResourceNeverMakesAPresetSlower) {
  const auto replace = [](std::string text, const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? text : text.replace(at, from.size(), to);
  };
  for (const char* preset : {"wse2", "wse3"}) {
    const Inputs base = inputs("llama3-8b", preset);
    const std::string fp16_macs = std::string(preset) == "wse3" ? "fp16: 8 " : "fp16: 4 ";
    const std::vector<std::pair<std::string, std::string>> variants = {
        {"bandwidth: 32bit/cycle", "bandwidth: 64bit/cycle"},
        {"sram: 48KiB", "sram: 96KiB"},
        {fp16_macs, std::string("fp16: ") + (std::string(preset) == "wse3" ? "16 " : "8 ")},
        {std::string("clock: ") + (std::string(preset) == "wse3" ? "1.1GHz" : "0.85GHz"),
         std::string("clock: ") + (std::string(preset) == "wse3" ? "2.2GHz" : "1.7GHz")},
        {"vector_op_overhead: 5cycles", "vector_op_overhead: 2cycles"}};
    const compiler::MeshCompileOptions options{
        .prompt_tokens = 512, .max_new_tokens = 4, .precision = PrecisionPolicy::uniform("fp16")};
    const sim::MeshReport reference = sim::simulate_mesh_timing(compile(base, options).program);
    for (const auto& [from, to] : variants) {
      Inputs more = base;
      more.arch_yaml = replace(base.arch_yaml, from, to);
      const auto result = compile(more, options);
      ASSERT_TRUE(result.status) << preset << " " << to;
      const sim::MeshReport r = sim::simulate_mesh_timing(result.program);
      EXPECT_GE(r.decode_tokens_per_s, reference.decode_tokens_per_s) << preset << " with " << to;
      if (to.find("sram") == std::string::npos) {
        EXPECT_LE(r.time_to_first_token_s, reference.time_to_first_token_s) << preset << " with " << to;
      }
    }
  }
}

// A 4 x 4 mesh with 1 MiB per core cannot give 24 layers and the LM head a region each, so
// consecutive layers share regions: each region holds its layers' weights and KV caches and one
// set of activation buffers, layers hand over on the same cores for free, and the region's cores
// take the layers in turn. Two layers still get a region each.
TEST(MeshCompiler, LayersShareRegionsOnlyWhenOnePerLayerDoesNotFit) {
  const std::string root = TESSERA_SOURCE_DIR;
  std::string arch_yaml = read_text_file(root + "/configs/arch/mesh-32x32.yaml");
  arch_yaml.replace(arch_yaml.find("grid: {width: 32, height: 32}"), 29, "grid: {width: 4, height: 4}");
  arch_yaml.replace(arch_yaml.find("sram: 48KiB"), 11, "sram: 1MiB");
  const std::string two_layers = read_text_file(root + "/tests/data/gpt2-tiny.yaml");
  std::string many_layers = two_layers;
  many_layers.replace(many_layers.find("n_layers: 2\n"), 12, "n_layers: 24\n");
  const auto arch = target::parse_arch(arch_yaml, "mesh-4x4");
  const auto plan_for = [&](const std::string& model_yaml) {
    auto result = compiler::compile_for_mesh(ir::parse_model_config(model_yaml, "tiny.yaml"), model_yaml, "tiny.yaml",
                                             arch, arch_yaml, "mesh-4x4", {8, 8, {}});
    EXPECT_TRUE(result.status) << result.status.message();
    return result.program;
  };

  const program::Program own = plan_for(two_layers);
  ASSERT_EQ(own.stages.size(), 3u);
  EXPECT_EQ(program::region_owners(own), (std::vector<size_t>{0, 1, 2}));

  const program::Program plan = plan_for(many_layers);
  ASSERT_EQ(plan.stages.size(), 25u);
  const std::vector<size_t> owner = program::region_owners(plan);
  const std::vector<int64_t> held = program::region_bytes_per_core(plan);
  std::set<size_t> regions(owner.begin(), owner.end());
  EXPECT_LT(regions.size(), 17u) << "at most one region per core";
  int64_t cores = 0;
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const program::Stage& st = plan.stages[s];
    EXPECT_LE(static_cast<double>(held[s]), arch.usable_sram_per_core()) << st.name;
    if (s > 0 && owner[s] != s) {
      EXPECT_EQ(owner[s], owner[s - 1]) << st.name << ": a region's layers are consecutive";
      EXPECT_EQ(st.activation_bytes, 0) << st.name << ": one set of buffers per region";
      EXPECT_GT(st.weight_bytes, 0);
    }
    if (owner[s] == s) cores += st.region.cores();
  }
  ASSERT_GT(regions.size(), 2u);
  ASSERT_LT(regions.size(), 25u);
  const int64_t shared = std::count_if(owner.begin(), owner.end(), [&](size_t o) { return o == owner[0]; });
  EXPECT_EQ(held[0],
            shared * (plan.stages[0].weight_bytes + plan.stages[0].kv_cache_bytes) + plan.stages[0].activation_bytes);

  const sim::MeshReport r = sim::simulate_mesh_timing(plan);
  EXPECT_EQ(r.cores_used, cores) << "shared cores are counted once";
  EXPECT_EQ(r.sram_high_water_bytes, *std::max_element(held.begin(), held.end()));
  int64_t transfers = 0;
  for (const sim::TraceSlice& step : r.decode_steps) {
    if (step.pattern != "stage_transfer") continue;
    ++transfers;
    const auto from = static_cast<size_t>(step.stage);
    if (owner[from + 1] == owner[from])
      EXPECT_EQ(step.comm_cycles, 0) << step.name << " stays on its cores";
    else
      EXPECT_GT(step.comm_cycles, 0) << step.name;
  }
  EXPECT_EQ(transfers, 24);
  // The plan file keeps the sharing; a region that only partly overlaps another is refused.
  const std::string text = program::to_json(plan);
  EXPECT_EQ(program::region_owners(program::from_json(text, "p.json")), owner);
  program::Program skewed = plan;
  skewed.stages[1].region.width = 2;
  skewed.stages[1].region.x = plan.stages[0].region.x == 0 ? 0 : plan.stages[0].region.x - 1;
  EXPECT_NE(error_of([&] {
              program::from_json(program::to_json(skewed), "p.json");
            }).find("overlaps stages[0]'s ('layer 0') without being the same cores"),
            std::string::npos);
}

// A mixture of experts on a mesh: every core of a layer's region holds its tile of each expert
// (all 4 experts' weights are on the layer's cores), a decode token multiplies its 2 experts only,
// the routing changes the report's expert loads but not the time, and plan files keep it.
TEST(MeshCompiler, MixtureOfExpertsKeepsEveryExpertOnEveryCoreOfItsLayer) {
  const std::string root = TESSERA_SOURCE_DIR;
  Inputs in = inputs("default", "mesh-32x32");
  in.model_path = root + "/tests/data/mixtral-tiny.yaml";
  in.model_yaml = read_text_file(in.model_path);
  const ir::ModelConfig m = ir::load_model_config(in.model_path);
  const int64_t d = m.d_model, f = m.d_ff, experts = m.n_experts, top_k = m.experts_per_token;
  compiler::MeshCompileOptions options{16, 4, PrecisionPolicy::uniform("fp32")};
  const auto uniform = compile(in, options);
  ASSERT_TRUE(uniform.status) << uniform.status.message();
  const program::Program& plan = uniform.program;
  EXPECT_EQ(plan.routing, "uniform");
  const program::Stage& layer = plan.stages.front();
  EXPECT_GE(layer.total_weight_bytes, experts * 3 * d * f * 4);
  const int64_t cores = layer.region.cores();
  EXPECT_GE(layer.weight_bytes * cores, experts * 3 * d * f * 4) << "each core holds its tile of every expert";
  std::map<std::string, const program::Step*> steps;
  for (const auto& s : plan.decode)
    if (s.stage == 0) steps[s.name] = &s;
  const std::string moe = "model.layers.0.block_sparse_moe";
  ASSERT_TRUE(steps.contains(moe + ".route") && steps.contains(moe + ".gate_up") && steps.contains(moe + ".down"));
  EXPECT_EQ(steps[moe + ".route"]->pattern, program::Pattern::AllreduceX);
  EXPECT_EQ(steps[moe + ".route"]->words, experts);
  EXPECT_EQ(steps[moe + ".gate_up"]->total_macs, top_k * d * 2 * f);
  EXPECT_EQ(steps[moe + ".down"]->total_macs, top_k * f * d);
  EXPECT_EQ(steps[moe + ".gate_up"]->pattern, program::Pattern::AllreduceY);
  EXPECT_EQ(steps[moe + ".down"]->pattern, program::Pattern::AllreduceX);
  // The down projection's partial sums are weighted and added on each core: one token's words.
  EXPECT_EQ(steps[moe + ".down"]->words, (d + layer.region.height - 1) / layer.region.height);

  options.routing = compiler::Routing::Balanced;
  const auto balanced = compile(in, options);
  ASSERT_TRUE(balanced.status);
  const auto a = sim::simulate_mesh_timing(plan), b = sim::simulate_mesh_timing(balanced.program);
  EXPECT_EQ(a.decode.cycles, b.decode.cycles);
  EXPECT_EQ(a.prefill.cycles, b.prefill.cycles);
  EXPECT_EQ(a.routing.routing, "uniform");
  EXPECT_EQ(b.routing.routing, "balanced");
  EXPECT_DOUBLE_EQ(a.routing.decode.experts_used, static_cast<double>(top_k));
  EXPECT_GT(a.routing.prefill.expert_imbalance, b.routing.prefill.expert_imbalance);

  EXPECT_EQ(program::from_json(program::to_json(balanced.program), "plan.json").routing, "balanced");
  std::string corrupt = program::to_json(plan);
  corrupt.replace(corrupt.find("\"uniform\""), 9, "\"greedy\"");
  EXPECT_NE(error_of([&] { program::from_json(corrupt, "plan.json"); }).find("greedy"), std::string::npos);
}

// Grouped-query attention's queries lie on the columns in whole KV groups (layout.hpp); a KV
// head's scores are summed over its own columns only, and a column straddling two KV heads takes
// part in both sums.
TEST(MeshLayout, EachKvHeadsQueriesLieOnASpanOfColumns) {
  // llama3-8b on 150 columns: 32 query dimensions per column, 16 columns per KV head (4 x 128).
  const auto even = program::kv_head_columns(4096, 150, 4, 128);
  ASSERT_EQ(even.size(), 8u);
  for (int64_t h = 0; h < 8; ++h) EXPECT_EQ(even[static_cast<size_t>(h)], (program::ColumnSpan{16 * h, 16 * h + 15}));
  EXPECT_EQ(program::heads_per_column(4096, 150, 4, 128), 4);
  // llama3-70b on 188 columns: 48 per column, so column 21 holds the end of KV head 0 and the
  // start of KV head 1, and the query heads of both.
  const auto straddling = program::kv_head_columns(8192, 188, 8, 128);
  ASSERT_EQ(straddling.size(), 8u);
  EXPECT_EQ(straddling[0], (program::ColumnSpan{0, 21}));
  EXPECT_EQ(straddling[1], (program::ColumnSpan{21, 42}));
  EXPECT_EQ(program::heads_per_column(8192, 188, 8, 128), 16);
  // Multi-head attention (GPT-2 small, 12 x 64 on 32 columns of 24): heads straddle columns.
  EXPECT_EQ(program::kv_head_columns(768, 32, 1, 64)[1], (program::ColumnSpan{2, 5}));
  EXPECT_EQ(program::heads_per_column(768, 32, 1, 64), 2);
}

TEST(MeshCompiler, AttentionScoresReduceWithinEachKvHeadsColumns) {
  // wse2's layer regions are 150 columns wide (disjoint spans), wse3's 187 (straddling ones).
  for (const std::string arch : {"wse2", "wse3"}) {
    const auto plan = compiled("llama3-8b", arch, {256, 4, PrecisionPolicy::uniform("fp16")});
    const int64_t px = plan.stages.front().region.width;
    const auto spans = program::kv_head_columns(4096, px, 4, 128);
    const int64_t heads = program::heads_per_column(4096, px, 4, 128);
    int64_t widest = 0;
    bool disjoint = true;
    for (size_t i = 0; i < spans.size(); ++i) {
      widest = std::max(widest, spans[i].last - spans[i].first + 1);
      if (i > 0 && spans[i - 1].last >= spans[i].first) disjoint = false;
    }
    EXPECT_EQ(disjoint, arch == "wse2") << px << " columns";
    size_t scores_step = 0;
    for (size_t i = 0; i < plan.decode.size(); ++i) {
      const auto& s = plan.decode[i];
      if (s.stage != 0) continue;
      if (s.kernel == "attention.scores") {
        scores_step = i;
        ASSERT_EQ(s.segments.size(), spans.size());
        for (size_t k = 0; k < spans.size(); ++k)
          EXPECT_EQ(s.segments[k], (std::array<int32_t, 2>{static_cast<int32_t>(spans[k].first),
                                                           static_cast<int32_t>(spans[k].last)}));
        EXPECT_EQ(s.words_per_slot, 4) << "a KV head's 4 query heads per position";
      }
      if (s.kernel == "attention.max" || s.kernel == "attention.sum") {
        EXPECT_EQ(s.words, heads) << s.kernel << ": the statistics of the column's own heads";
        EXPECT_TRUE(s.segments.empty());
      }
    }
    ASSERT_GT(scores_step, 0u);
    // Disjoint segments run side by side: the step costs what one segment's tree costs, at both
    // tiers; straddling ones share their end cores, which costs no less. Over the whole row
    // (every column taking part) it costs more.
    const auto comm = [&](const program::Program& p, sim::FabricModel tier) {
      sim::TimingOptions options;
      options.fabric = tier;
      return sim::simulate_mesh_timing(p, options).decode_steps.at(scores_step).comm_cycles;
    };
    auto one_span = plan, whole_row = plan;
    one_span.decode[scores_step].segments = {{0, static_cast<int32_t>(widest - 1)}};
    whole_row.decode[scores_step].segments.clear();
    whole_row.decode[scores_step].group = static_cast<int32_t>(std::ceil(std::sqrt(static_cast<double>(px))));
    for (const auto tier : {sim::FabricModel::Fast, sim::FabricModel::Analytic}) {
      if (disjoint) {
        EXPECT_EQ(comm(plan, tier), comm(one_span, tier)) << arch;
      } else {
        EXPECT_GE(comm(plan, tier), comm(one_span, tier)) << arch;
      }
      EXPECT_GT(comm(whole_row, tier), 1.5 * comm(plan, tier)) << arch;
    }
  }
}
