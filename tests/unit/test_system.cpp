// Systems of chips: pipelines, tensor-parallel groups, data-parallel replicas and batching.
#include <gtest/gtest.h>

#include "tessera/base/fs.hpp"
#include "tessera/system/system.hpp"
#include "tessera/target/arch.hpp"

using namespace tessera;

namespace {

system::Machine machine(const std::string& arch, int64_t chips, std::string yaml = "") {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + arch + ".yaml";
  if (yaml.empty()) yaml = read_text_file(path);
  return {target::parse_arch(yaml, path), yaml, path, chips};
}

system::Workload workload(const std::string& model, int64_t batch, const std::string& dtype = "fp16") {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/configs/models/" + model + ".yaml";
  system::Workload w;
  w.model = ir::load_model_config(path);
  w.model_yaml = read_text_file(path), w.model_origin = path;
  w.prompt_tokens = 64, w.max_new_tokens = 16, w.batch = batch;
  w.precision = PrecisionPolicy::uniform(dtype);
  return w;
}

}  // namespace

TEST(System, MachineNames) {
  EXPECT_EQ(system::parse_machine_name("4xwse3"), (std::pair<int64_t, std::string>{4, "wse3"}));
  EXPECT_EQ(system::parse_machine_name("mesh-32x32"), (std::pair<int64_t, std::string>{1, "mesh-32x32"}));
  EXPECT_EQ(system::parse_machine_name("h100"), (std::pair<int64_t, std::string>{1, "h100"}));
  EXPECT_THROW(system::parse_machine_name("0xwse3"), Error);
  EXPECT_THROW(system::parse_machine_name("4x"), Error);
  EXPECT_THROW(system::parse_machine_name("99999999xwse3"), Error);
}

TEST(System, TooFewChipsSayHowManyWould) {
  const auto wafers = system::evaluate(machine("wse3", 4), workload("llama3-70b", 1));
  EXPECT_FALSE(wafers.fits);
  EXPECT_NE(wafers.note.find("6 would fit (--arch 6xwse3)"), std::string::npos) << wafers.note;
  const auto ipus = system::evaluate(machine("gc200", 33), workload("llama3-8b", 1));
  EXPECT_FALSE(ipus.fits);
  EXPECT_NE(ipus.note.find("34 would fit"), std::string::npos) << ipus.note;
  const auto gpu = system::evaluate(machine("h100", 1), workload("llama3-70b", 1));
  EXPECT_FALSE(gpu.fits);
  EXPECT_NE(gpu.note.find("tensor-parallel group of 2"), std::string::npos) << gpu.note;
}

TEST(System, IpuPipelineBoundsAndLinks) {
  const auto w = workload("llama3-8b", 1);
  const auto r = system::evaluate(machine("gc200", 34), w);
  ASSERT_TRUE(r.fits) << r.note;
  EXPECT_EQ(r.mapping, "pipeline 32 + head 2");
  EXPECT_EQ(r.chips_used, 34);
  const arch::ArchSpec a = machine("gc200", 1).arch;
  // Every weight is read once per token, from the SRAM of 34 chips at most at their full rate.
  const double weights = 8.0e9 * 2;
  const double sram = a.core.sram_bytes_per_cycle * a.clock_hz * static_cast<double>(a.usable.cores()) * 34;
  EXPECT_LT(r.tokens_per_s_per_user, sram / weights);
  EXPECT_LE(r.utilization, 1.0);
  // Faster links never slow the pipeline.
  std::string yaml = read_text_file(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/gc200.yaml");
  yaml.replace(yaml.find("bandwidth: 160GB/s"), 18, "bandwidth: 320GB/s");
  const auto fast = system::evaluate(machine("gc200", 34, yaml), w);
  EXPECT_GE(fast.tokens_per_s_per_user, r.tokens_per_s_per_user);
  // Requests in flight fill the pipeline: throughput rises, no user gets faster.
  const auto busy = system::evaluate(machine("gc200", 34), workload("llama3-8b", 32));
  ASSERT_TRUE(busy.fits) << busy.note;
  EXPECT_GT(busy.tokens_per_s, 8 * r.tokens_per_s);
  EXPECT_LE(busy.tokens_per_s_per_user, r.tokens_per_s_per_user * 1.0000001);
  // Each chip computes one micro-batch at a time but holds the KV cache of every request in flight.
  const auto crowd = system::evaluate(machine("gc200", 34), workload("llama3-8b", 1024));
  EXPECT_FALSE(crowd.fits);
  EXPECT_NE(crowd.note.find("1024 requests per replica do not fit"), std::string::npos) << crowd.note;
}

// Mixtral on IPUs: one layer's experts (2.8 GB in 16-bit) exceed a GC200's 0.84 GB, so each
// pipeline stage is a group of chips splitting the experts (2 per chip), which allreduces every
// layer's experts' outputs over the IPU-Links: their latency is paid 2 log2(4) times per layer.
TEST(System, IpuExpertGroupsSplitAMixturesExperts) {
  const auto w = workload("mixtral-8x7b", 1);
  const auto few = system::evaluate(machine("gc200", 128), w);
  EXPECT_FALSE(few.fits);
  EXPECT_NE(few.note.find("129 would fit"), std::string::npos) << few.note;
  const auto r = system::evaluate(machine("gc200", 129), w);
  ASSERT_TRUE(r.fits) << r.note;
  EXPECT_EQ(r.mapping, "pipeline 32 x experts 4 + head 1");
  EXPECT_EQ(r.chips_used, 129);
  std::string yaml = read_text_file(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/gc200.yaml");
  yaml.replace(yaml.find("latency: 2us"), 12, "latency: 20us");
  const auto slow = system::evaluate(machine("gc200", 129, yaml), w);
  ASSERT_TRUE(slow.fits) << slow.note;
  // 32 layers x 4 messages + 32 stage-to-stage hops, each 18 us slower.
  EXPECT_NEAR(1 / slow.tokens_per_s_per_user - 1 / r.tokens_per_s_per_user, (32 * 4 + 32) * 18e-6, 1e-6);
  auto balanced = w;
  balanced.routing = compiler::Routing::Balanced;
  EXPECT_GE(system::evaluate(machine("gc200", 129), balanced).tokens_per_s_per_user, r.tokens_per_s_per_user);
  // A dense model gets no expert groups.
  EXPECT_EQ(system::evaluate(machine("gc200", 34), workload("llama3-8b", 1)).mapping, "pipeline 32 + head 2");
}

// A batch whose KV caches do not fit the smallest pipeline takes a longer one, if the system has
// the chips: mixtral-8x7b holds one request on 3 CS-3s, 256 need all 4.
TEST(System, ABatchTheSmallestPipelineCannotHoldGetsALongerOne) {
  const auto one = system::evaluate(machine("wse3", 4), workload("mixtral-8x7b", 1));
  ASSERT_TRUE(one.fits) << one.note;
  EXPECT_EQ(one.mapping, "pipeline 3");
  const auto many = system::evaluate(machine("wse3", 4), workload("mixtral-8x7b", 256));
  ASSERT_TRUE(many.fits) << many.note;
  EXPECT_EQ(many.mapping, "pipeline 4");
  EXPECT_EQ(many.chips_used, 4);
  const auto too_many = system::evaluate(machine("wse3", 3), workload("mixtral-8x7b", 256));
  EXPECT_FALSE(too_many.fits);
  EXPECT_NE(too_many.note.find("256 requests per replica do not fit"), std::string::npos) << too_many.note;
}

TEST(System, WaferBatchingAndDataParallelReplicas) {
  const auto one = system::evaluate(machine("wse2", 1), workload("gpt2-small", 1));
  const auto sixteen = system::evaluate(machine("wse2", 1), workload("gpt2-small", 16));
  ASSERT_TRUE(one.fits && sixteen.fits) << one.note << sixteen.note;
  EXPECT_GT(sixteen.tokens_per_s, 4 * one.tokens_per_s);
  EXPECT_LE(sixteen.tokens_per_s_per_user, one.tokens_per_s_per_user * 1.0000001);
  // Two wafers serve twice the requests at the same per-user rate.
  const auto two = system::evaluate(machine("wse2", 2), workload("gpt2-small", 32));
  ASSERT_TRUE(two.fits) << two.note;
  EXPECT_EQ(two.mapping, "1 chip x data 2");
  EXPECT_NEAR(two.tokens_per_s_per_user, sixteen.tokens_per_s_per_user, 1e-6 * sixteen.tokens_per_s_per_user);
  EXPECT_NEAR(two.tokens_per_s, 2 * sixteen.tokens_per_s, 1e-6 * two.tokens_per_s);
  // Every request keeps its own KV cache: enough of them do not fit.
  const auto crowd = system::evaluate(machine("wse2", 1), workload("gpt2-small", 20000));
  EXPECT_FALSE(crowd.fits);
  EXPECT_NE(crowd.note.find("20000 requests per replica do not fit"), std::string::npos) << crowd.note;
}

TEST(System, GpuTensorAndDataParallel) {
  const auto r = system::evaluate(machine("h100", 8), workload("llama3-70b", 8));
  ASSERT_TRUE(r.fits) << r.note;
  EXPECT_EQ(r.mapping, "tensor 2 x data 4");
  EXPECT_NEAR(r.tokens_per_s, 8 * r.tokens_per_s_per_user, 1e-9 * r.tokens_per_s);
  auto w = workload("llama3-70b", 8);
  w.tensor_parallel = 8;
  const auto wide = system::evaluate(machine("h100", 8), w);
  ASSERT_TRUE(wide.fits) << wide.note;
  EXPECT_EQ(wide.mapping, "tensor 8");
  EXPECT_GT(wide.tokens_per_s_per_user, r.tokens_per_s_per_user) << "8-way TP reads 1/8 of the weights per GPU";
  const auto wafers = system::evaluate(machine("wse3", 4), w);
  EXPECT_FALSE(wafers.fits);
  EXPECT_NE(wafers.note.find("--tp is for GPU-like chips"), std::string::npos) << wafers.note;
}

// A sweep can ask which resource overflowed, not only read the sentence.
TEST(System, FitFailuresNameTheResource) {
  for (const auto& [arch, resource] : std::vector<std::pair<std::string, std::string>>{
           {"wse3", "SRAM per core"}, {"h100", "HBM per GPU"}, {"gc200", "SRAM per tile"}}) {
    const auto r = system::evaluate(machine(arch, 1), workload("llama3-70b", 1));
    ASSERT_FALSE(r.fits) << arch;
    ASSERT_TRUE(r.fit_failure.has_value()) << arch << ": " << r.note;
    EXPECT_EQ(r.fit_failure->resource, resource);
    EXPECT_GT(r.fit_failure->needed, r.fit_failure->available) << arch;
  }
  const auto fits = system::evaluate(machine("h100", 2), workload("llama3-70b", 1));
  EXPECT_TRUE(fits.fits && !fits.fit_failure);
  const auto wrong_format = system::evaluate(machine("wse3", 1), workload("llama3-8b", 1, "bf16"));
  EXPECT_FALSE(wrong_format.fits);
  EXPECT_FALSE(wrong_format.fit_failure) << "an unsupported format is not a fit failure";
}

// Served throughput counts the prompts: the batch arrives at once, its prompts run (a GPU group's
// in one pass; a pipeline's micro-batches one after another, each once the busiest chip or wafer
// stage is free of the one before), then the batch's decode steps.
TEST(System, ServedThroughputCountsThePrompts) {
  const double gen = 16;
  for (const auto& [arch, chips] : {std::pair<std::string, int64_t>{"h100", 1}, {"wse3", 1}, {"gc200", 34}}) {
    SCOPED_TRACE(arch);
    const auto one = system::evaluate(machine(arch, chips), workload("llama3-8b", 1));
    ASSERT_TRUE(one.fits) << one.note;
    EXPECT_NEAR(one.served_tokens_per_s, gen / (one.time_to_first_token_s + (gen - 1) / one.tokens_per_s_per_user),
                1e-9 * one.served_tokens_per_s);
    EXPECT_LT(one.served_tokens_per_s, one.tokens_per_s);
  }
  const auto group = system::evaluate(machine("h100", 1), workload("llama3-8b", 32));
  EXPECT_NEAR(group.served_tokens_per_s,
              32 * gen / (group.time_to_first_token_s + (gen - 1) / group.tokens_per_s_per_user),
              1e-9 * group.served_tokens_per_s)
      << "a GPU prefills its requests in one pass";
  const auto wafer = system::evaluate(machine("wse3", 1), workload("llama3-8b", 8));
  const double decode = (gen - 1) / wafer.tokens_per_s_per_user;
  EXPECT_LT(wafer.served_tokens_per_s, 8 * gen / (wafer.time_to_first_token_s + decode))
      << "the other seven prompts follow the first";
  EXPECT_GE(wafer.served_tokens_per_s, 8 * gen / (8 * wafer.time_to_first_token_s + decode))
      << "each follows once the busiest layer stage is free, no later than after the whole prompt";
  auto longer = workload("llama3-8b", 8);
  longer.max_new_tokens = 256;
  const auto amortised = system::evaluate(machine("wse3", 1), longer);
  EXPECT_GT(amortised.served_tokens_per_s / amortised.tokens_per_s, wafer.served_tokens_per_s / wafer.tokens_per_s);
}
