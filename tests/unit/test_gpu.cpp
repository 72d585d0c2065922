// The GPU model against first principles on every shared_memory preset.
#include <gtest/gtest.h>

#include <map>

#include "tessera/base/fs.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/shared_memory/gpu_compiler.hpp"
#include "tessera/target/shared_memory/gpu_timing.hpp"
#include "test_util.hpp"

using namespace tessera;

namespace {

compiler::GpuCompileResult compile(const std::string& model, const std::string& arch_yaml,
                                   const compiler::GpuCompileOptions& options) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/configs/models/" + model + ".yaml";
  return compiler::compile_for_gpu(ir::load_model_config(path), read_text_file(path), path,
                                   target::parse_arch(arch_yaml, "gpu.yaml"), arch_yaml, "gpu.yaml", options);
}

std::string preset(const std::string& name) {
  return read_text_file(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + name + ".yaml");
}

}  // namespace

TEST(GpuModel, NothingBeatsPeakComputeOrBandwidth) {
  for (const std::string name : {"a100", "h100", "h200", "trn2"}) {
    const std::string yaml = preset(name);
    const arch::ArchSpec a = target::parse_arch(yaml, name);
    for (const int64_t batch : {1, 32}) {
      const auto result = compile("llama3-8b", yaml, {512, 16, batch, 1, PrecisionPolicy::uniform("bf16")});
      ASSERT_TRUE(result.status) << result.status.message();
      const sim::GpuReport r = sim::simulate_gpu(result.plan);
      const double peak = a.peak_macs_per_second("bf16");
      EXPECT_GE(r.prefill.seconds, r.prefill.macs / peak) << name;
      EXPECT_GE(r.decode.seconds, r.decode.macs / peak) << name;
      // Every decode pass reads every weight once, except the input embedding table (one row).
      const double table = 128256.0 * 4096 * 2;
      EXPECT_GE(r.decode.seconds / 15, (result.plan.weight_bytes - table) / a.gpu.sustained_hbm_bytes_per_second())
          << name;
      EXPECT_LE(r.decode_utilization, 1.0);
      if (batch == 1) {
        EXPECT_EQ(r.decode_bound, "memory") << name << ": batch-1 decode of an 8B model is memory-bound";
        // And not by much more than the weights' read time at the sustained bandwidth: within 25%
        // (launches, KV, activations).
        EXPECT_LT(r.decode.seconds / 15, 1.25 * result.plan.weight_bytes / a.gpu.sustained_hbm_bytes_per_second())
            << name;
      }
      // Doubling the HBM bandwidth never slows a phase, and speeds up memory-bound decode.
      std::string faster = yaml;
      const size_t at = faster.find("hbm_bandwidth: ");
      const size_t end = faster.find(' ', at + 15);
      const double bw = a.gpu.hbm_bytes_per_second * 2;
      faster.replace(at, end - at, "hbm_bandwidth: " + std::to_string(static_cast<int64_t>(bw)) + "B/s");
      const auto fast =
          sim::simulate_gpu(compile("llama3-8b", faster, {512, 16, batch, 1, PrecisionPolicy::uniform("bf16")}).plan);
      EXPECT_LE(fast.prefill.seconds, r.prefill.seconds);
      EXPECT_LE(fast.decode.seconds, r.decode.seconds);
      if (batch == 1) {
        EXPECT_LT(fast.decode.seconds, 0.6 * r.decode.seconds);
      }
    }
  }
}

TEST(GpuModel, MemoryBoundDecodeFollowsTheSustainedHbmBandwidth) {
  std::string yaml = preset("a100");
  const arch::ArchSpec a = target::parse_arch(yaml, "a100");
  EXPECT_DOUBLE_EQ(a.gpu.hbm_efficiency, 0.88);
  const compiler::GpuCompileOptions work{128, 8, 1, 1, PrecisionPolicy::uniform("fp16")};
  const auto measured = sim::simulate_gpu(compile("llama3-8b", yaml, work).plan);
  const size_t at = yaml.find("hbm_efficiency: 0.88");
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, 20, "hbm_efficiency: 0.44");
  const auto halved = sim::simulate_gpu(compile("llama3-8b", yaml, work).plan);
  // Batch-1 decode is the weights' read time plus launches: half the bandwidth, nearly twice the time.
  EXPECT_GT(halved.decode.seconds, 1.9 * measured.decode.seconds);
  EXPECT_LT(halved.decode.seconds, 2.0 * measured.decode.seconds);
  for (const std::string bad : {"0", "1.5", "-0.2"}) {
    std::string wrong = yaml;
    wrong.replace(at, 20, "hbm_efficiency: " + bad);
    try {
      target::parse_arch(wrong, "a100.yaml");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("memory.hbm_efficiency"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("(0, 1]"), std::string::npos) << e.what();
    }
  }
}

TEST(GpuModel, BatchingTurnsDecodeComputeBoundAndTwoFourHalvesTensorWork) {
  const std::string yaml = preset("h100");
  const auto one = sim::simulate_gpu(compile("llama3-8b", yaml, {128, 8, 1, 1, PrecisionPolicy::uniform("fp16")}).plan);
  const auto many =
      sim::simulate_gpu(compile("llama3-8b", yaml, {128, 8, 256, 1, PrecisionPolicy::uniform("fp16")}).plan);
  EXPECT_GT(many.decode_tokens_per_s, 50 * one.decode_tokens_per_s) << "weights are read once for the whole batch";
  EXPECT_LT(many.decode_tokens_per_s_per_user, one.decode_tokens_per_s_per_user);
  PrecisionPolicy sparse = PrecisionPolicy::uniform("fp16");
  sparse.prune = "2:4";
  const auto dense_plan = compile("llama3-8b", yaml, {2048, 2, 4, 1, PrecisionPolicy::uniform("fp16")}).plan;
  const auto sparse_plan = compile("llama3-8b", yaml, {2048, 2, 4, 1, sparse}).plan;
  EXPECT_TRUE(sparse_plan.skip_weight_zeros);
  EXPECT_EQ(sparse_plan.weight_bits, 9) << "2 of 4 fp16 values + 2 bits of position each";
  const auto dense = sim::simulate_gpu(dense_plan), two_four = sim::simulate_gpu(sparse_plan);
  EXPECT_LT(two_four.time_to_first_token_s, 0.7 * dense.time_to_first_token_s) << "prefill is compute-bound";
}

// A GEMM tile reads tile_m + tile_n elements from L2 per step of K (memory.l2_bandwidth, the A100
// whitepaper's 5,120 B/clk): where L2 is slow every prefill GEMM takes the tile that needs the
// fewest bytes per MAC and exactly L2's time; without the key tiles run at the SM's rate.
TEST(GpuModel, GemmTilesRunNoFasterThanL2FeedsThem) {
  const std::string yaml = preset("a100");
  const std::string key = "l2_bandwidth: 7219GB/s";
  ASSERT_NE(yaml.find(key), std::string::npos);
  std::string slow = yaml, unlimited = yaml;
  slow.replace(slow.find(key), key.size(), "l2_bandwidth: 500GB/s");
  unlimited.replace(unlimited.find(key), key.size(), "");
  const compiler::GpuCompileOptions options{512, 2, 1, 1, PrecisionPolicy::uniform("bf16")};
  const auto plan = compile("llama3-8b", yaml, options).plan, slow_plan = compile("llama3-8b", slow, options).plan;
  const auto fed = sim::simulate_gpu(plan), starved = sim::simulate_gpu(slow_plan),
             free = sim::simulate_gpu(compile("llama3-8b", unlimited, options).plan);
  EXPECT_LE(free.time_to_first_token_s, fed.time_to_first_token_s);
  EXPECT_GT(starved.time_to_first_token_s, 3 * fed.time_to_first_token_s);
  const double l2_bytes_per_sm_second = 500e9 / 108;
  int gemms = 0;
  for (size_t i = 0; i < slow_plan.prefill.size(); ++i) {
    const auto& k = slow_plan.prefill[i];
    if (k.op != "gemm" || k.m < 256) continue;  // not the LM head's one row
    ++gemms;
    SCOPED_TRACE(k.name);
    EXPECT_EQ(k.tile_m * k.tile_n, 128 * 256) << "the largest tile reads the fewest bytes per MAC";
    const double l2_s = static_cast<double>(k.waves * k.tile_k * (k.tile_m + k.tile_n)) * 2 / l2_bytes_per_sm_second;
    EXPECT_NEAR(starved.prefill_kernels[i].seconds, l2_s + 2e-6, 1e-9 * l2_s) << "L2's time and a launch";
  }
  EXPECT_EQ(gemms, 32 * 4) << "q/k/v, o, gate/up and down of every layer";
}

// Weight-only int4 kernels (fp16 activations, a scale per 128 inputs: 4.125 bits a weight) on an
// A100: weights cross L2 packed and are dequantised alongside the tensor cores, so a decode GEMM
// stays memory-bound up to batch 16-32 and reaches close to the ideal 16 / 4.125 = 3.88x over fp16
// weights, as Marlin's published kernel does [N16]; at batch 128 the tensor work bounds it.
TEST(GpuModel, WeightOnlyInt4GemmsReachMarlinsSpeedup) {
  const std::string yaml = preset("a100");
  PrecisionPolicy int4 = PrecisionPolicy::uniform("fp16");
  int4.weights = "int4", int4.scales = "group", int4.group = 128;
  const double ideal = 16 / 4.125;
  for (const int64_t batch : {1, 16, 32, 128}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    const auto half =
        sim::simulate_gpu(compile("llama3-8b", yaml, {128, 2, batch, 1, PrecisionPolicy::uniform("fp16")}).plan);
    const auto packed = sim::simulate_gpu(compile("llama3-8b", yaml, {128, 2, batch, 1, int4}).plan);
    // Each GEMM's time without launches, its split-K reduction (where the tiling splits K) included.
    const double launch = target::parse_arch(yaml, "a100").gpu.kernel_launch_s;
    auto gemm_seconds = [&](const auto& r) {
      std::map<std::string, std::pair<double, std::string>> out;  // name: seconds, the GEMM's bound
      for (const auto& k : r.last_decode_kernels) {
        if (k.op == "gemm" && k.name != "lm_head") out[k.name] = {k.seconds - launch, k.bound};
        if (k.op == "reduce") out.at(k.name.substr(0, k.name.size() - 7)).first += k.seconds - launch;
      }
      return out;
    };
    const auto f = gemm_seconds(half), q = gemm_seconds(packed);
    ASSERT_EQ(f.size(), 32u * 4);
    for (const auto& [name, fp16] : f) {
      const auto& [seconds, bound] = q.at(name);
      const double speedup = fp16.first / seconds;
      EXPECT_LE(speedup, ideal * 1.001) << name << ": no faster than its bytes";
      if (batch <= 32) {
        EXPECT_EQ(bound, "memory") << name;
        EXPECT_GT(speedup, 0.9 * ideal) << name;
      } else {
        EXPECT_EQ(bound, "compute") << name;
      }
    }
  }
}

// A dense GEMM that splits K over otherwise idle SMs writes fp32 partial sums of its whole output
// per partition instead of the output, and a reduction kernel of its own reads them back (CUTLASS's
// parallel split-K): short prompts pay it, long ones (enough output tiles) do not split.
TEST(GpuModel, SplitKGemmsPayForTheirReductionKernel) {
  const std::string yaml = preset("a100");
  const arch::ArchSpec a = target::parse_arch(yaml, "a100");
  const auto plan = compile("llama3-8b", yaml, {128, 2, 1, 1, PrecisionPolicy::uniform("fp16")}).plan;
  const sim::GpuReport r = sim::simulate_gpu(plan);
  ASSERT_EQ(r.prefill_kernels.size(), plan.prefill.size());
  auto cdiv = [](int64_t x, int64_t y) { return (x + y - 1) / y; };
  int reductions = 0;
  for (size_t i = 1; i < plan.prefill.size(); ++i) {
    const program::Kernel& reduce = plan.prefill[i];
    if (reduce.op != "reduce") continue;
    ++reductions;
    const program::Kernel& gemm = plan.prefill[i - 1];
    ASSERT_EQ(gemm.op, "gemm");
    EXPECT_EQ(reduce.name, gemm.name + ".reduce");
    const auto m = static_cast<double>(gemm.m), n = static_cast<double>(gemm.n), k = static_cast<double>(gemm.k);
    const int64_t split = gemm.ctas / (cdiv(gemm.m, gemm.tile_m) * cdiv(gemm.n, gemm.tile_n));
    EXPECT_GT(split, 1) << gemm.name;
    EXPECT_DOUBLE_EQ(gemm.workspace_bytes, static_cast<double>(split) * m * n * 4) << gemm.name;
    EXPECT_DOUBLE_EQ(reduce.workspace_bytes, gemm.workspace_bytes);
    EXPECT_DOUBLE_EQ(gemm.hbm_bytes, (n * k + m * k) * 2) << gemm.name << ": the output is the reduction's";
    EXPECT_DOUBLE_EQ(reduce.hbm_bytes, m * n * 2);
    ASSERT_LE(gemm.workspace_bytes, a.gpu.l2_bytes);
    EXPECT_NEAR(r.prefill_kernels[i].seconds,
                a.gpu.kernel_launch_s + gemm.workspace_bytes / a.gpu.l2_bytes_per_second +
                    m * n * 2 / a.gpu.sustained_hbm_bytes_per_second(),
                1e-15)
        << reduce.name;
  }
  EXPECT_GT(reductions, 0);
  for (const auto& kern : compile("llama3-8b", yaml, {4096, 2, 1, 1, PrecisionPolicy::uniform("fp16")}).plan.prefill) {
    EXPECT_NE(kern.op, "reduce") << kern.name;
    EXPECT_EQ(kern.workspace_bytes, 0) << kern.name;
  }
}

// A fused attention kernel runs at its own measured share of the peak (runtime.attention_efficiency:
// FlashAttention-2's 73% on A100), not at the best GEMM's 86.9%; absent, it takes the GEMM's. In
// prefill its CTAs (blocks of 128 queries per head and request) run in waves over the SMs.
TEST(GpuModel, FusedAttentionRunsAtItsOwnMeasuredShare) {
  const std::string yaml = preset("a100");
  const arch::ArchSpec a = target::parse_arch(yaml, "a100");
  EXPECT_DOUBLE_EQ(a.gpu.attention_efficiency, 0.73);
  const auto plan = compile("llama3-8b", yaml, {4096, 2, 1, 1, PrecisionPolicy::uniform("bf16")}).plan;
  const auto r = sim::simulate_gpu(plan);
  // 32 heads x 32 blocks of 128 queries: 1,024 CTAs in 10 waves over the 108 SMs.
  const double waves = 10.0 * 108 / 1024;
  int compute_bound = 0;
  for (size_t i = 0; i < r.prefill_kernels.size(); ++i) {
    const auto& k = r.prefill_kernels[i];
    if (k.op != "attention" || k.bound != "compute") continue;
    ++compute_bound;
    EXPECT_EQ(plan.prefill[i].ctas, 1024);
    EXPECT_EQ(plan.prefill[i].waves, 10);
    EXPECT_NEAR(k.seconds - a.gpu.kernel_launch_s, waves * k.macs / (a.peak_macs_per_second("bf16") * 0.73), 1e-12);
  }
  EXPECT_EQ(compute_bound, 32) << "a 4,096-token prompt's attention is compute-bound in every layer";
  // One 384-token request of bert-base: 12 heads x 3 blocks = 36 CTAs, one wave on a third of the
  // SMs, so its attention takes three times what all 108 would.
  const auto short_plan = compile("bert-base", yaml, {384, 0, 1, 1, PrecisionPolicy::uniform("fp16")}).plan;
  const auto short_run = sim::simulate_gpu(short_plan);
  int checked = 0;
  for (size_t i = 0; i < short_run.prefill_kernels.size(); ++i) {
    const auto& k = short_run.prefill_kernels[i];
    if (k.op != "attention") continue;
    ++checked;
    EXPECT_EQ(short_plan.prefill[i].ctas, 36);
    EXPECT_EQ(k.bound, "compute");
    EXPECT_NEAR(k.seconds - a.gpu.kernel_launch_s, 3 * k.macs / (a.peak_macs_per_second("fp16") * 0.73), 1e-12);
  }
  EXPECT_EQ(checked, 12);
  std::string unmeasured = yaml;
  const std::string key = "attention_efficiency: 0.73";
  unmeasured.replace(unmeasured.find(key), key.size(), "");
  EXPECT_DOUBLE_EQ(target::parse_arch(unmeasured, "a100").gpu.attention_efficiency, a.gpu.matmul_efficiency);
  const auto faster =
      sim::simulate_gpu(compile("llama3-8b", unmeasured, {4096, 2, 1, 1, PrecisionPolicy::uniform("bf16")}).plan);
  EXPECT_LT(faster.time_to_first_token_s, r.time_to_first_token_s);
}

// A norm of a tensor split over the tensor-parallel group (BERT's MLM head: dense, GELU, LayerNorm
// on the split columns) all-reduces each row's sum and sum of squares; split-free norms do not.
TEST(GpuModel, SplitNormsAllReduceTheirStatistics) {
  const std::string yaml = preset("h100");
  for (const int64_t tp : {1, 2, 4}) {
    const auto plan = compile("bert-base", yaml, {128, 0, 1, tp, PrecisionPolicy::uniform("fp16")}).plan;
    std::vector<const program::Kernel*> stats;
    for (const auto& k : plan.prefill)
      if (k.name.ends_with(".stats")) stats.push_back(&k);
    if (tp == 1) {
      EXPECT_TRUE(stats.empty());
      continue;
    }
    ASSERT_EQ(stats.size(), 1u) << "tp " << tp;
    EXPECT_EQ(stats[0]->name, "cls.predictions.transform.LayerNorm.stats");
    EXPECT_EQ(stats[0]->op, "allreduce");
    EXPECT_DOUBLE_EQ(stats[0]->link_bytes, 128.0 * 2 * 4);
  }
}

TEST(GpuModel, TensorParallelismAndFitErrors) {
  const std::string yaml = preset("h100");
  const auto single = compile("llama3-70b", yaml, {128, 128, 1, 1, PrecisionPolicy::uniform("fp16")});
  ASSERT_FALSE(single.status);
  EXPECT_EQ(single.status.failure().resource, "HBM per GPU");
  EXPECT_NEAR(single.status.failure().available, 80e9, 1e9);
  EXPECT_GT(single.status.failure().needed, 140e9);
  EXPECT_NE(single.status.message().find("tensor parallelism over 2 GPUs would fit (--tp 2)"), std::string::npos)
      << single.status.message();
  const auto four = compile("llama3-70b", yaml, {128, 128, 1, 4, PrecisionPolicy::uniform("fp16")});
  ASSERT_TRUE(four.status) << four.status.message();
  const auto r = sim::simulate_gpu(four.plan);
  EXPECT_GT(r.decode.link_bytes, 0) << "two allreduces per layer";
  EXPECT_NEAR(four.plan.weight_bytes, 141e9 / 4, 3e9);
  EXPECT_THROW(compile("llama3-8b", yaml, {16, 16, 1, 3, {}}), Error) << "3 does not divide 32 heads / 8 KV heads";
}

TEST(GpuModel, PlansRoundTripThroughJsonAndRejectCorruptFiles) {
  const auto result = compile("llama3-8b", preset("h100"), {64, 8, 4, 2, PrecisionPolicy::uniform("bf16")});
  ASSERT_TRUE(result.status);
  const std::string text = program::to_json(result.plan);
  const program::GpuPlan back = program::gpu_plan_from_json(text, "plan.json");
  EXPECT_EQ(program::to_json(back), text);
  EXPECT_DOUBLE_EQ(sim::simulate_gpu(back).decode.seconds, sim::simulate_gpu(result.plan).decode.seconds);
  EXPECT_THROW(program::gpu_plan_from_json("{\"format\": \"tessera-mesh-plan\"}", "p.json"), Error);
  std::string bad_op = text;
  bad_op.replace(bad_op.find("\"op\": \"gemm\""), 12, "\"op\": \"conv\"");
  EXPECT_THROW(program::gpu_plan_from_json(bad_op, "p.json"), Error);
}

// Uniform routing is a seeded expectation: one token picks 2 of 8 experts, so with 4 experts on
// each of 2 GPUs the busiest GPU holds both with probability 3/7 (1.43 experts' weights read on
// average, 2 anywhere); many tokens spread nearly evenly. Balanced routing is exact.
TEST(GpuModel, ExpertRoutingExpectations) {
  using compiler::Routing;
  const compiler::ExpertLoads one = compiler::expert_loads(Routing::Uniform, 1, 8, 2, 2);
  EXPECT_NEAR(one.experts_used, 1 + 3.0 / 7, 0.1);
  EXPECT_DOUBLE_EQ(one.experts_used_anywhere, 2);
  EXPECT_DOUBLE_EQ(one.expert_imbalance, 4) << "the busiest expert has 1 token; the mean is 2/8";
  EXPECT_EQ(one.busiest_device, (std::vector<int64_t>{1}));
  const compiler::ExpertLoads again = compiler::expert_loads(Routing::Uniform, 1, 8, 2, 2);
  EXPECT_EQ(again.experts_used, one.experts_used) << "deterministic";
  const compiler::ExpertLoads many = compiler::expert_loads(Routing::Uniform, 8192, 8, 2, 1);
  EXPECT_GT(many.expert_imbalance, 1.0);
  EXPECT_LT(many.expert_imbalance, 1.05);
  EXPECT_EQ(many.busiest_device.size(), 8u);
  const compiler::ExpertLoads even = compiler::expert_loads(Routing::Balanced, 100, 8, 2, 4);
  EXPECT_EQ(even.busiest_device, (std::vector<int64_t>{25, 25}));
  EXPECT_DOUBLE_EQ(even.device_imbalance, 1.0);
  EXPECT_NE(tessera::testing::error_of([] {
              compiler::expert_loads(Routing::Uniform, 4, 2, 3, 1);
            }).find("need 1 <= top_k <= experts"),
            std::string::npos);
  EXPECT_NE(tessera::testing::error_of([] { compiler::parse_routing("greedy"); }).find("choose uniform"),
            std::string::npos);
}

// Mixtral 8x7B's experts on GPUs: a batch-1 decode step reads the weights of the experts its token
// chose (2 of 8 per layer on one GPU), not all 8; with expert parallelism over 8 GPUs each holds
// one expert, the group's energy counts the 2 experts used, not 8 copies; balanced routing is never
// slower than uniform routing.
TEST(GpuModel, MixtureOfExpertsReadsOnlyTheChosenExperts) {
  const auto policy = PrecisionPolicy::uniform("fp16");
  const auto one = compile("mixtral-8x7b", preset("h200"), {128, 16, 1, 1, policy});
  ASSERT_TRUE(one.status) << one.status.message();
  EXPECT_EQ(one.plan.routing, "uniform");
  const double expert_gate_up = 2.0 * 14336 * 4096 * 2;  // w1|w3 of one expert, fp16
  int64_t expert_kernels = 0;
  for (const auto& k : one.plan.decode) {
    if (k.name != "model.layers.0.block_sparse_moe.w1_w3") continue;
    ++expert_kernels;
    EXPECT_EQ(k.op, "experts");
    EXPECT_EQ(k.m, 2) << "one token routed to 2 experts";
    EXPECT_NEAR(k.hbm_bytes, 2 * expert_gate_up, 0.001 * expert_gate_up);
    EXPECT_DOUBLE_EQ(k.macs, 2.0 * 2 * 14336 * 4096);
  }
  EXPECT_EQ(expert_kernels, 1);
  const double all_weights = 46702792704.0 * 2;
  EXPECT_NEAR(one.plan.weight_bytes, all_weights, 0.01 * all_weights);

  const auto eight = compile("mixtral-8x7b", preset("h100"), {128, 16, 1, 8, policy});
  ASSERT_TRUE(eight.status) << eight.status.message();
  EXPECT_NEAR(eight.plan.weight_bytes * 8, all_weights, 0.01 * all_weights) << "one expert of each layer per GPU";
  const sim::GpuReport r1 = sim::simulate_gpu(one.plan), r8 = sim::simulate_gpu(eight.plan);
  EXPECT_LT(r8.decode_energy_per_token_pj, 1.5 * r1.decode_energy_per_token_pj);
  EXPECT_NEAR(r8.routing.decode.experts_used, 1.0, 1e-9) << "8 GPUs: no GPU holds both chosen experts";

  for (const int64_t batch : {1, 64}) {
    compiler::GpuCompileOptions uniform{128, 16, batch, 2, policy};
    compiler::GpuCompileOptions balanced = uniform;
    balanced.routing = compiler::Routing::Balanced;
    const sim::GpuReport u = sim::simulate_gpu(compile("mixtral-8x7b", preset("h100"), uniform).plan);
    const sim::GpuReport b = sim::simulate_gpu(compile("mixtral-8x7b", preset("h100"), balanced).plan);
    EXPECT_LE(b.decode.seconds, u.decode.seconds) << batch;
    EXPECT_LE(b.prefill.seconds, u.prefill.seconds) << batch;
    EXPECT_GT(u.routing.decode.device_imbalance, 1.0) << batch;
  }
}

// Expert parallelism with data-parallel attention: each GPU holds every weight but the experts
// whole and 1/e of the experts, sends its tokens to their experts' GPUs and back by all-to-all
// (two per layer, no allreduce), and reads fewer weights per step than tensor parallelism.
TEST(GpuModel, ExpertParallelismSendsTokensByAllToAll) {
  const std::string yaml = preset("h100");
  const auto plan_for = [&](int64_t e, int64_t t = 1) {
    compiler::GpuCompileOptions o{128, 8, 4, t, PrecisionPolicy::uniform("fp16")};
    o.expert_parallel = e;
    return compile("mixtral-8x7b", yaml, o);
  };
  const auto four = plan_for(4), eight = plan_for(8);
  ASSERT_TRUE(four.status && eight.status) << four.status.message();
  // One expert's three matrices in 32 layers, fp16: what a GPU of 8 holds less than one of 4.
  EXPECT_DOUBLE_EQ(four.plan.weight_bytes - eight.plan.weight_bytes, 32.0 * 3 * 4096 * 14336 * 2);
  int64_t all_to_all = 0, allreduce = 0;
  for (const auto& k : eight.plan.decode) {
    all_to_all += k.op == "alltoall";
    allreduce += k.op == "allreduce";
    // 4 tokens x 2 experts, 7 of every 8 copies leaving this GPU, at least.
    if (k.op == "alltoall") {
      EXPECT_GE(k.link_bytes, 4 * 2 * 7.0 / 8 * 4096 * 2) << k.name;
    }
  }
  EXPECT_EQ(all_to_all, 2 * 32);
  EXPECT_EQ(allreduce, 0);
  const auto report = sim::simulate_gpu(eight.plan);
  EXPECT_EQ(report.gpus, 8);
  EXPECT_EQ(report.batch, 32) << "4 requests on each of 8 GPUs";
  EXPECT_GT(report.decode.link_s, 0);
  EXPECT_EQ(program::gpu_plan_from_json(program::to_json(eight.plan), "p.json").expert_parallel, 8);
  // Tensor parallelism over 8 GPUs serving the same 32 requests reads every expert on every GPU.
  const auto tensor = compile("mixtral-8x7b", yaml, {128, 8, 32, 8, PrecisionPolicy::uniform("fp16")});
  ASSERT_TRUE(tensor.status) << tensor.status.message();
  EXPECT_GT(sim::simulate_gpu(eight.plan).decode_tokens_per_s, sim::simulate_gpu(tensor.plan).decode_tokens_per_s);
  EXPECT_NE(tessera::testing::error_of([&] { (void)plan_for(8, 2); }).find("--ep 8 needs --tp 1"), std::string::npos);
  EXPECT_NE(tessera::testing::error_of([&] {
              (void)compile("llama3-8b", yaml, {128, 8, 4, 1, {}, {}, nullptr, 2});
            }).find("--ep is for mixtures of experts"),
            std::string::npos);
}
